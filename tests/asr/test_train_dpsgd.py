"""DP-SGD in train-transducer (--dp-noise-multiplier / --dp-target-eps): off by default; each
privacy unit's gradient is clipped and Gaussian noise is added; the noise is calibrated to the
target eps and the spent eps is recorded; speaker units group a speaker's utterances."""

import json

import pytest
import torch

from sltk.asr import loss as L
from sltk.asr.data import AsrBatches
from sltk.asr.model import Transducer
from sltk.asr.train import (TrainConfig, Tokenizer, dp_enabled, dp_gradients, dp_noise_for_eps, dp_plan, load_cuts,
                            prepare, train)
from sltk.privacy import dp_sgd_epsilon
from sltk.utils.errors import UserError


def config(cuts, lang, exp, model, **kw):
    base = dict(cuts_train=str(cuts), lang_dir=str(lang), exp_dir=str(exp), model=dict(model),
                loss="k2" if L.k2_available() else "torch", max_duration=3.0, num_epochs=1, lr=3e-3,
                warmup_steps=5, warm_step=10, spec_augment=False, save_every_n=0, log_every=1000)
    base.update(kw)
    return TrainConfig(**base)


def test_dp_is_off_by_default():
    cfg = TrainConfig()
    assert not dp_enabled(cfg)
    assert cfg.dp_noise_multiplier == 0 and cfg.dp_target_eps == 0


def _unit_grads(model, units, loss_of):
    out = []
    for u in units:
        model.zero_grad(set_to_none=True)
        loss_of(model, u).backward()
        out.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                              for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(out)


def test_dp_gradients_clip_each_unit_and_add_noise(toy_corpus, toy_model, tmp_path):
    cuts_path, lang = toy_corpus
    torch.manual_seed(0)
    cfg = config(cuts_path, lang, tmp_path, toy_model, dp_noise_multiplier=1.0, dp_max_grad_norm=0.05)
    mcfg, backend = prepare(cfg)
    model = Transducer(mcfg)
    model.train()
    tok = Tokenizer(str(lang))
    cuts = load_cuts(str(cuts_path), "t")
    plan = dp_plan(cfg, cuts)
    assert len(plan.groups) == len(cuts) and plan.sample_rate == pytest.approx(3.0 / sum(c.duration for c in cuts))

    def loss_of(m, unit):
        from lhotse import CutSet
        b = AsrBatches()[CutSet.from_cuts(unit)]
        losses = m(b["feats"], b["feat_lens"], tok.encode(b["texts"]), backend=backend, prune_range=5)
        return L.combine(losses, backend, 0, 10, 0.5, mcfg.ctc_weight) / int(b["feat_lens"].sum())

    units = plan.groups[:4]
    per_unit = _unit_grads(model, units, loss_of)
    norms = per_unit.norm(dim=1)
    assert (norms > cfg.dp_max_grad_norm).all()  # all clipped at this small norm
    denom = plan.sample_rate * len(plan.groups)
    clipped = (per_unit * (cfg.dp_max_grad_norm / (norms + 1e-6)).clamp(max=1.0)[:, None]).sum(0) / denom

    # noiseless: exactly the sum of the clipped unit gradients over the expected batch size
    plan.noise_multiplier = 0.0
    stats = dp_gradients(model, units, loss_of, plan, cfg, torch.Generator().manual_seed(1))
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert stats.batch_size == 4 and stats.clipped == 4
    assert torch.allclose(got, clipped, atol=1e-6)
    assert got.norm() <= 4 * cfg.dp_max_grad_norm / denom + 1e-6

    # noisy: the difference is N(0, (sigma C / denom)^2) on every coordinate, fixed seed
    plan.noise_multiplier = 2.0
    dp_gradients(model, units, loss_of, plan, cfg, torch.Generator().manual_seed(1))
    noise = torch.cat([p.grad.flatten() for p in model.parameters()]) - clipped
    want = plan.noise_multiplier * cfg.dp_max_grad_norm / denom
    assert noise.numel() > 10000
    assert abs(float(noise.std()) / want - 1) < 0.03 and abs(float(noise.mean())) < 0.03 * want
    dp_gradients(model, units, loss_of, plan, cfg, torch.Generator().manual_seed(1))
    again = torch.cat([p.grad.flatten() for p in model.parameters()]) - clipped
    assert torch.equal(noise, again)  # the seed fixes the noise


