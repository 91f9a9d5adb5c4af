"""The program contract, shared by every sltk program (CONVENTIONS.md, "A program's contract").

Use :func:`program` instead of ``click.command``::

    @program(examples=["compute-features data/train exp/fbank"])
    @click.argument("data_dir")
    @click.option("--num-mel-bins", default=80, show_default=True, help="...")
    def main(data_dir, num_mel_bins): ...

and every program gets, for free:

* ``--config conf/x.yaml`` whose keys (``num_mel_bins`` or ``num-mel-bins``) become the
  option defaults; the command line wins; an unknown key is an error that names it;
* logging to stderr that starts with the full command line and the versions of python,
  torch, torchaudio, k2, lhotse and sltk (with its git sha), at ``--verbose`` level;
* :class:`~sltk.utils.errors.UserError` turned into one line
  ``<program>: error: <message>`` and exit code 2, never a traceback;
* ``--help`` with every option's default and a block of examples.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence

import click
import yaml

from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

_LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr; level INFO, or DEBUG when ``verbose`` > 0."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 0 else logging.INFO)


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """The sltk checkout's short git sha (with ``-dirty``), or ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:  # not a checkout, git missing: the sha is informative only
        return "unknown"


def versions() -> Dict[str, str]:
    """Versions of the stack, read from package metadata (no heavy imports)."""
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "torchaudio", "k2", "lhotse"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    from sltk import __version__

    out["sltk"] = f"{__version__} ({git_sha()})"
    return out


def read_yaml(path, what: str = "yaml file"):
    """The parsed content of a yaml file; a missing file or a syntax error is a
    :class:`UserError` naming ``what`` and the path."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{what} {p} is not valid yaml: {str(e).splitlines()[0]}") from None


def load_config(path: str, allowed: Iterable[str]) -> dict:
    """Read a yaml mapping whose keys must be among ``allowed`` (``-`` and ``_`` equivalent).

    Returns the mapping with keys normalised to python identifiers.
    Raises :class:`UserError` naming the file and the first unknown key.
    """
    cfg = read_yaml(path, "config file")
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise UserError(f"config file {path} must hold a mapping of option: value")
    allowed = set(allowed)
    out = {}
    for key, value in cfg.items():
        norm = str(key).replace("-", "_")
        if norm not in allowed:
            valid = ", ".join(sorted(a.replace("_", "-") for a in allowed))
            raise UserError(f"unknown key '{key}' in config file {path} (valid keys: {valid})")
        out[norm] = value
    return out


def _config_callback(ctx: click.Context, param: click.Parameter, value: Optional[str]):
    if not value:
        return
    allowed = [p.name for p in ctx.command.params if p.name not in ("config", "help")]
    cfg = load_config(value, allowed)
    ctx.default_map = {**(ctx.default_map or {}), **cfg}


def config_option(f: Callable) -> Callable:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=_config_callback,
        help="YAML file of option defaults (keys as option names); the command line wins.",
    )(f)


def verbose_option(f: Callable) -> Callable:
    return click.option("-v", "--verbose", count=True, help="More log output (DEBUG).")(f)


def _format_examples(examples: Sequence[str]) -> str:
    if not examples:
        return ""
    # \b stops click from re-wrapping the block.
    return "\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples)


class _ContractMixin:
    """Shared by :class:`Program` and :class:`ProgramGroup`."""

    def _log_header(self, ctx: click.Context, verbose: int) -> None:
        setup_logging(verbose)
        cmdline = " ".join(shlex.quote(a) for a in [ctx.find_root().info_name or self.name] + sys.argv[1:])
        log.info("%s", cmdline)
        log.info("versions: %s", " ".join(f"{k}={v}" for k, v in versions().items()))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        name = prog_name or self.name
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except UserError as e:
            click.echo(f"{name}: error: {e}", err=True)
            rv = 2
        except click.exceptions.UsageError as e:  # unknown option, bad value: click's message
            if e.ctx is not None:
                click.echo(e.ctx.get_usage(), err=True)
            click.echo(f"{name}: error: {e.format_message()}", err=True)
            rv = 2
        except click.exceptions.ClickException as e:
            click.echo(f"{name}: error: {e.format_message()}", err=True)
            rv = e.exit_code
        except click.exceptions.Abort:
            click.echo(f"{name}: aborted", err=True)
            rv = 130
        except KeyboardInterrupt:
            click.echo(f"{name}: interrupted", err=True)
            rv = 130
        except BrokenPipeError:
            rv = 141
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


class Program(_ContractMixin, click.Command):
    def invoke(self, ctx: click.Context):
        self._log_header(ctx, ctx.params.pop("verbose", 0))
        start = time.time()
        rv = super().invoke(ctx)
        log.debug("%s finished in %.1f s", self.name, time.time() - start)
        return rv


class ProgramGroup(_ContractMixin, click.Group):
    """A program with subcommands (``kws-aec train|score|detect|eval``)."""

    def invoke(self, ctx: click.Context):
        self._log_header(ctx, ctx.params.get("verbose", 0))
        return super().invoke(ctx)

    def command(self, *args, examples: Sequence[str] = (), **kwargs):
        kwargs.setdefault("epilog", _format_examples(examples))
        kwargs.setdefault("context_settings", {"show_default": True})
        deco = super().command(*args, **kwargs)

        def wrap(f):
            return deco(config_option(f))

        return wrap


def program(examples: Sequence[str] = (), name: Optional[str] = None, **kwargs) -> Callable:
    """Decorator: a click command that follows the program contract (see module doc)."""

    # A caller's context_settings (e.g. allow_interspersed_args=False) add to the defaults.
    settings = {"show_default": True, "help_option_names": ["-h", "--help"],
                **kwargs.pop("context_settings", {})}

    def deco(f: Callable) -> Program:
        f = verbose_option(config_option(f))
        return click.command(
            name=name,
            cls=Program,
            epilog=_format_examples(examples),
            context_settings=settings,
            **kwargs,
        )(f)

    return deco


def program_group(examples: Sequence[str] = (), name: Optional[str] = None, **kwargs) -> Callable:
    def deco(f: Callable) -> ProgramGroup:
        f = verbose_option(f)
        return click.group(
            name=name,
            cls=ProgramGroup,
            epilog=_format_examples(examples),
            context_settings={"show_default": True, "help_option_names": ["-h", "--help"]},
            **kwargs,
        )(f)

    return deco


def summary(done: int, total: int, failed: int = 0, what: str = "utterances", extra: str = "") -> None:
    """The one-line summary every program ends with (Kaldi's ``Done X out of Y``)."""
    msg = f"Done {done} of {total} {what}, {failed} failed"
    if extra:
        msg += f"; {extra}"
    log.info("%s", msg)


def require_file(path: os.PathLike, what: str = "file") -> Path:
    """A path that must exist as a file, else a :class:`UserError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    return p
