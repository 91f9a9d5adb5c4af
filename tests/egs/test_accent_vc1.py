"""The accent/vc1 recipe end to end at --size tiny (a copy in a tmp dir): the corpus, the flow,
the judges, the five-system evaluation and the table; resume; bad options."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_tiny_accent_recipe_end_to_end(tmp_path, run_env):
    egs = tmp_path / "egs"
    shutil.copytree(ROOT / "egs" / "utils", egs / "utils")
    shutil.copytree(ROOT / "egs" / "assistant" / "asr1", egs / "assistant" / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))   # path.sh and cmd.sh live there
    shutil.copytree(ROOT / "egs" / "accent" / "vc1", egs / "accent" / "vc1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp", ".run_snapshot*"))
    env = dict(run_env, SLTK_ROOT=str(ROOT))
    run = egs / "accent" / "vc1" / "run.sh"
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2"], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, data = root / "exp" / "tiny", root / "data" / "tiny"

    ev = {l.split(" ", 1)[1] for l in (data / "eval" / "text").read_text().splitlines()}
    tr = {l.split(" ", 1)[1] for l in (data / "train" / "text").read_text().splitlines()}
    assert ev and tr and not ev & tr
    m = json.loads((exp / "eval" / "metrics.json").read_text())
    assert list(m["systems"]) == ["source", "plain", "remap", "remap+warp", "remap+warp+attend", "target"]
    assert m["pairs"] == 4
    # remap keeps the source length; warp follows the target accent's durations
    assert m["systems"]["remap"]["dur_ratio"] == pytest.approx(m["systems"]["source"]["dur_ratio"], rel=0.05)
    md = (exp / "results.md").read_text()
    assert "| remap + warp + attend |" in md and "| plain flow VC (accent label swapped) |" in md
    assert list((exp / "eval" / "wav").glob("*remap_warp_attend.wav"))

    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "Stage" not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([str(run), "--size", "tiny", "--targets", "some"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--targets" in r.stderr
    r = subprocess.run([str(run), "--size", "huge"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--size" in r.stderr
