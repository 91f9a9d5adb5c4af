"""train-context-adapter: --help, training on the toy corpus (base frozen bit for bit, adapter
moved, CTC loss with catalogs below the base's; rerun, resume, another base), bad input; the
TrainHook.on_batch call it relies on."""

import subprocess

import pytest
import torch
from lhotse import CutSet

from sltk.asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.asr.train import TrainConfig, TrainHook, Tokenizer, checkpoints, prepare, train
from sltk.bias.encoder import context_base_hash, set_catalog
from sltk.bias.train import CatalogBuilder, catalog_ctc_loss, read_rare_words

RARE = "face\nbead\ndead cab\nzed\n"
SMALL_ADAPTER = ["--catalog-dim", 16, "--attention-dim", 16, "--embed-dim", 8, "--lstm-dim", 8]


def base_ckpt(toy_model, path, seed=0, **kw):
    torch.manual_seed(seed)
    save_checkpoint(path, Transducer(ModelConfig(vocab_size=12, **{**toy_model, **kw})), step=0, epoch=0)
    return path


@pytest.fixture
def base(toy_model, tmp_path):
    return base_ckpt(toy_model, tmp_path / "base.pt")


@pytest.fixture
def rare(tmp_path):
    p = tmp_path / "rare_words.txt"
    p.write_text(RARE)
    return p


def run_main(args, capsys):
    from sltk.bin.train_context_adapter import main

    rc = main.main([str(a) for a in args], standalone_mode=False)
    return rc or 0, capsys.readouterr().err


def test_help(run_env):
    r = subprocess.run(["train-context-adapter", "--help"], capture_output=True, text=True, env=run_env)
    assert r.returncode == 0, r.stderr
    for s in ("--base", "--rare-words", "--distractors", "[default: 20]", "--catalog-dim", "--max-steps",
              "--cuts-train", "--exp-dir", "Examples:", "train-context-adapter --base"):
        assert s in r.stdout
    for s in ("--init-checkpoint", "--prune-range", "--loss "):  # --base starts it; only the CTC loss is computed
        assert s not in r.stdout


def test_train_resume_rerun(base, rare, toy_corpus, toy_model, tmp_path, capsys):
    cuts, lang = toy_corpus
    out = tmp_path / "ctx.pt"
    exp = tmp_path / "exp"
    args = ["--base", base, "--rare-words", rare, "--distractors", 2, "--cuts-train", cuts, "--cuts-dev", cuts,
            "--lang-dir", lang, "--exp-dir", exp, "--max-steps", 12, "--max-duration", 3, "--no-spec-augment",
            "--lr", 0.01, "--warmup-steps", 1, "--save-every-n", 0, "--log-every", 1, *SMALL_ADAPTER, out]
    rc, err = run_main(args, capsys)
    assert rc == 0, err[-3000:]
    assert "8 of 10 training utterances contain some" in err
    assert "Done 1 of 1 context adapters, 0 failed;" in err and "12 steps, dev CTC loss/frame" in err
    assert "simple=0.0000 pruned=0.0000 ctc=" in err or "rnnt=0.0000 ctc=" in err  # transducer losses skipped

    # the base stayed bit-identical (step checkpoint and OUT), the adapter moved
    base_state = read_checkpoint(base)["model"]
    step, last = checkpoints(exp)[-1]
    assert step == 12
    for ck in (read_checkpoint(last), read_checkpoint(out)):
        assert [t["kind"] for t in ck["transforms"]] == ["context_adapter"]
        assert ck["transforms"][0]["base_hash"] == context_base_hash(base_state)
        for k, v in base_state.items():
            assert torch.equal(ck["model"][k], v), k
    state = read_checkpoint(out)["model"]
    assert state["context_adapter.out.weight"].abs().max() > 0  # started at zero
    fresh = Transducer(ModelConfig(vocab_size=12, **toy_model))
    from sltk.bias.encoder import ContextAdapterConfig, attach

    torch.manual_seed(0)
    attach(fresh, ContextAdapterConfig(embed_dim=8, lstm_dim=8, catalog_dim=16, attention_dim=16))
    assert {k for k in state if k.startswith("context_adapter.")} == \
        {k for k in fresh.state_dict() if k.startswith("context_adapter.")}

    # OUT loads with load_model; with the training catalogs its CTC loss is below the base's (a fresh
    # adapter is the base exactly, so this is below the loss at the start)
    m = load_model(out).eval()
    tok = Tokenizer(str(lang))
    builder = CatalogBuilder(read_rare_words(rare), tok.encode, distractors=2, seed=42)
    cutset = CutSet.from_file(cuts)
    loss = catalog_ctc_loss(m, cutset, tok, builder)
    assert loss["ctc"] < 0.95 * loss["ctc_base"], loss
    assert 0 <= loss["gate_rare"] <= 1 and 0 <= loss["gate_none"] <= 1
    dev = read_checkpoint(out)["dev_loss"]
    assert dev["ctc"] < dev["ctc_base"] and abs(dev["ctc"] - loss["ctc"]) < 1e-5
    # the transducer path is the base's, the CTC path is biased
    b = load_model(base).eval()
    feats = torch.from_numpy(next(iter(cutset)).load_features())[None]
    lens = torch.tensor([feats.size(1)])
    with torch.no_grad():
        enc, el = m.encode(feats, lens)
        assert torch.equal(enc, b.encode(feats, lens)[0])
        set_catalog(m, [builder.ids[:2]])
        assert not torch.allclose(m.ctc_logprobs(enc), b.ctc_logprobs(enc), atol=1e-4)

    # rerun: finished and OUT exists, nothing to do
    first = out.read_bytes()
    rc, err = run_main(args, capsys)
    assert rc == 0 and "nothing to do" in err and "(already done)" in err and out.read_bytes() == first
    # a longer run resumes; the base still untouched
    args[args.index("--max-steps") + 1] = 15
    rc, err = run_main(args, capsys)
    assert rc == 0, err[-3000:]
    assert "resuming" in err and read_checkpoint(out)["step"] == 15
    assert all(torch.equal(read_checkpoint(out)["model"][k], v) for k, v in base_state.items())
    # the same experiment directory with another base: refused
    other = base_ckpt(toy_model, tmp_path / "other.pt", seed=1)
    args[args.index("--base") + 1] = other
    rc, err = run_main(args, capsys)
    assert rc == 2 and "holds checkpoints of another run (base_hash" in err and "use another --exp-dir" in err


