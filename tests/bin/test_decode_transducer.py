"""decode-transducer on the overfitted toy model: every method recovers the text."""

import json
import subprocess
import sys

import pytest

from sltk.asr import loss as L

ALL = ["greedy", "modified_beam", "ctc_greedy"]
K2 = ["fast_beam", "fast_beam_LG", "ctc_H", "ctc_HLG", "ctc_HLG_nbest"]


def test_decode_every_method(toy_corpus, overfit_model, tmp_path, run_env):
    cuts, lang = toy_corpus
    exp, cfg = overfit_model
    methods = ALL + (K2 if L.k2_available() else [])
    cmd = [sys.executable, "-m", "sltk.bin.decode_transducer", "--checkpoint", str(exp / f"epoch-{cfg.num_epochs}.pt"),
           "--cuts", str(cuts), "--lang-dir", str(lang), "--out-dir", str(tmp_path / "dec")]
    for m in methods:
        cmd += ["--method", m]
    r = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Done {10 * len(methods)} of {10 * len(methods)}" in r.stderr
    for m in methods:
        d = tmp_path / "dec" / m
        refs = dict(l.split(" ", 1) for l in (d / "ref.txt").read_text().splitlines())
        hyps = dict((l.split(" ", 1) + [""])[:2] for l in (d / "hyp.txt").read_text().splitlines())
        wrong = {k: (v, hyps.get(k)) for k, v in refs.items() if hyps.get(k) != v}
        assert len(wrong) <= 1, (m, wrong)  # an overfitted model: (nearly) every method is exact
        rtf = json.loads((d / "rtf.json").read_text())
        assert rtf["utterances"] == 10 and rtf["rtf"] > 0
        scores = [float(l.split()[1]) for l in (d / "scores.txt").read_text().splitlines()]
        assert all(s <= 0 for s in scores)


def test_decode_errors(toy_corpus, overfit_model, tmp_path, run_env):
    cuts, lang = toy_corpus
    exp, cfg = overfit_model
    base = [sys.executable, "-m", "sltk.bin.decode_transducer", "--cuts", str(cuts), "--lang-dir", str(lang),
            "--out-dir", str(tmp_path / "d")]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = subprocess.run(base + ["--checkpoint", str(bad)], capture_output=True, text=True, env=run_env)
    assert r.returncode == 2 and "bad.pt" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(base + ["--checkpoint", str(exp / "epoch-1.pt"), "--method", "nope"], capture_output=True,
                       text=True, env=run_env)
    assert r.returncode == 2 and "nope" in r.stderr
