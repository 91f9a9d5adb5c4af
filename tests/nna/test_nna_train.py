"""Accelerator-aware training and integer decoding on the toy corpus.

A float model overfitted on the toy corpus (the ``overfit_model`` fixture) is fine-tuned with
NNA emulation by ``train-transducer --nna-config``; the checkpoint records the profile and the
calibrated ranges, ``load_model`` rebuilds the emulated model, and ``decode-transducer``
decodes it (and the float model, post-training quantized) on the integer path.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sltk.asr import loss as L
from sltk.asr.checkpoint import load_model
from sltk.asr.data import AsrBatches
from sltk.asr.search import greedy_search, modified_beam_search
from sltk.asr.train import Tokenizer, TrainConfig, load_cuts, prepare, train
from sltk.nna import emulate as E
from sltk.nna.aat import NNAHook
from sltk.nna.profile import load_profile

CONF = Path(__file__).resolve().parents[2] / "egs" / "assistant" / "nna1" / "conf" / "nna"
LOSS = "k2" if L.k2_available() else "torch"


def read_dir(d):
    refs = dict(l.split(" ", 1) for l in (d / "ref.txt").read_text().splitlines())
    hyps = dict((l.split(" ", 1) + [""])[:2] for l in (d / "hyp.txt").read_text().splitlines())
    return refs, hyps


def errors(refs, hyps):
    return sum(hyps.get(k) != v for k, v in refs.items())


def test_aat_finetune_then_integer_decode(toy_corpus, overfit_model, toy_model, tmp_path, run_env):
    cuts, lang = toy_corpus
    exp_float, cfg = overfit_model
    float_ckpt = exp_float / f"epoch-{cfg.num_epochs}.pt"
    mc = tmp_path / "model.yaml"
    mc.write_text(yaml.safe_dump(toy_model))
    exp = tmp_path / "aat"
    cmd = [sys.executable, "-m", "sltk.bin.train_transducer", "--model-config", str(mc), "--cuts-train", str(cuts),
           "--lang-dir", str(lang), "--exp-dir", str(exp), "--init-checkpoint", str(float_ckpt),
           "--nna-config", str(CONF / "harsh.yaml"), "--calib-steps", "3", "--num-epochs", "3",
           "--max-duration", "3", "--no-spec-augment", "--loss", LOSS, "--lr", "5e-4", "--warmup-steps", "1",
           "--save-every-n", "0", "--log-every", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fine-tuning from the weights of" in r.stderr and "activation ranges frozen" in r.stderr
    obj = torch.load(exp / "epoch-3.pt", weights_only=False)
    assert [t["kind"] for t in obj["transforms"]] == ["nna"]
    assert obj["transforms"][0]["profile"]["name"] == "harsh"
    assert obj["hooks"]["nna"]["frozen_at"] == 4
    assert yaml.safe_load((exp / "config.yaml").read_text())["nna"]["calib_steps"] == 3

    # load_model rebuilds the emulated model with the frozen ranges; the integer path decodes
    model = load_model(exp / "epoch-3.pt").eval()
    assert isinstance(model.encoder.layers[0].lstm, E.NNALSTM) and E.ranges_frozen(model)
    assert type(model.encoder.layers[0].norm) is torch.nn.LayerNorm   # harsh: layer norm on the CPU
    E.set_mode(model, "int")
    b = AsrBatches()[load_cuts(str(cuts), "t")]
    tok = Tokenizer(str(lang))
    enc, lens = model.encode(b["feats"], b["feat_lens"])
    for hyps in (greedy_search(model, enc, lens), modified_beam_search(model, enc, lens, beam=4)):
        texts = [tok.decode(h) for h in hyps]
        assert sum(t != ref for t, ref in zip(texts, b["texts"])) <= 3, list(zip(texts, b["texts"]))

    # decode-transducer: the AAT checkpoint decodes on the integer path with its own profile
    methods = ["greedy", "modified_beam"] + (["fast_beam", "ctc_H"] if L.k2_available() else [])
    dec = [sys.executable, "-m", "sltk.bin.decode_transducer", "--cuts", str(cuts), "--lang-dir", str(lang)]
    r = subprocess.run(dec + ["--checkpoint", str(exp / "epoch-3.pt"), "--out-dir", str(tmp_path / "d_aat")]
                       + [a for m in methods for a in ("--method", m)], capture_output=True, text=True,
                       env=run_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Done {10 * len(methods)} of {10 * len(methods)}" in r.stderr
    for m in methods:
        rtf = json.loads((tmp_path / "d_aat" / m / "rtf.json").read_text())
        assert rtf["nna"].startswith("accelerator-aware checkpoint, NNA profile harsh") and "int path" in rtf["nna"]
        assert errors(*read_dir(tmp_path / "d_aat" / m)) <= 4, m
    # another profile than the recorded one is refused
    r = subprocess.run(dec + ["--checkpoint", str(exp / "epoch-3.pt"), "--out-dir", str(tmp_path / "x"),
                              "--nna-config", str(CONF / "int8.yaml")], capture_output=True, text=True, env=run_env)
    assert r.returncode == 2 and "trained for the NNA profile 'harsh'" in r.stderr and "Traceback" not in r.stderr


def test_ptq_decode_of_a_float_checkpoint(toy_corpus, overfit_model, tmp_path, run_env):
    cuts, lang = toy_corpus
    exp, cfg = overfit_model
    base = [sys.executable, "-m", "sltk.bin.decode_transducer", "--checkpoint", str(exp / f"epoch-{cfg.num_epochs}.pt"),
            "--cuts", str(cuts), "--lang-dir", str(lang), "--nna-config", str(CONF / "int8.yaml")]
    r = subprocess.run(base + ["--out-dir", str(tmp_path / "d"), "--calib-cuts", str(cuts), "--calib-utts", "6",
                               "--method", "greedy", "--method", "modified_beam"],
                       capture_output=True, text=True, env=run_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "activation ranges calibrated on 6 utterances" in r.stderr
    for m in ("greedy", "modified_beam"):
        assert errors(*read_dir(tmp_path / "d" / m)) <= 1, m  # int8 loses (almost) nothing here
        assert json.loads((tmp_path / "d" / m / "rtf.json").read_text())["nna"].startswith(
            "post-training quantization, NNA profile int8")
    # no calibration source: refused with a clear message
    r = subprocess.run(base + ["--out-dir", str(tmp_path / "e")], capture_output=True, text=True, env=run_env)
    assert r.returncode == 2 and "give --calib-cuts" in r.stderr and "Traceback" not in r.stderr


def _config(cuts, lang, exp, model, **kw):
    base = dict(cuts_train=str(cuts), lang_dir=str(lang), exp_dir=str(exp), model=dict(model), loss=LOSS,
                max_duration=3.0, num_epochs=3, lr=5e-4, warmup_steps=1, warm_step=1, spec_augment=False,
                save_every_n=0, log_every=1000, keep_last_k=10)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_of_a_hooked_run_mid_calibration(toy_corpus, overfit_model, toy_model, tmp_path):
    """Killed right after step 2 (still calibrating), rerun: the run ends exactly where an
    uninterrupted one ends (weights, observer ranges, hook state)."""
    cuts, lang = toy_corpus
    exp_float, fcfg = overfit_model
    init = str(exp_float / f"epoch-{fcfg.num_epochs}.pt")
    prof = load_profile(CONF / "harsh.yaml")
    exp = tmp_path / "exp"
    cfg = _config(cuts, lang, exp, toy_model, init_checkpoint=init, max_steps=2, save_every_n=2)
    mcfg, backend = prepare(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(0, cfg, mcfg, backend, hooks=[NNAHook(prof, calib_steps=3)])
        mid = torch.load(exp / "checkpoint-2.pt", weights_only=False)
        assert mid["hooks"]["nna"]["frozen_at"] == 0
        assert int(mid["model"]["encoder.layers.0.lstm.obs.0.c.count"]) == 2
        train(0, _config(cuts, lang, exp, toy_model, init_checkpoint=init), mcfg, backend,
              hooks=[NNAHook(prof, calib_steps=3)])
        ref_exp = tmp_path / "ref"
        train(0, _config(cuts, lang, ref_exp, toy_model, init_checkpoint=init), mcfg, backend,
              hooks=[NNAHook(prof, calib_steps=3)])
    finally:
        torch.set_num_threads(threads)
    resumed, ref = torch.load(exp / "epoch-3.pt", weights_only=False), torch.load(ref_exp / "epoch-3.pt", weights_only=False)
    assert resumed["step"] == ref["step"] == 9
    assert resumed["hooks"] == ref["hooks"] == {"nna": {"calib_steps": 3, "frozen_at": 4}}
    for k, v in ref["model"].items():
        assert torch.allclose(v.float(), resumed["model"][k].float(), atol=1e-5), k
    # the exp dir is refused to a run without the hook (and vice versa)
    from sltk.utils.errors import UserError
    with pytest.raises(UserError, match=r"model transforms \['nna'\], this run has none"):
        train(0, _config(cuts, lang, exp, toy_model, num_epochs=4), mcfg, backend)
