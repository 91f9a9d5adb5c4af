"""quantize-nna: --help, PTQ, a short GQ fine-tuning run (and its resume), bad input."""

import json
import subprocess
import sys

import pytest
import torch

from sltk.asr.checkpoint import save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer


@pytest.fixture
def float_ckpt(toy_model, tmp_path):
    """An (untrained) float checkpoint of the toy model: quantization does not need a good one."""
    torch.manual_seed(0)
    m = Transducer(ModelConfig(vocab_size=12, **toy_model))
    p = tmp_path / "float.pt"
    save_checkpoint(p, m, step=0, epoch=0)
    return p


def run(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "sltk.bin.quantize_nna", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def decode_one(packed, cuts):
    from lhotse import CutSet

    from sltk.asr.search import greedy_search
    from sltk.nna.pack import load_packed

    model = load_packed(packed).eval()
    cut = next(iter(CutSet.from_file(cuts)))
    feats = torch.from_numpy(cut.load_features())[None]
    with torch.no_grad():
        enc, lens = model.encode(feats, torch.tensor([feats.size(1)]))
        hyp = greedy_search(model, enc, lens)
    assert len(hyp) == 1 and all(0 < t < 12 for t in hyp[0])
    return model


def test_help(run_env):
    r = subprocess.run(["quantize-nna", "--help"], capture_output=True, text=True, env=run_env)
    assert r.returncode == 0
    for s in ("--method", "--allocation", "--anneal-steps", "Examples:", "quantize-nna --method ptq"):
        assert s in r.stdout


def test_ptq(float_ckpt, toy_corpus, tmp_path, run_env):
    cuts, _ = toy_corpus
    out = tmp_path / "ptq4.packed"
    r = run(["--method", "ptq", "--bits", "4", "--report", tmp_path / "size.json", float_ckpt, out], run_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 15 of 15 weight tensors quantized" in r.stderr and "4.00 bits/weight" in r.stderr
    rep = json.loads((tmp_path / "size.json").read_text())
    assert rep["total"]["file_bytes"] == out.stat().st_size < rep["total"]["file_bytes_8bit"]
    decode_one(out, cuts)


def test_gq_fine_tune_and_resume(float_ckpt, toy_corpus, tmp_path, run_env):
    cuts, lang = toy_corpus
    alloc = tmp_path / "alloc.yaml"
    alloc.write_text("default: 3\nlayers:\n  decoder.embedding: float\n  encoder.layers.1: 2\n")
    out = tmp_path / "gq.packed"
    args = ["--method", "gq", "--allocation", alloc, "--cuts-train", cuts, "--lang-dir", lang,
            "--exp-dir", tmp_path / "exp", "--max-steps", 4, "--anneal-steps", 2, "--max-duration", 3,
            "--no-spec-augment", "--loss", "torch", "--save-every-n", 0, "--report", tmp_path / "size.json",
            float_ckpt, out]
    r = run(args, run_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tau annealed to 0" in r.stderr and "Done 14 of 15 weight tensors quantized" in r.stderr
    rep = json.loads((tmp_path / "size.json").read_text())
    assert rep["method"] == "gq" and rep["total"]["file_bytes"] == out.stat().st_size
    assert rep["total"]["file_bytes"] < 0.7 * rep["total"]["file_bytes_8bit"]
    bits = {t["name"]: t["bits"] for t in rep["tensors"]}
    assert bits["decoder.embedding.weight"] == "float" and bits["encoder.layers.1.lstm.weight_hh_l0"] == 2
    model = decode_one(out, cuts)
    # every quantized tensor of the decoding model holds at most 2^b values
    for name, p in model.state_dict().items():
        if isinstance(bits.get(name), int):
            assert p.unique().numel() <= 2 ** bits[name], name
    # rerunning a finished run packs the same model again without training
    first = torch.load(out, weights_only=False)
    r = run(args, run_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fine-tuning already finished" in r.stderr
    again = torch.load(out, weights_only=False)
    assert again["entries"] == first["entries"] and torch.equal(again["blob"], first["blob"])
    # a longer run resumes from the experiment directory
    args[args.index("--max-steps") + 1] = 6
    r = run(args, run_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stderr and "fine-tuning from" not in r.stderr


def test_errors(float_ckpt, toy_corpus, tmp_path, run_env, capsys):
    from sltk.bin.quantize_nna import main

    def fails(args, *expect):  # in-process: each case would cost seconds of imports as a subprocess
        rc = main.main([str(a) for a in args], standalone_mode=False)
        err = capsys.readouterr().err
        assert rc == 2, err
        for e in expect:
            assert e in err, err
        assert not (tmp_path / "o.packed").exists()

    out = tmp_path / "o.packed"
    alloc = tmp_path / "alloc.yaml"
    alloc.write_text("default: 4\nlayers:\n  encoder.layers.9: 2\n")
    fails(["--method", "ptq", "--allocation", alloc, float_ckpt, out],
          "quantize-nna: error: bit allocation", "alloc.yaml: 'encoder.layers.9' matches no weight of the model")
    alloc.write_text("default: 4\nlayer: {}\n")
    fails(["--method", "ptq", "--allocation", alloc, float_ckpt, out], "unknown key 'layer'")
    fails(["--method", "ptq", "--bits", "1", float_ckpt, out], "2..8 bits")
    fails(["--method", "ptq", float_ckpt, out], "--bits or --allocation")
    fails(["--method", "gq", "--bits", "4", float_ckpt, out], "--exp-dir")
    fails(["--method", "gq", "--bits", "4", "--mu", "-3", float_ckpt, out], "--mu")
    fails(["--method", "ptq", "--bits", "4", tmp_path / "missing.pt", out], "missing.pt does not exist")
    conf = tmp_path / "conf.yaml"
    conf.write_text("bitz: 4\n")
    fails(["--config", conf, float_ckpt, out], "unknown key 'bitz'")
    # and as a program: one line, exit code 2, no traceback
    r = run(["--method", "ptq", "--bits", "4", tmp_path / "missing.pt", out], run_env)
    assert r.returncode == 2 and "missing.pt" in r.stderr and "Traceback" not in r.stderr
