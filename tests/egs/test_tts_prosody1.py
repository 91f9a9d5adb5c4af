"""The tts/prosody1 recipe end to end at --size tiny (a copy in a tmp dir): the espeak-ng SSML
corpus, alignment, one model per granularity, evaluation with oracle and predicted
embeddings, the results table, sample wavs; resume; a bad option."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tiny_prosody_recipe_end_to_end(tmp_path, run_env):
    egs = tmp_path / "egs"
    shutil.copytree(ROOT / "egs" / "utils", egs / "utils")
    shutil.copytree(ROOT / "egs" / "assistant" / "asr1", egs / "assistant" / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))   # path.sh and cmd.sh live there
    shutil.copytree(ROOT / "egs" / "tts" / "prosody1", egs / "tts" / "prosody1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))
    env = dict(run_env, SLTK_ROOT=str(ROOT))
    run = egs / "tts" / "prosody1" / "run.sh"
    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    exp, data = run.parent / "exp" / "tiny", run.parent / "data" / "tiny"

    train = set(l.split()[0] for l in (data / "train" / "text").read_text().splitlines())
    test = set(l.split()[0] for l in (data / "test" / "text").read_text().splitlines())
    assert len(train) == 24 and len(test) == 3 and not train & test
    for line in (exp / "align_test" / "durations.txt").read_text().splitlines():
        assert all(int(d) >= 1 for d in line.split()[1:])
    for g in ("none", "utterance", "word", "phoneme"):
        m = json.loads((exp / g / "eval" / "metrics.json").read_text())
        assert m["granularity"] == g
        assert set(m) >= ({"none", "copy"} if g == "none" else {"oracle", "predicted", "copy"})
        assert (exp / g / "final.pt").is_file() and list((exp / g / "eval").glob("contours_*.png"))
    md = (exp / "results.md").read_text()
    assert "| word | predicted |" in md and "gap closed" in md
    samples = sorted(p.name for p in (exp / "samples").glob("*.wav"))
    assert len(samples) == 2 and samples[0].endswith("_word_predicted.wav")

    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "Stage" not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([str(run), "--size", "tiny", "--granularities", "sentence"], capture_output=True, text=True,
                       env=env)
    assert r.returncode != 0 and "--granularities" in r.stderr
