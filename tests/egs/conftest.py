import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_asr1(tmp_path_factory):
    """A copy of egs/ (utils and assistant/asr1) with asr1 run once at --size tiny (greedy
    decoding only), shared by the recipes built on its data and model: returns (egs, env, copy),
    copy(name) copies egs/assistant/<name> (without data and exp) next to it and returns its run.sh."""
    egs = tmp_path_factory.mktemp("egs_tiny") / "egs"
    shutil.copytree(ROOT / "egs" / "utils", egs / "utils")
    shutil.copytree(ROOT / "egs" / "assistant" / "asr1", egs / "assistant" / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["SLTK_ROOT"] = str(ROOT)
    r = subprocess.run([str(egs / "assistant" / "asr1" / "run.sh"), "--size", "tiny", "--nj", "2",
                        "--methods", "greedy"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]

    def copy(name: str) -> Path:
        src, dst = ROOT / "egs" / "assistant" / name, egs / "assistant" / name
        if not dst.exists():
            shutil.copytree(src, dst, symlinks=True,
                            ignore=shutil.ignore_patterns("data", "exp", ".run_snapshot*", ".bg_*", "bg_*.log"))
            assistant = (ROOT / "egs" / "assistant").resolve()
            # recipes whose scripts a link points to (local/x.py -> ../../other/local/x.py) come too
            for link in src.rglob("*"):
                if link.relative_to(src).parts[0] in ("data", "exp"):
                    continue
                target = link.resolve()
                if link.is_symlink() and target.is_relative_to(assistant) and target.parts[len(assistant.parts)] != name:
                    copy(target.parts[len(assistant.parts)])
        return dst / "run.sh"

    return egs, env, copy

