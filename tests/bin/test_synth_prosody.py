"""synth-prosody: make-data, align, train (and resume), synth, eval, report on a tiny corpus;
bad input gives one clear error and a non-zero exit, and writes nothing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sltk.bin.synth_prosody import main
from sltk.tts.evaluate import PROSODY_SUBSETS

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
BIN = Path(__file__).resolve().parents[2] / "bin" / "synth-prosody"


def run(args):
    return main(args, standalone_mode=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sp")
    assert run(["make-data", "--num-utts", "10", "--seed", "3", str(root / "data")]) in (0, None)
    assert run(["align", "--iterations", "2", str(root / "data"), str(root / "ali")]) in (0, None)
    args = ["train", "--granularity", "word", "--epochs", "1", "--dim", "16", "--batch-size", "4",
            str(root / "ali"), str(root / "exp" / "word")]
    assert run(args) in (0, None)
    args[4] = "2"  # a second run resumes from epoch 1 and trains epoch 2 only
    assert run(args) in (0, None)
    return root, args


def test_make_data_and_align(trained):
    root, _ = trained
    d = root / "data"
    texts = dict(l.split(" ", 1) for l in (d / "text").read_text().splitlines())
    assert len(texts) == 10 and all(t[-1] in ".?" for t in texts.values())
    pros = [json.loads(l.split(" ", 1)[1]) for l in (d / "utt2prosody").read_text().splitlines()]
    # a focus word is marked in the text exactly when utt2prosody says so
    for (u, t), p in zip(sorted(texts.items()), pros):
        assert ("*" in t) == p["marked"] and (p["focus"] >= 0 or not p["marked"])
    x, sr = sf.read(d / "wav" / f"{sorted(texts)[0]}.wav")
    assert sr == 16000 and len(x) > 8000
    a = root / "ali"
    feats_frames = {}
    import torch

    feats = torch.load(a / "feats.pt", weights_only=False)
    for line in (a / "durations.txt").read_text().splitlines():
        u, *ds = line.split()
        assert sum(map(int, ds)) == feats[u].shape[0]  # durations sum to the frame count
        feats_frames[u] = feats[u].shape[0]
    assert len(feats_frames) == 10 and (a / "aligner.json").is_file()
    f0 = torch.load(a / "f0.pt", weights_only=False)
    assert all(len(f0[u]) == n for u, n in feats_frames.items())
    assert all((f0[u] > 0).any() for u in feats_frames)  # every utterance has voiced frames


def test_train_resume_synth_eval_report(trained, tmp_path):
    root, args = trained
    exp = root / "exp" / "word"
    assert (exp / "final.pt").is_file() and (exp / "epoch-2.pt").is_file()
    assert len((exp / "train.log.jsonl").read_text().splitlines()) == 2
    assert [json.loads(l)["epoch"] for l in (exp / "train.log.jsonl").read_text().splitlines()] == [1, 2]
    assert run(args) in (0, None)  # resume: already done
    assert len((exp / "train.log.jsonl").read_text().splitlines()) == 2
    other = list(args)
    other[other.index("--dim") + 1] = "24"
    assert run(other) == 2  # another configuration in the same directory
    # one text; the model picked from the experiment directory by granularity
    out = tmp_path / "q.wav"
    assert run(["synth", "--granularity", "word", str(root / "exp"), "is the *red* lamp in the kitchen?",
                "-o", str(out)]) in (0, None)
    y, sr = sf.read(out)
    assert sr == 16000 and len(y) > 1600 and np.abs(y).max() > 0
    slow = tmp_path / "slow.wav"
    assert run(["synth", "--speed", "0.5", str(exp / "final.pt"), "is the *red* lamp in the kitchen?",
                "-o", str(slow)]) in (0, None)
    assert len(sf.read(slow)[0]) > 1.5 * len(y)
    # prosody copied from a recording of the same text
    utt, text = (root / "ali" / "text").read_text().splitlines()[0].split(" ", 1)
    wav = dict(l.split(" ", 1) for l in (root / "ali" / "wav.scp").read_text().splitlines())[utt]
    assert run(["synth", "--reference", wav, str(exp / "final.pt"), text, "-o", str(tmp_path / "r.wav")]) in (0, None)
    # a file of utterances
    assert run(["synth", "--text-file", str(root / "ali" / "text"), str(exp / "final.pt"),
                "-o", str(tmp_path / "many")]) in (0, None)
    assert len(list((tmp_path / "many").glob("*.wav"))) == 10
    # eval and report
    ev = exp / "eval"
    assert run(["eval", "--max-utts", "2", "--num-plots", "1", "--gl-iters", "4", str(exp / "final.pt"),
                str(root / "ali"), str(ev)]) in (0, None)
    m = json.loads((ev / "metrics.json").read_text())
    assert set(m) >= {"oracle", "predicted", "copy"} and m["copy"]["mcd_db"] == 0.0
    assert 0 <= m["oracle"]["vuv_err_pct"] <= 100 and m["oracle"]["dur_mae_ms"] >= 0
    assert m["oracle"]["utterances"] == 2 and np.isfinite(m["oracle"]["mcd_db"])
    assert len(list(ev.glob("contours_*.png"))) == 1 and len(list((ev / "wav").glob("*.wav"))) == 6
    assert run(["report", str(root / "exp"), str(tmp_path / "results.md")]) in (0, None)
    assert "| word | oracle |" in (tmp_path / "results.md").read_text()
    # the same table per prosody subset; the two utterances evaluated fall into the subsets they belong to
    prosody = {u: json.loads(js) for u, js in (l.split(" ", 1) for l in
                                                (root / "ali" / "utt2prosody").read_text().splitlines())}
    assert run(["report", "--utt2prosody", str(root / "ali" / "utt2prosody"), str(root / "exp"),
                str(tmp_path / "by.md")]) in (0, None)
    by = (tmp_path / "by.md").read_text()
    evaluated = [json.loads(l)["utt"] for l in (ev / "per_utt.jsonl").read_text().splitlines()][::3]
    assert len(evaluated) == 2
    counts = [sum(1 for u in evaluated if keep(prosody[u])) for _, keep in PROSODY_SUBSETS]
    for (name, _), n in zip(PROSODY_SUBSETS, counts):
        assert f"### Subset: {name} ({n} utterances)" in by
    assert by.count("| word | oracle |") == 1 + sum(1 for n in counts if n)
    assert run(["report", "--utt2prosody", str(tmp_path / "missing"), str(root / "exp"), str(tmp_path / "x.md")]) == 2


def test_bad_input(trained, tmp_path, capsys):
    root, _ = trained
    model = root / "exp" / "word" / "final.pt"
    capsys.readouterr()
    assert run(["synth", str(model), "it costs 5 euros", "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert "synth-prosody: error:" in err and "'5'" in err and not (tmp_path / "x.wav").exists()
    # one bad line in a text file: nothing is written, the line is named
    tf = tmp_path / "text"
    tf.write_text("a1 the lamp is red.\na2 the caf\u00e9 is open.\n")
    assert run(["synth", "--text-file", str(tf), str(model), "-o", str(tmp_path / "outdir")]) == 2
    err = capsys.readouterr().err
    assert "a2" in err and "'\u00e9'" in err and not (tmp_path / "outdir").exists()
    assert run(["synth", "--granularity", "phoneme", str(model), "the lamp.", "-o", str(tmp_path / "y.wav")]) == 2
    assert "granularity 'word'" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert run(["synth", str(bad), "the lamp.", "-o", str(tmp_path / "z.wav")]) == 2
    assert "not a synth-prosody model" in capsys.readouterr().err
    assert run(["align", str(tmp_path / "missing"), str(tmp_path / "ali")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 2\nlearning_rate: 3\n")
    assert run(["train", "--config", str(cfg), str(root / "ali"), str(tmp_path / "e")]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err
    assert run(["eval", str(model), str(tmp_path / "nope"), str(tmp_path / "ev")]) == 2
    assert "alignment directory" in capsys.readouterr().err


def test_help_and_summary(run_env):
    r = subprocess.run([sys.executable, str(BIN), "--help"], capture_output=True, text=True, env=run_env)
    assert r.returncode == 0
    for sub in ("make-data", "align", "train", "synth", "eval", "report"):
        assert sub in r.stdout
    r = subprocess.run([sys.executable, str(BIN), "synth", "--help"], capture_output=True, text=True, env=run_env)
    assert "--granularity" in r.stdout and "--reference" in r.stdout and "--speed" in r.stdout
    assert "Examples:" in r.stdout
