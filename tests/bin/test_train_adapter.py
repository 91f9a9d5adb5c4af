"""train-adapter: --help, a short run on the toy corpus (base frozen bit for bit, resume, rerun), bad input."""

import subprocess

import pytest
import torch
from lhotse import CutSet

from sltk.adapters import load_adapter, read_adapter
from sltk.asr import loss as L
from sltk.asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.asr.train import checkpoints

LOSS = "k2" if L.k2_available() else "torch"


@pytest.fixture
def base_ckpt(toy_model, tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "base.pt"
    save_checkpoint(p, Transducer(ModelConfig(vocab_size=12, **toy_model)), step=0, epoch=0)
    return p


def run_main(args, capsys):
    from sltk.bin.train_adapter import main

    rc = main.main([str(a) for a in args], standalone_mode=False)
    return rc or 0, capsys.readouterr().err


def test_help(run_env):
    r = subprocess.run(["train-adapter", "--help"], capture_output=True, text=True, env=run_env)
    assert r.returncode == 0, r.stderr
    for s in ("--base", "--adapter-config", "--mix-cuts", "--mix-frac", "--name", "--info", "--max-steps",
              "--cuts-train", "Examples:", "train-adapter --base"):
        assert s in r.stdout
    assert "--init-checkpoint" not in r.stdout  # --base is the initial checkpoint


def test_train_resume_rerun(base_ckpt, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    out = tmp_path / "contacts.pt"
    exp = tmp_path / "exp"
    conf = tmp_path / "adapter.yaml"
    conf.write_text("encoder_layers: [0, -1]\nbottleneck: 8\n")
    args = ["--base", base_ckpt, "--adapter-config", conf, "--cuts-train", cuts, "--cuts-dev", cuts, "--lang-dir",
            lang, "--exp-dir", exp, "--max-steps", 3, "--max-duration", 3, "--no-spec-augment", "--loss", LOSS,
            "--lr", 0.01, "--warmup-steps", 1, "--save-every-n", 0, "--log-every", 1, "--mix-cuts", cuts,
            "--mix-frac", 0.5, "--info", "words=abc bad", out]
    rc, err = run_main(args, capsys)
    assert rc == 0, err[-3000:]
    assert "Done 1 of 1 adapters, 0 failed; 'contacts' in" in err and "3 steps, dev loss/frame" in err
    # the mixed training set: the 10 training cuts and as many general ones
    mixed = CutSet.from_file(exp / "cuts_train_mixed.jsonl.gz")
    assert len(mixed) == 20 and sum(c.id.startswith("mix-") for c in mixed) == 10

    # the base stayed bit-identical, the adapter moved; the checkpoint records the transform
    base = read_checkpoint(base_ckpt)["model"]
    step, last = checkpoints(exp)[-1]
    ck = read_checkpoint(last)
    assert step == 3 and [t["kind"] for t in ck["transforms"]] == ["adapter"]
    for k, v in base.items():
        assert torch.equal(ck["model"][k], v), k
    obj = read_adapter(out)
    assert obj["name"] == "contacts" and obj["info"]["words"] == "abc bad" and obj["info"]["steps"] == 3
    assert obj["config"] == {"encoder_layers": [0, -1], "decoder": True, "bottleneck": 8}
    assert all(obj["state_dict"][f"{k}.up.weight"].abs().max() > 0 for k in ("encoder_0", "encoder_1", "decoder"))
    assert "dev_loss" in obj["info"] and obj["info"]["dev_loss"] != obj["info"]["base_dev_loss"]
    # the file loads onto the base and changes its output; the checkpoint loads as a model
    m = load_model(base_ckpt).eval()
    feats = torch.from_numpy(next(iter(CutSet.from_file(cuts))).load_features())[None]
    lens = torch.tensor([feats.size(1)])
    with torch.no_grad():
        enc0 = m.encode(feats, lens)[0]
        load_adapter(m, out)
        enc1 = m.encode(feats, lens)[0]
        enc2 = load_model(last).eval().encode(feats, lens)[0]
    assert not torch.allclose(enc0, enc1, atol=1e-4) and torch.allclose(enc1, enc2, atol=1e-6)

    # rerun: finished and OUT exists, nothing to do
    first = out.read_bytes()
    rc, err = run_main(args, capsys)
    assert rc == 0 and "nothing to do" in err and "(already done)" in err and out.read_bytes() == first
    # a longer run resumes
    args[args.index("--max-steps") + 1] = 5
    rc, err = run_main(args, capsys)
    assert rc == 0, err[-3000:]
    assert "resuming" in err and read_adapter(out)["info"]["steps"] == 5
    ck = read_checkpoint(checkpoints(exp)[-1][1])
    assert all(torch.equal(ck["model"][k], v) for k, v in base.items())
    # finished but OUT lost: written again from the last checkpoint, without training
    out.unlink()
    rc, err = run_main(args, capsys)
    assert rc == 0 and "training finished already (step 5); writing" in err and "resuming" not in err
    assert read_adapter(out)["info"]["steps"] == 5
    # the same experiment directory with another adapter config: refused
    conf.write_text("encoder_layers: [0, -1]\nbottleneck: 4\n")
    rc, err = run_main(args, capsys)
    assert rc == 2 and "holds checkpoints of another run (config" in err and "use another --exp-dir" in err


def test_errors(base_ckpt, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    out = tmp_path / "a.pt"
    common = ["--cuts-train", cuts, "--lang-dir", lang, "--exp-dir", tmp_path / "exp", "--loss", LOSS]

    def fails(args, *expect):
        rc, err = run_main(args, capsys)
        assert rc == 2, err
        assert err.count("error:") == 1, err
        for e in expect:
            assert e in err, err
        assert not out.exists()

    conf = tmp_path / "adapter.yaml"
    conf.write_text("encoder_layer: [0]\n")
    fails(["--base", base_ckpt, "--adapter-config", conf, *common, out],
          "train-adapter: error: unknown key 'encoder_layer' in adapter config", "valid keys: encoder_layers")
    conf.write_text("encoder_layers: [5]\n")
    fails(["--base", base_ckpt, "--adapter-config", conf, *common, out], "encoder layer 5 does not exist")
    fails(["--base", tmp_path / "missing.pt", *common, out], "missing.pt does not exist")
    fails([*common, out], "Missing option '--base'")
    fails(["--base", base_ckpt, "--mix-frac", 0.3, *common, out], "--mix-frac needs --mix-cuts")
    fails(["--base", base_ckpt, "--mix-cuts", cuts, "--mix-frac", 1.5, *common, out], "--mix-frac must be in (0, 1)")
    fails(["--base", base_ckpt, "--info", "words", *common, out], "--info takes KEY=VALUE")
    fails(["--base", base_ckpt, "--cuts-train", cuts, "--lang-dir", lang, out], "--exp-dir is required")
    # a transformed checkpoint is no base
    m = load_model(base_ckpt)
    from sltk.adapters import attach, transform_entry
    from sltk.adapters.modules import AdapterConfig

    attach(m, [("x", AdapterConfig())])
    save_checkpoint(tmp_path / "adapted.pt", m, transforms=[transform_entry(m)])
    fails(["--base", tmp_path / "adapted.pt", *common, out], "holds a transformed model (adapter)")
