"""fuse-adapters: --help, sum/average without data, attention trained on the toy corpus, refusals."""

import subprocess
import sys

import pytest
import torch
from lhotse import CutSet

from sltk.adapters import AdapterConfig, attach, fuse, save_adapter
from sltk.asr import loss as L
from sltk.asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer

LOSS = "k2" if L.k2_available() else "torch"


def make_base(path, toy_model, seed=0):
    torch.manual_seed(seed)
    save_checkpoint(path, Transducer(ModelConfig(vocab_size=12, **toy_model)), step=0, epoch=0)
    return path


def make_adapter(path, base, name, seed, cfg=AdapterConfig(bottleneck=8)):
    m = load_model(base)
    attach(m, [(name, cfg)])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    save_adapter(path, m, info={"words": name})
    return path


@pytest.fixture
def setup(toy_model, tmp_path):
    base = make_base(tmp_path / "base.pt", toy_model)
    a = make_adapter(tmp_path / "a.adapter", base, "a", 1)
    b = make_adapter(tmp_path / "b.adapter", base, "b", 2)
    return base, a, b


def run_main(args, capsys):
    from sltk.bin.fuse_adapters import main

    rc = main.main([str(x) for x in args], standalone_mode=False)
    return rc or 0, capsys.readouterr().err


def encode_one(model, cuts):
    feats = torch.from_numpy(next(iter(CutSet.from_file(cuts))).load_features())[None]
    with torch.no_grad():
        return model.eval().encode(feats, torch.tensor([feats.size(1)]))[0]


def test_help(run_env):
    r = subprocess.run(["fuse-adapters", "--help"], capture_output=True, text=True, env=run_env)
    assert r.returncode == 0, r.stderr
    for s in ("ADAPTER... OUT", "--base", "--method [sum|average|attention]", "--include-base", "--cuts-train",
              "--max-steps", "Examples:"):
        assert s in r.stdout


@pytest.mark.parametrize("method", ["sum", "average"])
def test_sum_average(setup, toy_corpus, tmp_path, capsys, method):
    base, a, b = setup
    cuts, _ = toy_corpus
    out = tmp_path / f"{method}.pt"
    rc, err = run_main(["--base", base, "--method", method, a, b, out], capsys)
    assert rc == 0, err
    assert f"Done 2 of 2 adapters fused, 0 failed; {method} into" in err
    ck = read_checkpoint(out)
    assert [t["kind"] for t in ck["transforms"]] == ["adapter_fusion"]
    assert ck["transforms"][0]["method"] == method and ck["adapter_files"] == [str(a), str(b)]
    ref = load_model(base)
    fuse(ref, [a, b], method)
    assert torch.equal(encode_one(load_model(out), cuts), encode_one(ref, cuts))
    # one adapter summed: the single-adapter transform
    rc, err = run_main(["--base", base, "--method", "sum", a, tmp_path / "one.pt"], capsys)
    assert rc == 0, err
    assert [t["kind"] for t in read_checkpoint(tmp_path / "one.pt")["transforms"]] == ["adapter"]


def test_refusals(setup, toy_model, tmp_path, capsys, run_env):
    base, a, b = setup
    out = tmp_path / "o.pt"

    def fails(args, *expect):
        rc, err = run_main(args, capsys)
        assert rc == 2, err
        assert err.count("error:") == 1, err
        for e in expect:
            assert e in err, err
        assert not out.exists()

    other = make_base(tmp_path / "other.pt", toy_model, seed=1)
    c = make_adapter(tmp_path / "c.adapter", other, "c", 3)
    fails(["--base", base, "--method", "sum", a, c, out], "fuse-adapters: error: adapter", "c.adapter ('c') was "
          "trained on base model", "refuses to load onto another base model")
    fails(["--base", base, "--method", "attention", a, b, out],
          "attention fusion trains its fusion layers on data: give --cuts-train", "--lang-dir and --exp-dir")
    d = make_adapter(tmp_path / "d.adapter", base, "d", 4, AdapterConfig(encoder_layers=[0], decoder=False))
    fails(["--base", base, "--method", "average", a, d, out], "sit at different positions")
    fails(["--base", base, "--method", "sum", out], "at least one adapter file and the output")
    fails(["--base", base, "--method", "sum", tmp_path / "none.adapter", out], "none.adapter does not exist")
    fails(["--base", base, "--method", "sum", base, out], "base.pt is not an sltk adapter file")
    fails(["--base", base, "--method", "max", a, out], "Invalid value for '--method'")
    # as a program: exit code 2, one message, no traceback
    r = subprocess.run([sys.executable, "-m", "sltk.bin.fuse_adapters", "--base", str(base), "--method", "sum",
                        str(a), str(c), str(out)], capture_output=True, text=True, env=run_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [l for l in r.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and "c.adapter" in errors[0] and "refuses" in errors[0], r.stderr
    h_base, h_other = read_checkpoint(base)["model"], read_checkpoint(other)["model"]
    from sltk.adapters import base_hash

    assert base_hash(h_base)[:12] in errors[0] and base_hash(h_other)[:12] in errors[0]


def test_attention(setup, toy_corpus, tmp_path, capsys, run_env):
    base, a, b = setup
    cuts, lang = toy_corpus
    out = tmp_path / "fused.pt"
    exp = tmp_path / "exp"
    args = ["--base", base, "--method", "attention", "--cuts-train", cuts, "--cuts-dev", cuts, "--lang-dir", lang,
            "--exp-dir", exp, "--max-steps", 2, "--max-duration", 3, "--no-spec-augment", "--loss", LOSS,
            "--lr", 0.01, "--warmup-steps", 1, "--save-every-n", 0, a, b, out]
    rc, err = run_main(args, capsys)
    assert rc == 0, err[-3000:]
    assert "Done 2 of 2 adapters fused, 0 failed; attention into" in err and "2 training steps, dev loss" in err
    ck = read_checkpoint(out)
    t = ck["transforms"][0]
    assert t["kind"] == "adapter_fusion" and t["method"] == "attention" and t["include_base"] is True
    assert [x["name"] for x in t["adapters"]] == ["a", "b"]
    # only the fusion layers moved: base and adapters are those of the inputs
    ref = load_model(base)
    fuse(ref, [a, b], "attention")
    own = ref.state_dict()
    for k, v in ck["model"].items():
        if not k.startswith("adapter_fusion."):
            assert torch.equal(v, own[k]), k
    eye = torch.eye(own["adapter_fusion.decoder.value.weight"].size(0))
    assert not torch.equal(ck["model"]["adapter_fusion.decoder.value.weight"], eye)
    m = load_model(out)
    enc = encode_one(m, cuts)
    assert m.adapter_fusion["encoder_1"].last_weights.shape[-1] == 3
    assert not torch.allclose(enc, encode_one(ref, cuts), atol=1e-6)
    # rerun: nothing to do
    rc, err = run_main(args, capsys)
    assert rc == 0 and "nothing to do" in err
    # the fused checkpoint decodes like any other
    from sltk.bin.decode_transducer import main as decode

    rc = decode.main(["--checkpoint", str(out), "--cuts", str(cuts), "--lang-dir", str(lang), "--out-dir",
                      str(tmp_path / "dec")], standalone_mode=False)
    assert (rc or 0) == 0, capsys.readouterr().err[-2000:]
    assert len((tmp_path / "dec" / "greedy" / "hyp.txt").read_text().splitlines()) == 10
