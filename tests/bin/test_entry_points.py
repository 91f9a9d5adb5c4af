"""Every executable in bin/ starts and answers --help (an entry script that imports the wrong
name or calls nothing fails here, not in a recipe)."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parents[2] / "bin"


@pytest.mark.parametrize("script", sorted(p.name for p in BIN.iterdir() if p.is_file()))
def test_help(script, run_env):
    r = subprocess.run([sys.executable, str(BIN / script), "--help"], capture_output=True, text=True, env=run_env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Usage:" in r.stdout or "usage:" in r.stdout, r.stdout[:500]