def test_train_with_target_eps_records_privacy_and_clips(toy_corpus, toy_model, tmp_path, monkeypatch):
    import sltk.privacy.dpsgd as D

    calls = []
    orig = D.clip_and_noise

    def spy(per_example, max_norm, noise_multiplier, denominator, generator=None):
        calls.append((per_example[0].shape[0], max_norm, noise_multiplier))
        return orig(per_example, max_norm, noise_multiplier, denominator, generator)

    monkeypatch.setattr(D, "clip_and_noise", spy)
    cuts_path, lang = toy_corpus
    exp = tmp_path / "exp"
    cfg = config(cuts_path, lang, exp, toy_model, dp_target_eps=4.0, dp_max_grad_norm=1.0, max_steps=6,
                 max_duration=2.0)
    mcfg, backend = prepare(cfg)
    torch.set_num_threads(1)
    train(0, cfg, mcfg, backend)
    rep = json.loads((exp / "privacy.json").read_text())
    q = 2.0 / sum(c.duration for c in load_cuts(str(cuts_path), "t"))
    per_epoch = int(-(-1 // q))
    assert 1 < per_epoch < 6
    assert rep["steps"] == rep["planned_steps"] == 6 and rep["unit"] == "utterance"
    assert rep["sample_rate"] == pytest.approx(q)
    assert rep["noise_multiplier"] == pytest.approx(dp_noise_for_eps(q, 6, 4.0, 1e-5))
    assert 3.98 <= rep["eps"] <= 4.0
    assert rep["eps"] == pytest.approx(dp_sgd_epsilon(q, rep["noise_multiplier"], 6, 1e-5)[0])
    assert len(calls) == 6 and all(c[1] == 1.0 and c[2] == rep["noise_multiplier"] for c in calls)
    assert sum(c[0] for c in calls) > 0  # units were sampled (Poisson: a step may have none)
    summary = json.loads((exp / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["dp"]["eps"] == rep["eps"]
    assert (exp / "epoch-1.pt").is_file() and (exp / "checkpoint-6.pt").is_file()  # an epoch: 1 / q steps
    # rerun: nothing left to do, the same privacy spent
    train(0, cfg, mcfg, backend)
    assert json.loads((exp / "privacy.json").read_text())["eps"] == rep["eps"] and len(calls) == 6


def test_dp_speaker_units_and_bad_options(toy_corpus, toy_model, tmp_path):
    from lhotse.utils import fastcopy

    cuts_path, lang = toy_corpus
    cuts = list(load_cuts(str(cuts_path), "t"))
    cfg = config(cuts_path, lang, tmp_path, toy_model, dp_noise_multiplier=1.0, dp_unit="speaker")
    with pytest.raises(UserError, match="has no speaker"):
        dp_plan(cfg, cuts)
    spk = [fastcopy(c, supervisions=[fastcopy(c.supervisions[0], speaker=f"s{i % 3}")]) for i, c in enumerate(cuts)]
    plan = dp_plan(cfg, spk)
    assert len(plan.groups) == 3
    assert sorted(len(g) for g in plan.groups) == [3, 3, 4]
    assert all(len({c.supervisions[0].speaker for c in g}) == 1 for g in plan.groups)
    for bad, msg in ((dict(dp_unit="frame"), "--dp-unit"), (dict(dp_target_eps=1.0), "not both"),
                     (dict(dp_max_grad_norm=0.0), "dp-max-grad-norm")):
        with pytest.raises(UserError, match=msg):
            dp_plan(config(cuts_path, lang, tmp_path, toy_model, dp_noise_multiplier=1.0, **bad), cuts)
    with pytest.raises(UserError, match="unreachable"):
        dp_noise_for_eps(1.0, 10 ** 9, 0.01, 1e-5)
