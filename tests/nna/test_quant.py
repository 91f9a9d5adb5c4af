import math

import pytest
import torch

from sltk.nna import quant as Q


def test_qrange():
    assert Q.qrange(8) == (-127, 127)
    assert Q.qrange(8, signed=False) == (0, 255)
    assert Q.qrange(4) == (-7, 7)
    assert Q.qrange(1) == (-1, 1)
    with pytest.raises(ValueError):
        Q.qrange(0)


def test_round_half_away_from_zero():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.49])
    assert Q.round_half_away(x).tolist() == [-3, -2, -1, 1, 2, 3, 0, 0]


def test_fake_quant_values_and_ste_gradient():
    x = torch.tensor([-2.0, -0.26, 0.0, 0.24, 0.26, 0.9, 3.0], requires_grad=True)
    y = Q.fake_quant(x, 0.5, bits=3)  # codes -3..3 -> values -1.5..1.5
    assert y.tolist() == [-1.5, -0.5, 0.0, 0.0, 0.5, 1.0, 1.5]
    y.sum().backward()
    # 1 inside the clamp range (|x/0.5| <= 3), 0 outside
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_per_channel_quantize_roundtrip():
    w = torch.tensor([[1.0, -0.3], [0.011, 0.02]])
    s = Q.symmetric_scale(w, 8, axis=0)
    assert torch.allclose(s, torch.tensor([1.0 / 127, 0.02 / 127]))
    q = Q.quantize(w, s, 8, axis=0)
    assert q.tolist() == [[127, -38], [70, 127]]  # -38.1, 69.85
    assert torch.allclose(Q.dequantize(q, s, axis=0), w, atol=0.5 * 1.0 / 127)


@pytest.mark.parametrize("real", [0.3, 1e-4, 0.99999999, 1.0, 1.7, 0.5])
def test_quantize_multiplier(real):
    m, n = Q.quantize_multiplier(real, 31)
    assert 2 ** 30 <= m < 2 ** 31 and n >= 0
    assert abs(m * 2.0 ** -n - real) <= real * 2.0 ** -30


def test_quantize_multiplier_refuses():
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError):
            Q.quantize_multiplier(bad)


def test_requantize_rounding_by_hand():
    acc = torch.tensor([5, -5, 6, -6, 7, 0], dtype=torch.int64)
    # times 3 / 4: 15/4=3.75->4, -3.75->-4, 18/4=4.5->5, -4.5->-5, 21/4=5.25->5, 0
    assert Q.requantize(acc, 3, 2).tolist() == [4, -4, 5, -5, 5, 0]
    assert Q.requantize(acc, 1, 0).tolist() == acc.tolist()


def test_requantize_matches_float_for_real_factor():
    g = torch.Generator().manual_seed(0)
    acc = torch.randint(-2 ** 20, 2 ** 20, (1000,), generator=g)
    real = 0.0123456
    m, n = Q.quantize_multiplier(real)
    got = Q.requantize(acc, m, n)
    want = Q.round_half_away(acc.double() * real).long()
    assert (got - want).abs().max() <= 1


def test_saturate():
    x = torch.tensor([-40000, -32768, 0, 32767, 40000])
    assert Q.saturate(x, 16).tolist() == [-32768, -32768, 0, 32767, 32767]
    assert Q.saturate(torch.tensor([-3, 300]), 8, signed=False).tolist() == [0, 255]


def test_wrap_rounding_div_isqrt():
    assert Q.wrap(torch.tensor([32767, 32768, -32769, 70000]), 16).tolist() == [32767, -32768, 32767, 4464]
    a = torch.tensor([7, -7, 5, -5, 6, 0])
    # 7/2=3.5->4, -3.5->-4, 2.5->3, -2.5->-3, 3, 0
    assert Q.rounding_div(a, 2).tolist() == [4, -4, 3, -3, 3, 0]
    v = torch.tensor([0, 1, 3, 4, 15, 16, 17, 2 ** 50 - 1, 2 ** 50])
    assert Q.isqrt(v).tolist() == [0, 1, 1, 2, 3, 4, 4, 2 ** 25 - 1, 2 ** 25]
