"""DP-SGD: per-example gradients by micro-batches of one, clipping, the noise's scale, accounting."""

import math

import pytest
import torch

from sltk.privacy.accountant import dp_sgd_epsilon
from sltk.privacy.dpsgd import DPSGD, clip_and_noise, per_example_grads, poisson_batch


def _data(n=16, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5]) > 0).float()
    return list(zip(x, y))


def _loss(model, ex):
    x, y = ex
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x[None])[0, 0], y)


def test_per_example_grads_match_separate_backward_passes():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = _data(5)
    grads = per_example_grads(model, _loss, data)
    assert [g.shape for g in grads] == [(5, 1, 3), (5, 1)]
    for i, ex in enumerate(data):
        model.zero_grad()
        _loss(model, ex).backward()
        assert torch.allclose(grads[0][i], model.weight.grad) and torch.allclose(grads[1][i], model.bias.grad)
    assert model.weight.grad is not None  # our own backward above; per_example_grads left none behind


def test_clipping_without_noise():
    g = [torch.tensor([[3.0, 4.0], [0.3, 0.4]]), torch.tensor([[0.0], [0.0]])]  # norms 5 and 0.5
    out, st = clip_and_noise(g, max_norm=1.0, noise_multiplier=0.0, denominator=2.0)
    # the first example clipped to norm 1: (0.6, 0.8); the second kept
    assert torch.allclose(out[0], torch.tensor([0.9, 1.2]) / 2, atol=1e-5)
    assert st.batch_size == 2 and st.clipped == 1 and st.mean_norm == pytest.approx(2.75)
    empty, st = clip_and_noise([torch.zeros(0, 4)], max_norm=1.0, noise_multiplier=0.0, denominator=1.0)
    assert torch.equal(empty[0], torch.zeros(4)) and st.batch_size == 0


def test_noise_scale_is_sigma_times_clip_over_denominator():
    gen = torch.Generator().manual_seed(0)
    zeros = [torch.zeros(3, 100_000)]
    out, _ = clip_and_noise(zeros, max_norm=2.0, noise_multiplier=1.5, denominator=4.0, generator=gen)
    x = out[0]
    assert abs(float(x.mean())) < 5 * 0.75 / math.sqrt(x.numel())
    assert float(x.std()) == pytest.approx(1.5 * 2.0 / 4.0, rel=0.02)


def test_dpsgd_trains_and_accounts():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = _data(64)
    dp = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.5), sample_rate=0.25, noise_multiplier=0.5,
               max_norm=1.0, seed=0)
    before = sum(float(_loss(model, ex)) for ex in data)
    sizes = []
    for _ in range(30):
        idx = dp.sample(len(data))
        sizes.append(len(idx))
        dp.step([data[i] for i in idx], _loss, num_examples=len(data))
    after = sum(float(_loss(model, ex)) for ex in data)
    assert after < before                                   # it learns despite the noise
    assert 8 <= sum(sizes) / len(sizes) <= 24               # Poisson batches around q N = 16
    assert dp.accountant.steps == 30
    assert dp.epsilon(1e-5) == pytest.approx(dp_sgd_epsilon(0.25, 0.5, 30, 1e-5), rel=1e-12)
    assert len(poisson_batch(1000, 0.0)) == 0 and len(poisson_batch(1000, 1.0)) == 1000
