"""The kws/aec1 recipe end to end at --size tiny (a copy in a tmp dir): simulated data with the
reference signal, the four detector variants, evaluation per SER bin with DET curves, the
shuffled-reference ablation, the tables; resume; bad options."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_kws_recipe_end_to_end(tmp_path, run_env):
    egs = tmp_path / "egs"
    shutil.copytree(ROOT / "egs" / "utils", egs / "utils")
    shutil.copytree(ROOT / "egs" / "assistant" / "asr1", egs / "assistant" / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))   # path.sh and cmd.sh live there
    shutil.copytree(ROOT / "egs" / "kws" / "aec1", egs / "kws" / "aec1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp", ".run_snapshot*"))
    env = dict(run_env, SLTK_ROOT=str(ROOT))
    run = egs / "kws" / "aec1" / "run.sh"
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2"], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, data = root / "exp" / "tiny", root / "data" / "tiny"

    for s in ("train", "dev", "test"):
        tables = {t: (data / s / t).read_text().split("\n") for t in ("wav.scp", "ref.scp", "utt2kw", "utt2ser")}
        ids = [[l.split()[0] for l in v if l] for v in tables.values()]
        assert ids[0] and all(i == ids[0] for i in ids), s
    # the test set's voices come from a synthesizer the training never used
    train_spk = {l.split()[1] for l in (data / "train" / "utt2spk").read_text().splitlines()}
    test_spk = {l.split()[1] for l in (data / "test" / "utt2spk").read_text().splitlines()}
    assert not train_spk & test_spk

    for v in ("mic", "early", "mid", "aec"):
        m = json.loads((exp / v / "eval" / "metrics.json").read_text())
        assert set(m["tasks"]) == {"kw", "dd"} and "clean" in m["tasks"]["kw"] and "playback" in m["tasks"]["kw"]
        assert m["complexity"]["params"] > 0 and (exp / v / "eval" / "det_kw.png").is_file()
        assert (v == "aec") == (m["complexity"]["aec_macs_per_s"] > 0)
    for v in ("early", "mid"):
        assert json.loads((exp / v / "eval_shuffled_ref" / "metrics.json").read_text())["shuffle_ref"] is True
    md = (exp / "results.md").read_text()
    assert "### Keyword spotting" in md and "### Device-directed speech detection" in md and "### Compute" in md
    assert "(shuffled reference)" in md

    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "Stage" not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([str(run), "--size", "tiny", "--variants", "late"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--variants" in r.stderr
