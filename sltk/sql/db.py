"""SQLite databases laid out as in Spider (``<db_dir>/<db>/<db>.sqlite``): schemas, column
values and query execution with a time limit."""

from __future__ import annotations

import sqlite3
import time
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

from sltk.utils.errors import UserError


class ExecError(Exception):
    """A query that SQLite rejects, or that runs past its time limit."""


def db_path(db_dir, db: str) -> Path:
    """The file of database ``db``; a missing one is a :class:`UserError` naming it."""
    p = Path(db_dir) / db / f"{db}.sqlite"
    if not p.is_file():
        raise UserError(f"database {db!r} does not exist (no {p})")
    return p


def _connect(path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


@lru_cache(maxsize=64)
def schema(path: str) -> Dict[str, List[str]]:
    """{table: [column, ...]} in declaration order (names lower case)."""
    con = _connect(path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY rowid")]
        return {t.lower(): [r[1].lower() for r in con.execute(f"PRAGMA table_info('{t}')")] for t in tables}
    finally:
        con.close()


@lru_cache(maxsize=64)
def text_values(path: str) -> Dict[Tuple[str, str], Tuple[str, ...]]:
    """{(table, column): distinct text values} of every column that holds text."""
    con = _connect(path)
    out = {}
    try:
        for t, cols in schema(path).items():
            for c in cols:
                vals = [r[0] for r in con.execute(f'SELECT DISTINCT "{c}" FROM "{t}"') if isinstance(r[0], str)]
                if vals:
                    out[(t, c)] = tuple(sorted(vals))
    finally:
        con.close()
    return out


def serialize_schema(sch: Dict[str, List[str]]) -> str:
    """``table : col , col | table : ...`` (the generator's and the plan model's input)."""
    return " | ".join(f"{t} : {' , '.join(cols)}" for t, cols in sch.items())


_CONS: Dict[str, sqlite3.Connection] = {}


def execute(path, sql: str, timeout_s: float = 2.0, max_rows: int = 10000) -> List[tuple]:
    """Rows of ``sql`` on the database file ``path`` (read-only); errors and timeouts raise
    :class:`ExecError`."""
    key = str(path)
    con = _CONS.get(key)
    if con is None:
        con = _CONS[key] = _connect(path)
    deadline = time.monotonic() + timeout_s
    con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10000)
    try:
        cur = con.execute(sql)
        return cur.fetchmany(max_rows)
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as e:
        raise ExecError(str(e) or type(e).__name__) from None
    finally:
        con.set_progress_handler(None, 0)
