"""The conditional flow: exact inverse and exact log-determinant."""

import torch

from sltk.vc.flow import AccentFlow, ActNorm, AffineCoupling, FlowConfig, InvConv1x1, nll_per_dim


def _perturb(model, seed=0):
    """Random weights everywhere (the couplings start as the identity); the 1x1 mixings stay
    well conditioned, as training keeps them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name, p in m.named_parameters(recurse=False):
                scale = 0.02 if isinstance(m, InvConv1x1) else 0.05
                p.add_(scale * torch.randn(p.shape, generator=g))


def _model(D=6, steps=3, hidden=16):
    torch.manual_seed(0)
    cfg = FlowConfig(num_mels=D, num_phones=5, num_speakers=2, num_accents=3, steps=steps, hidden=hidden,
                     phone_dim=4, cond_dim=8, speaker_dim=3, accent_dim=3)
    m = AccentFlow(cfg)
    return m


def _cond(m, B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 5, (B, T), generator=g)
    pos = torch.rand(B, T, 2, generator=g)
    return m.condition(ids, pos, torch.randint(0, 2, (B,), generator=g), torch.randint(0, 3, (B,), generator=g))


def test_invertible_x_z_x():
    m = _model(D=80, steps=4, hidden=32)
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


def test_logdet_matches_numerical_jacobian():
    torch.set_default_dtype(torch.float64)
    try:
        m = _model(D=4, steps=2, hidden=8).double()
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
    for layer in (ActNorm(6), InvConv1x1(6), AffineCoupling(6, 5, 8)):
        y, _ = layer(x, cond)
        _perturb(layer)
        y, _ = layer(x, cond)
        assert torch.allclose(layer.reverse(y, cond), x, atol=1e-5), type(layer).__name__


def test_training_lowers_the_nll():
    m = _model(D=6, steps=2, hidden=16)
    torch.manual_seed(1)
    # frames that depend on the phone id: the conditioning should explain them
    ids = torch.randint(0, 5, (8, 20))
    means = torch.randn(5, 6) * 3
    x = means[ids] + 0.1 * torch.randn(8, 20, 6)
    pos = torch.zeros(8, 20, 2)
    spk, acc = torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = nll_per_dim(m, x, m.condition(ids, pos, spk, acc))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 1.0
