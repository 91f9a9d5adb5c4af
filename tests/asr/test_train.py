"""Training: overfitting reproduces the text, resume continues from the saved step, refusals."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from sltk.asr import loss as L
from sltk.asr.checkpoint import load_model
from sltk.asr.data import AsrBatches
from sltk.asr.search import greedy_search
from sltk.asr.train import TrainConfig, Tokenizer, checkpoints, load_cuts, prepare, train

TOY_MODEL = {}  # filled from the toy_model fixture (tests/asr/conftest.py)


@pytest.fixture(autouse=True)
def _toy_model(toy_model):
    TOY_MODEL.clear()
    TOY_MODEL.update(toy_model)


def config(cuts, lang, exp, **kw):
    base = dict(cuts_train=str(cuts), lang_dir=str(lang), exp_dir=str(exp), model=dict(TOY_MODEL),
                loss="torch" if not L.k2_available() else "k2", max_duration=3.0, num_epochs=60, lr=3e-3,
                warmup_steps=30, warm_step=100, spec_augment=False, save_every_n=0, log_every=1000,
                prune_range=5)
    base.update(kw)
    return TrainConfig(**base)


def decode_all(model, cuts, tok):
    model.eval()
    b = AsrBatches()[cuts]
    enc, lens = model.encode(b["feats"], b["feat_lens"])
    hyps = greedy_search(model, enc, lens)
    return dict(zip(b["ids"], (tok.decode(h) for h in hyps))), dict(zip(b["ids"], b["texts"]))


def test_overfit_ten_utterances_greedy_reproduces_text(toy_corpus, overfit_model):
    cuts_path, lang = toy_corpus
    exp, cfg = overfit_model
    model = load_model(exp / f"epoch-{cfg.num_epochs}.pt")
    hyps, refs = decode_all(model, load_cuts(str(cuts_path), "t"), Tokenizer(str(lang)))
    wrong = {k: (refs[k], hyps[k]) for k in refs if hyps[k] != refs[k]}
    assert not wrong, wrong
    summary = json.loads((exp / "train_summary.json").read_text())
    assert summary["skipped_batches"] == 0 and summary["loss_backend"] == cfg.loss and summary["train_s"] > 0
    assert (exp / f"avg-{cfg.num_epochs - 2}-{cfg.num_epochs}.pt").is_file()


def test_resume_continues_from_saved_step(toy_corpus, tmp_path):
    """Stop in the middle of epoch 2 (3 batches an epoch) right after a checkpoint, as a kill
    would; rerun: the run continues at step 5 with the same sampler position and RNG, and
    ends exactly where an uninterrupted run ends."""
    cuts_path, lang = toy_corpus
    exp = tmp_path / "exp"
    kw = dict(num_epochs=4, save_every_n=5, keep_last_k=10, spec_augment=True)
    cfg = config(cuts_path, lang, exp, max_steps=5, **kw)
    mcfg, backend = prepare(cfg)
    train(0, cfg, mcfg, backend)
    assert [s for s, _ in checkpoints(exp)] == [3, 5]  # epoch-1.pt, checkpoint-5.pt
    # the same command again: it has reached --max-steps, so it trains no further step
    before = torch.load(exp / "checkpoint-5.pt", weights_only=False)["model"]
    train(0, cfg, mcfg, backend)
    assert [s for s, _ in checkpoints(exp)] == [3, 5]
    after = torch.load(exp / "checkpoint-5.pt", weights_only=False)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((exp / "train_summary.json").read_text())["steps"] == 5
    train(0, config(cuts_path, lang, exp, **kw), mcfg, backend)
    resumed = torch.load(exp / "epoch-4.pt", weights_only=False)
    # uninterrupted reference run
    ref_exp = tmp_path / "ref"
    train(0, config(cuts_path, lang, ref_exp, **kw), mcfg, backend)
    ref = torch.load(ref_exp / "epoch-4.pt", weights_only=False)
    assert ref["step"] == 12
    assert resumed["step"] == ref["step"]
    for k, v in ref["model"].items():
        assert torch.allclose(v, resumed["model"][k], atol=1e-5), k


def test_resume_refuses_other_model(toy_corpus, tmp_path):
    cuts_path, lang = toy_corpus
    exp = tmp_path / "exp"
    cfg = config(cuts_path, lang, exp, num_epochs=1, max_steps=2)
    mcfg, backend = prepare(cfg)
    train(0, cfg, mcfg, backend)
    other = dict(TOY_MODEL, encoder_dim=32)
    cfg2 = config(cuts_path, lang, exp, num_epochs=1, model=other)
    mcfg2, _ = prepare(cfg2)
    from sltk.utils.errors import UserError
    with pytest.raises(UserError, match="different model .*encoder_dim: 32 vs 64"):
        train(0, cfg2, mcfg2, backend)


def test_cli_two_process_gloo_and_errors(toy_corpus, tmp_path, run_env):
    cuts_path, lang = toy_corpus
    mc = tmp_path / "model.yaml"
    mc.write_text(yaml.safe_dump(TOY_MODEL))
    exp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "sltk.bin.train_transducer", "--model-config", str(mc),
           "--cuts-train", str(cuts_path), "--lang-dir", str(lang), "--exp-dir", str(exp),
           "--num-epochs", "1", "--max-duration", "3", "--world-size", "2", "--no-spec-augment",
           "--loss", "torch"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (exp / "epoch-1.pt").is_file() and (exp / "config.yaml").is_file()
    steps = json.loads((exp / "train_summary.json").read_text())["steps"]
    # each of the two ranks saw about half of the data
    single = tmp_path / "single"
    r1 = subprocess.run(cmd[:-7] + ["--exp-dir", str(single), "--num-epochs", "1", "--max-duration", "3",
                                    "--no-spec-augment", "--loss", "torch"],
                        capture_output=True, text=True, env=run_env, timeout=300)
    assert r1.returncode == 0, r1.stderr[-2000:]
    single_steps = json.loads((single / "train_summary.json").read_text())["steps"]
    assert steps < single_steps
    # user errors: missing cuts, unknown model key
    bad = subprocess.run(cmd[:6] + ["--cuts-train", str(tmp_path / "none.jsonl.gz"), "--lang-dir", str(lang),
                                    "--exp-dir", str(tmp_path / "x")], capture_output=True, text=True, env=run_env)
    assert bad.returncode == 2 and "none.jsonl.gz" in bad.stderr and "Traceback" not in bad.stderr
    mc.write_text("encoder_dimm: 3\n")
    bad = subprocess.run(cmd, capture_output=True, text=True, env=run_env)
    assert bad.returncode == 2 and "unknown key 'encoder_dimm'" in bad.stderr


# ---- training hooks: the generic interface (accelerator emulation and quantizers build on it)
class Gain(torch.nn.Module):
    def __init__(self, init: float):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(init))

    def forward(self, x):
        return x * self.g


def add_gain(model, meta):
    """The 'test-gain' transform: a trainable gain after the CTC head."""
    model.ctc_head = torch.nn.Sequential(model.ctc_head, Gain(meta["init"]))


class GainHook:
    name = "test-gain"

    def __init__(self):
        self.steps = []

    def on_model(self, model):
        add_gain(model, self.checkpoint_meta())

    def on_step(self, step, model):
        self.steps.append(step)

    def state_dict(self):
        return {"steps": list(self.steps)}

    def load_state_dict(self, state):
        self.steps = list(state["steps"])

    def checkpoint_meta(self):
        return {"init": 1.0}


def test_train_hooks_record_transforms_state_and_resume(toy_corpus, tmp_path):
    from sltk.asr.checkpoint import register_transform
    from sltk.asr.train import TrainHook

    hook_cls = type("GainHook", (GainHook, TrainHook), {})
    register_transform("test-gain", add_gain)
    cuts_path, lang = toy_corpus
    exp = tmp_path / "exp"
    kw = dict(num_epochs=2, save_every_n=2, keep_last_k=10)
    cfg = config(cuts_path, lang, exp, max_steps=4, **kw)
    mcfg, backend = prepare(cfg)
    hook = hook_cls()
    train(0, cfg, mcfg, backend, hooks=[hook])
    obj = torch.load(exp / "checkpoint-4.pt", weights_only=False)
    assert obj["transforms"] == [{"kind": "test-gain", "init": 1.0}]
    assert obj["hooks"] == {"test-gain": {"steps": [1, 2, 3, 4]}}
    g = float(obj["model"]["ctc_head.1.g"])
    assert g != 1.0  # the parameter added in on_model was given to the optimizer and trained
    model = load_model(exp / "checkpoint-4.pt")  # replays the transform, then loads the weights
    assert float(model.ctc_head[1].g) == g
    # resume with a fresh hook: its state comes back, the steps continue
    hook2 = hook_cls()
    train(0, config(cuts_path, lang, exp, **kw), mcfg, backend, hooks=[hook2])
    assert hook2.steps == [1, 2, 3, 4, 5, 6]
    # a run without the hook refuses the exp dir (its checkpoints need the transform)
    from sltk.utils.errors import UserError
    with pytest.raises(UserError, match="model transforms"):
        train(0, config(cuts_path, lang, exp, num_epochs=3), mcfg, backend)


def test_init_checkpoint_fine_tunes_from_other_weights(toy_corpus, tmp_path):
    cuts_path, lang = toy_corpus
    src = tmp_path / "src"
    cfg = config(cuts_path, lang, src, num_epochs=1)
    mcfg, backend = prepare(cfg)
    train(0, cfg, mcfg, backend)
    init = torch.load(src / "epoch-1.pt", weights_only=False)
    ft = tmp_path / "ft"
    train(0, config(cuts_path, lang, ft, num_epochs=1, max_steps=1, lr=1e-9, warmup_steps=1,
                    init_checkpoint=str(src / "epoch-1.pt")), mcfg, backend)
    out = torch.load(ft / "checkpoint-1.pt", weights_only=False)
    assert out["step"] == 1  # a fresh run (step, optimizer), from the source's weights
    for k, v in init["model"].items():
        assert torch.allclose(v.float(), out["model"][k].float(), atol=1e-5), k
    from sltk.utils.errors import UserError
    other = prepare(config(cuts_path, lang, tmp_path / "o", model=dict(TOY_MODEL, encoder_dim=32)))[0]
    with pytest.raises(UserError, match="init-checkpoint .* is from a different model"):
        train(0, config(cuts_path, lang, tmp_path / "o", model=dict(TOY_MODEL, encoder_dim=32),
                        init_checkpoint=str(src / "epoch-1.pt")), other, backend)
