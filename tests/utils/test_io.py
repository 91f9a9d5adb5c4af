"""Atomic writes: a killed writer leaves the old file (or none), never a partial one."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sltk.utils.io import atomic_open, atomic_path, read_table, write_table


def test_atomic_open_writes_and_replaces(tmp_path):
    p = tmp_path / "a" / "out.txt"
    with atomic_open(p) as f:
        f.write("one\n")
    assert p.read_text() == "one\n"
    with atomic_open(p) as f:
        f.write("two\n")
    assert p.read_text() == "two\n"
    assert sorted(os.listdir(p.parent)) == ["out.txt"]


def test_exception_keeps_old_content_and_removes_temp(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write("new partial")
            raise RuntimeError("boom")
    assert p.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.bin") as t:
            t.write_bytes(b"x")
            raise RuntimeError("boom")
    assert not (tmp_path / "b.bin").exists()


def test_killed_writer_leaves_no_partial_file(tmp_path):
    target = tmp_path / "big.txt"
    target.write_text("previous complete output\n")
    code = textwrap.dedent(f"""
        import sys, time
        from sltk.utils.io import atomic_open
        with atomic_open({str(target)!r}) as f:
            for i in range(10**9):
                f.write("line %d\\n" % i)
                if i == 1000:
                    f.flush(); print("writing", flush=True)
                if i > 1000:
                    time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "previous complete output\n"
    # the orphaned temp file is hidden and never has the target's name
    leftovers = [n for n in os.listdir(tmp_path) if n != "big.txt"]
    assert all(n.startswith(".big.txt.") and n.endswith(".tmp") for n in leftovers)


def test_table_round_trip_sorted_c_locale(tmp_path):
    p = tmp_path / "t"
    write_table(p, [("b", "2"), ("B", "1"), ("a_1", "x y"), ("a", "")])
    assert p.read_text() == "B 1\na\na_1 x y\nb 2\n"
    assert list(read_table(p)) == [("B", "1"), ("a", ""), ("a_1", "x y"), ("b", "2")]


def test_atomic_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "p.txt") as f:
            f.write("x")
    finally:
        os.umask(old)
    # the module reads the umask once at import; with the default 022 files are 0644
    assert (os.stat(tmp_path / "p.txt").st_mode & 0o777) == 0o666 & ~__import__("sltk.utils.io", fromlist=["x"])._UMASK
