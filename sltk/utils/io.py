"""Atomic file writes and small text-table helpers shared by every program.

A write goes to a temporary file in the destination's directory and is renamed over the
destination only when it completed, so a killed program never leaves a half-written
output that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Tuple, Union

PathLike = Union[str, os.PathLike]
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    For writers that want a file name (torch.save, soundfile, sqlite). On an exception
    the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; rename it to ``path`` when the block completes."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def read_table(path: PathLike) -> Iterator[Tuple[str, str]]:
    """Read a Kaldi-style text table: ``key<space>value`` per line (value may be empty)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            yield parts[0], (parts[1].strip() if len(parts) > 1 else "")


def write_table(path: PathLike, items: Iterable[Tuple[str, str]], sort: bool = True) -> None:
    """Write ``key value`` lines atomically, sorted by key in C locale order if ``sort``."""
    items = list(items)
    if sort:
        items.sort(key=lambda kv: kv[0].encode("utf-8"))
    with atomic_open(path, "w", encoding="utf-8") as f:
        for k, v in items:
            f.write(f"{k} {v}\n" if v != "" else f"{k}\n")