def test_errors(base, rare, toy_corpus, toy_model, tmp_path, capsys):
    cuts, lang = toy_corpus
    out = tmp_path / "ctx.pt"
    common = ["--cuts-train", cuts, "--lang-dir", lang, "--exp-dir", tmp_path / "exp"]

    def fails(args, *expect):
        rc, err = run_main(args, capsys)
        assert rc == 2, err
        assert err.count("error:") == 1, err
        for e in expect:
            assert e in err, err
        assert not out.exists()

    fails(["--base", base, "--rare-words", rare, "--bogus", 1, *common, out], "No such option '--bogus'")
    fails(["--base", base, "--rare-words", tmp_path / "missing.txt", *common, out],
          "train-context-adapter: error: --rare-words file", "missing.txt does not exist")
    (tmp_path / "empty.txt").write_text("\n")
    fails(["--base", base, "--rare-words", tmp_path / "empty.txt", *common, out], "holds no words")
    fails(["--base", base, *common, out], "Missing option '--rare-words'")
    fails(["--base", tmp_path / "missing.pt", "--rare-words", rare, *common, out], "missing.pt does not exist")
    fails(["--base", base, "--rare-words", rare, "--distractors", -1, *common, out], "--distractors must be >= 0")
    fails(["--base", base, "--rare-words", rare, "--catalog-dim", 0, *common, out],
          "catalog_dim must be a positive integer")
    fails(["--base", base, "--rare-words", rare, "--cuts-train", cuts, "--lang-dir", lang, out],
          "--exp-dir is required")
    no_ctc = base_ckpt(toy_model, tmp_path / "no_ctc.pt", ctc_weight=0.0)
    fails(["--base", no_ctc, "--rare-words", rare, *common, out], "trained without the CTC loss")
    # a transformed checkpoint is no base
    from sltk.bias.encoder import attach, transform_entry

    m = load_model(base)
    attach(m)
    save_checkpoint(tmp_path / "ctx_base.pt", m, transforms=[transform_entry(m)])
    fails(["--base", tmp_path / "ctx_base.pt", "--rare-words", rare, *common, out],
          "holds a transformed model (context_adapter)")


class Recorder(TrainHook):
    name = "recorder"

    def __init__(self):
        self.calls = []

    def on_step(self, step, model):
        self.calls.append(("step", step))

    def on_batch(self, model, batch):
        self.calls.append(("batch", list(batch["texts"]), list(batch["ids"]), tuple(batch["feats"].shape)))

    def checkpoint_meta(self):
        return None


def test_on_batch_hook(toy_corpus, toy_model, tmp_path):
    """train() gives each hook every training batch after on_step, before the forward."""
    cuts, lang = toy_corpus
    cfg = TrainConfig(cuts_train=str(cuts), lang_dir=str(lang), exp_dir=str(tmp_path / "exp"), model=toy_model,
                      loss="torch", max_duration=3.0, max_steps=2, spec_augment=False, save_every_n=0)
    mcfg, backend = prepare(cfg)
    rec = Recorder()
    train(0, cfg, mcfg, backend, [rec])
    assert [c[0] for c in rec.calls] == ["step", "batch", "step", "batch"]
    assert [c[1] for c in rec.calls if c[0] == "step"] == [1, 2]
    texts = {c.id: c.supervisions[0].text for c in CutSet.from_file(cuts)}
    for c in rec.calls[1::2]:
        assert c[1] and [texts[i] for i in c[2]] == c[1] and c[3][0] == len(c[1])
