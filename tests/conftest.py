import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_env():
    """Environment for running programs in subprocesses: the repo's bin/ and the venv on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
