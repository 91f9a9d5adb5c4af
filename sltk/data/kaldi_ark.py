"""Kaldi feature archives: binary float matrices in ``.ark`` files and ``.scp`` indexes.

An archive is a sequence of entries, each ``<key> `` (the key and one space) followed by a
matrix in Kaldi's binary format, little-endian:

============  =====================================================================
bytes         meaning
============  =====================================================================
``\\0B``       binary mode marker (a zero byte, then ``B``)
``FM ``        the token: float32 matrix (``DM `` for float64)
``\\x04`` int32  the size of the integer that follows (4), then the number of rows
``\\x04`` int32  4, then the number of columns
data          rows * columns values, row-major
============  =====================================================================

A ``feats.scp`` line is ``<key> <ark-path>:<offset>`` where the offset is that of the
``\\0B`` marker, so a reader seeks there and reads one matrix (Kaldi's ``ark:path:offset``
random access). Compressed matrices (``CM``) and text archives are not read here.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Dict, Iterator, Tuple

import numpy as np

from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, read_table

_DTYPES = {b"FM ": np.dtype("<f4"), b"DM ": np.dtype("<f8")}
_TOKENS = {np.dtype("<f4"): b"FM ", np.dtype("<f8"): b"DM "}


def matrix_bytes(mat: np.ndarray) -> bytes:
    """The binary form of a 2-D float32/float64 matrix (starting with ``\\0B``)."""
    mat = np.asarray(mat)
    if mat.ndim != 2:
        raise ValueError(f"a Kaldi matrix is 2-D, got shape {mat.shape}")
    dt = np.dtype("<f8") if mat.dtype == np.float64 else np.dtype("<f4")
    rows, cols = mat.shape
    header = b"\0B" + _TOKENS[dt] + struct.pack("<bibi", 4, rows, 4, cols)
    return header + np.ascontiguousarray(mat, dtype=dt).tobytes()


def entry_size(header: bytes) -> int:
    """Bytes of a matrix whose first 15 bytes are ``header``."""
    dt, rows, cols = _parse_header(header, "matrix")
    return 15 + rows * cols * dt.itemsize


def _parse_header(header: bytes, where: str) -> Tuple[np.dtype, int, int]:
    if len(header) < 15 or header[:2] != b"\0B":
        raise UserError(f"{where}: not a binary Kaldi matrix (text archives are not supported)")
    token = header[2:5]
    if token not in _DTYPES:
        raise UserError(f"{where}: unsupported Kaldi matrix type {token!r} (only FM and DM)")
    s1, rows, s2, cols = struct.unpack("<bibi", header[5:15])
    if s1 != 4 or s2 != 4 or rows < 0 or cols < 0:
        raise UserError(f"{where}: corrupt Kaldi matrix header")
    return _DTYPES[token], rows, cols


def read_matrix(f: BinaryIO, where: str = "archive") -> np.ndarray:
    """Read one binary matrix at the current position (its ``\\0B`` marker)."""
    dt, rows, cols = _parse_header(f.read(15), where)
    n = rows * cols * dt.itemsize
    data = f.read(n)
    if len(data) != n:
        raise UserError(f"{where}: truncated matrix ({len(data)} of {n} bytes)")
    return np.frombuffer(data, dtype=dt).reshape(rows, cols)


class ArkWriter:
    """Append matrices to an archive; :meth:`write` returns the ``path:offset`` of the entry.

    ``mode`` is ``"wb"`` (a new archive) or ``"ab"`` (append: resuming a job; the caller
    truncates the file to its last complete entry first)."""

    def __init__(self, path: PathLike, mode: str = "wb"):
        if mode not in ("wb", "ab"):
            raise ValueError("mode must be 'wb' or 'ab'")
        self.path = str(path)
        self.file = open(self.path, mode)
        self.offset = self.file.tell()

    def write(self, key: str, mat: np.ndarray) -> str:
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"bad archive key {key!r}")
        prefix = key.encode("utf-8") + b" "
        self.file.write(prefix)
        where = self.offset + len(prefix)
        data = matrix_bytes(mat)
        self.file.write(data)
        self.offset = where + len(data)
        return f"{self.path}:{where}"

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "ArkWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_ark(path: PathLike) -> Iterator[Tuple[str, np.ndarray]]:
    """(key, matrix) of every entry of an archive, in order."""
    with open(path, "rb") as f:
        while True:
            key = bytearray()
            while True:
                c = f.read(1)
                if not c:
                    if key.strip():
                        raise UserError(f"{path}: truncated entry {key.decode(errors='replace')!r}")
                    return
                if c == b" ":
                    break
                key += c
            name = key.decode("utf-8").strip()
            yield name, read_matrix(f, f"{path} (key {name})")


def split_rxfilename(rx: str) -> Tuple[str, int]:
    path, sep, offset = rx.rpartition(":")
    if not sep or not offset.isdigit():
        raise UserError(f"expected '<ark>:<offset>', got {rx!r}")
    return path, int(offset)


def read_scp_entry(rx: str) -> np.ndarray:
    """The matrix at ``<ark>:<offset>``."""
    path, offset = split_rxfilename(rx)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return read_matrix(f, rx)
    except FileNotFoundError:
        raise UserError(f"archive {path} does not exist") from None


def read_scp(path: PathLike) -> Iterator[Tuple[str, np.ndarray]]:
    """(key, matrix) for every line of a ``feats.scp``."""
    for key, rx in read_table(path):
        yield key, read_scp_entry(rx)


def scp_end_offsets(entries: Dict[str, str]) -> Dict[str, int]:
    """For ``key -> path:offset`` entries, the byte after each entry's matrix (reads headers)."""
    out = {}
    handles: Dict[str, BinaryIO] = {}
    try:
        for key, rx in entries.items():
            path, offset = split_rxfilename(rx)
            if path not in handles:
                handles[path] = open(path, "rb")
            f = handles[path]
            f.seek(offset)
            out[key] = offset + entry_size(f.read(15))
    finally:
        for f in handles.values():
            f.close()
    return out


__all__ = ["ArkWriter", "matrix_bytes", "read_matrix", "read_ark", "read_scp", "read_scp_entry",
           "scp_end_offsets", "split_rxfilename"]
