"""The program contract: config defaults, unknown keys, user errors, help."""

import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from sltk.utils.cli import load_config, program
from sltk.utils.errors import UserError


@program(examples=["toy --num-bins 40 in.txt"], name="toy")
@click.argument("path")
@click.option("--num-bins", default=80, type=int, help="Number of bins.")
@click.option("--mode", default="fast", type=click.Choice(["fast", "slow"]), help="Mode.")
def toy(path, num_bins, mode):
    """Print the options, or fail on a missing file."""
    if path == "missing":
        raise UserError(f"input file {path} does not exist")
    click.echo(f"{num_bins} {mode}")


def run(args):
    return CliRunner().invoke(toy, args, prog_name="toy", standalone_mode=True)


def test_config_supplies_defaults_and_command_line_wins(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num-bins: 40\nmode: slow\n")
    assert run(["--config", str(cfg), "x"]).output.strip().endswith("40 slow")
    assert run(["--config", str(cfg), "--num-bins", "23", "x"]).output.strip().endswith("23 slow")
    cfg.write_text("num_bins: 12\n")  # snake case accepted too
    assert run(["--config", str(cfg), "x"]).output.strip().endswith("12 fast")


def test_config_unknown_key_is_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num-bins: 40\nnum-bens: 3\n")
    r = run(["--config", str(cfg), "x"])
    assert r.exit_code == 2
    assert "unknown key 'num-bens'" in r.output and str(cfg) in r.output
    cfg.write_text("a: 1\nb: 2\n")
    with pytest.raises(UserError, match="unknown key 'b'"):
        load_config(str(cfg), ["a"])


def test_config_bad_value_type(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num-bins: many\n")
    r = run(["--config", str(cfg), "x"])
    assert r.exit_code == 2 and "num-bins" in r.output


def test_config_not_a_mapping(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("- a\n- b\n")
    r = run(["--config", str(cfg), "x"])
    assert r.exit_code == 2 and "must hold a mapping" in r.output


def test_help_shows_defaults_and_examples():
    r = run(["--help"])
    assert r.exit_code == 0
    assert "toy --num-bins 40 in.txt" in r.output
    assert "default: 80" in r.output and "--config" in r.output


def _subprocess(code, *args):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True)


PROGRAM = """
import click
from sltk.utils.cli import program
from sltk.utils.errors import UserError

@program(name="toy")
@click.argument("path")
def main(path):
    raise UserError(f"audio file {path} is corrupt")

main()
"""


def test_user_error_is_one_line_and_exit_2():
    r = _subprocess(PROGRAM, "a.wav")
    assert r.returncode == 2
    err_lines = [l for l in r.stderr.splitlines() if "error" in l.lower()]
    assert err_lines == ["toy: error: audio file a.wav is corrupt"]
    assert "Traceback" not in r.stderr
    # the log header names the command line and the versions
    assert "a.wav" in r.stderr.splitlines()[0]
    assert "versions: python=" in r.stderr


def test_unknown_option_exit_2_without_traceback():
    r = _subprocess(PROGRAM, "--no-such-option", "a.wav")
    assert r.returncode == 2
    errors = [l for l in r.stderr.splitlines() if l.startswith("toy: error:")]
    assert len(errors) == 1 and "No such option" in errors[0] and "--no-such-option" in errors[0]
    assert "Traceback" not in r.stderr
