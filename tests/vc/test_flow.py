"""The conditional flow: exact inverse and exact log-determinant."""

import pytest
import torch

from sltk.vc.flow import AccentFlow, ActNorm, AffineCoupling, CondAffine, FlowConfig, InvConv1x1, nll_per_dim


def _perturb(model, seed=0):
    """Random weights everywhere (the couplings start as the identity); the 1x1 mixings stay
    well conditioned, as training keeps them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name, p in m.named_parameters(recurse=False):
                scale = 0.02 if isinstance(m, InvConv1x1) else 0.05
                p.add_(scale * torch.randn(p.shape, generator=g))


def _model(D=6, steps=3, hidden=16, cond_prior=False):
    torch.manual_seed(0)
    cfg = FlowConfig(num_mels=D, num_phones=5, num_speakers=2, num_accents=3, steps=steps, hidden=hidden,
                     phone_dim=4, cond_dim=8, speaker_dim=3, accent_dim=3, cond_prior=cond_prior)
    m = AccentFlow(cfg)
    return m


def _cond(m, B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 5, (B, T), generator=g)
    pos = torch.rand(B, T, 2, generator=g)
    return m.condition(ids, pos, torch.randint(0, 2, (B,), generator=g), torch.randint(0, 3, (B,), generator=g))


@pytest.mark.parametrize("cond_prior", [False, True])
def test_invertible_x_z_x(cond_prior):
    m = _model(D=80, steps=4, hidden=32, cond_prior=cond_prior)
    assert isinstance(m.layers[-1], CondAffine) == cond_prior
    x = torch.randn(2, 50, 80) * 2 + 1
    with torch.no_grad():
        c = _cond(m, 2, 50)
        m(x, c)  # actnorm initialisation from this batch
        _perturb(m)
        c = _cond(m, 2, 50)
        z, _ = m(x, c)
        assert (z - x).abs().max() > 0.1  # a real transform
        x2 = m.reverse(z, c)
    assert (x2 - x).abs().max() < 1e-4


def test_actnorm_initialises_to_zero_mean_unit_variance():
    a = ActNorm(3)
    x = torch.tensor([[[1.0, 3.0], [0.0, 4.0], [-2.0, 2.0]]])
    y, ld = a(x)
    assert torch.allclose(y.mean(dim=(0, 2)), torch.zeros(3), atol=1e-6)
    assert torch.allclose(y.std(dim=(0, 2)), torch.ones(3), atol=1e-5)
    # log|det| = frames * sum log scale = 2 * -(log sqrt2 + log sqrt8 + log sqrt8)
    s = x.std(dim=(0, 2))
    assert torch.allclose(ld, -2 * torch.log(s).sum().reshape(1), atol=1e-5)


@pytest.mark.parametrize("cond_prior", [False, True])
def test_logdet_matches_numerical_jacobian(cond_prior):
    torch.set_default_dtype(torch.float64)
    try:
        m = _model(D=4, steps=2, hidden=8, cond_prior=cond_prior).double()
        B, T, D = 1, 3, 4
        x0 = torch.randn(B, T, D)
        with torch.no_grad():
            c = _cond(m, B, T)
            m(x0, c)
            _perturb(m, seed=3)
            c = _cond(m, B, T)
        x = torch.randn(B, T, D)

        def f(v):
            return m(v.reshape(B, T, D), c)[0].reshape(-1)

        J = torch.autograd.functional.jacobian(f, x.reshape(-1))
        assert J.shape == (T * D, T * D)
        _, logdet = m(x, c)
        expected = torch.linalg.slogdet(J)[1]
        assert abs(float(logdet[0]) - float(expected)) < 1e-6, (float(logdet[0]), float(expected))
        assert abs(float(expected)) > 0.1  # not a trivial volume-preserving case
    finally:
        torch.set_default_dtype(torch.float32)


def test_each_layer_inverts():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7)
    cond = torch.randn(2, 5, 7)
    for layer in (ActNorm(6), InvConv1x1(6), AffineCoupling(6, 5, 8), CondAffine(6, 5, 8)):
        y, _ = layer(x, cond)
        _perturb(layer)
        y, _ = layer(x, cond)
        assert torch.allclose(layer.reverse(y, cond), x, atol=1e-5), type(layer).__name__


def _phone_frames(B, T, noise):
    """(ids, cond inputs, frames): frames are a per-phone mean (5 phones, 6 channels) plus noise."""
    torch.manual_seed(1)
    ids = torch.randint(0, 5, (B, T))
    means = torch.randn(5, 6) * 3
    x = means[ids] + noise * torch.randn(B, T, 6)
    zeros = torch.zeros(B, dtype=torch.long)
    return ids, (ids, torch.zeros(B, T, 2), zeros, zeros), means, x


def _fit(m, inputs, x, steps):
    """Adam steps on the NLL; the losses."""
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = nll_per_dim(m, x, m.condition(*inputs))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def test_training_lowers_the_nll():
    m = _model(D=6, steps=2, hidden=16)
    # frames that depend on the phone id: the conditioning should explain them
    _, inputs, _, x = _phone_frames(8, 20, 0.1)
    losses = _fit(m, inputs, x, 150)
    assert losses[-1] < losses[0] - 1.0


def test_cond_affine_is_the_gaussian_prior():
    """log N(x; mu, sigma^2) = log N(layer(x); 0, I) + its log|det|, per frame and channel."""
    torch.manual_seed(0)
    layer = CondAffine(3, 4, 8)
    _perturb(layer)
    x, cond = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    y, ld = layer(x, cond)
    mu, logs = layer.stats(cond)
    assert float(logs.abs().max()) > 1e-3
    ref = torch.distributions.Normal(mu, torch.exp(logs)).log_prob(x).sum(dim=(1, 2))
    got = torch.distributions.Normal(0.0, 1.0).log_prob(y).sum(dim=(1, 2)) + ld
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("cond_prior", [False, True])
def test_zero_latents_decode_the_conditional_mean(cond_prior):
    """Frames that are a function of the phone plus noise: once trained (on enough frames not
    to memorise the noise), the flow's output at zero latents is that function, with or
    without the conditional prior (whose mean then carries it)."""
    m = _model(D=6, steps=2, hidden=16, cond_prior=cond_prior)
    ids, inputs, means, x = _phone_frames(64, 50, 0.5)
    loss = _fit(m, inputs, x, 300)[-1]
    # the noise's entropy, 0.5 log(2 pi e 0.25) = 0.73 nats per value, bounds the NLL from below
    assert 0.6 < loss < 1.0
    with torch.no_grad():
        y = m.reverse(torch.zeros(64, 50, 6), m.condition(*inputs))
    err = float((y - means[ids]).abs().mean())
    assert err < 0.15 * float(means.abs().mean()), err


@pytest.mark.parametrize("context", [0, 2])
def test_conditioning_context_is_its_receptive_field(context):
    """A phone changed d frames away changes a frame's conditioning exactly when d <= the
    encoder's receptive field (4 frames, plus 2 * (2 + 4) = 12 more with two dilated layers)."""
    torch.manual_seed(0)
    cfg = FlowConfig(num_mels=6, num_phones=5, num_speakers=2, num_accents=3, steps=1, hidden=8,
                     phone_dim=4, cond_dim=8, speaker_dim=3, accent_dim=3, cond_context=context)
    m = AccentFlow(cfg)
    assert m.encoder.receptive_field == 4 + (12 if context else 0)
    T, t = 61, 30
    ids = torch.zeros(1, T, dtype=torch.long)
    pos = torch.zeros(1, T, 2)
    spk, acc = torch.tensor([0]), torch.tensor([1])
    with torch.no_grad():
        base = m.condition(ids, pos, spk, acc)[0, :, t]
        for d in range(1, 25):
            ids2 = ids.clone()
            ids2[0, t + d] = 3
            changed = not torch.allclose(m.condition(ids2, pos, spk, acc)[0, :, t], base)
            assert changed == (d <= m.encoder.receptive_field), d
