"""Fixed-point primitives shared by accelerator emulation (AAT) and the quantizers (GQ, QAT, PTQ).

Conventions (the integer path and the fake-quant training path both follow them):

* a quantized tensor is ``q = clamp(round(x / scale), qmin, qmax)`` with symmetric ranges
  (zero point 0) for weights and either signed symmetric or unsigned activations;
* ``round`` is round-half-away-from-zero (``torch.round`` rounds half to even, which no
  integer datapath does), in float as in integer code;
* requantization multiplies an int64 accumulator by an integer ``m`` and shifts right by
  ``n`` with rounding (half away from zero): ``y = sign(acc*m) * ((|acc*m| + 2^(n-1)) >> n)``,
  so a real factor ``r`` becomes ``m * 2^-n`` (see :func:`quantize_multiplier`);
* saturation clamps to the signed range of the given width.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch


def qrange(bits: int, signed: bool = True) -> Tuple[int, int]:
    """Integer range of a ``bits``-wide value: signed symmetric [-(2^(b-1)-1), 2^(b-1)-1]
    (the most negative code is left out so that the range is symmetric), unsigned [0, 2^b-1]."""
    if bits < 1 or bits > 32:
        raise ValueError(f"bit width must be in 1..32, got {bits}")
    if signed:
        if bits == 1:
            return -1, 1  # a 1-bit signed code: sign only (binary weights +-scale)
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (float tensors)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return round_half_away(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient (identity)."""
    return _RoundSTE.apply(x)


def _broadcast_scale(scale: torch.Tensor, x: torch.Tensor, axis: Optional[int]) -> torch.Tensor:
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    if axis is None or scale.dim() == 0:
        return scale
    shape = [1] * x.dim()
    shape[axis] = -1
    return scale.reshape(shape)


def fake_quant(x: torch.Tensor, scale, bits: int, signed: bool = True, axis: Optional[int] = None) -> torch.Tensor:
    """Quantize-dequantize with a straight-through estimator: the gradient w.r.t. ``x`` is the
    float gradient where ``x / scale`` is inside [qmin, qmax] and zero outside (the clamp).
    ``axis``: the channel axis of a per-channel ``scale``."""
    qmin, qmax = qrange(bits, signed)
    s = _broadcast_scale(scale, x, axis)
    return torch.clamp(round_ste(x / s), qmin, qmax) * s


def quantize(x: torch.Tensor, scale, bits: int, signed: bool = True, axis: Optional[int] = None) -> torch.Tensor:
    """Float -> integer codes (int64)."""
    qmin, qmax = qrange(bits, signed)
    s = _broadcast_scale(scale, x, axis)
    return torch.clamp(round_half_away(x / s), qmin, qmax).to(torch.int64)


def dequantize(q: torch.Tensor, scale, axis: Optional[int] = None) -> torch.Tensor:
    s = _broadcast_scale(scale, q.to(torch.float32), axis)
    return q.to(torch.float32) * s


def symmetric_scale(x: torch.Tensor, bits: int, axis: Optional[int] = None, eps: float = 1e-12) -> torch.Tensor:
    """Min/max scale of a symmetric quantizer: max|x| / qmax, per tensor or per ``axis``."""
    _, qmax = qrange(bits, True)
    if axis is None:
        return (x.detach().abs().max() / qmax).clamp(min=eps)
    dims = [d for d in range(x.dim()) if d != axis % x.dim()]
    return (x.detach().abs().amax(dim=dims) / qmax).clamp(min=eps)


def quantize_multiplier(real: float, mult_bits: int = 31) -> Tuple[int, int]:
    """A positive real factor as ``m * 2^-n`` with ``m`` an integer of at most ``mult_bits``
    bits (the most significant bit used, i.e. 2^(mult_bits-1) <= m < 2^mult_bits) and n >= 0.
    Factors >= 2^(mult_bits) or <= 0 are refused."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError(f"requantization factor must be positive and finite, got {real}")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, 0.5 <= mant < 1
    m = int(round(mant * (1 << mult_bits)))
    n = mult_bits - exp
    if m == (1 << mult_bits):  # rounding carried into the next power of two
        m //= 2
        n -= 1
    if n < 0:
        raise ValueError(f"requantization factor {real} is too large for a right shift")
    return m, n


def rounding_shift(x: torch.Tensor, n) -> torch.Tensor:
    """Integer ``x / 2^n`` rounded half away from zero (int64 in and out; ``n`` may be a
    broadcastable int64 tensor of per-channel shifts)."""
    x = x.to(torch.int64)
    n = torch.as_tensor(n, dtype=torch.int64, device=x.device)
    half = torch.where(n > 0, torch.ones_like(n) << (n - 1).clamp(min=0), torch.zeros_like(n))
    mag = (x.abs() + half) >> n
    return torch.where(x < 0, -mag, mag)


def requantize(acc: torch.Tensor, m, n) -> torch.Tensor:
    """int64 accumulator times the fixed-point multiplier ``m * 2^-n`` (rounded)."""
    m = torch.as_tensor(m, dtype=torch.int64, device=acc.device)
    return rounding_shift(acc.to(torch.int64) * m, n)


def saturate(x: torch.Tensor, bits: int, signed: bool = True) -> torch.Tensor:
    """Clamp integers to the full range of a ``bits``-wide register (signed two's complement:
    [-2^(b-1), 2^(b-1)-1]; unsigned: [0, 2^b-1])."""
    if signed:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2 ** bits - 1
    return torch.clamp(x, lo, hi)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Integers reduced to a ``bits``-wide two's complement register that overflows by
    wrapping around (an accumulator without saturation)."""
    half = 1 << (bits - 1)
    return torch.remainder(x.to(torch.int64) + half, 1 << bits) - half


def rounding_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer ``a / b`` rounded half away from zero, for ``b > 0`` (int64 in and out)."""
    a = a.to(torch.int64)
    b = torch.as_tensor(b, dtype=torch.int64, device=a.device)
    mag = torch.div(a.abs() * 2 + b, 2 * b, rounding_mode="floor")
    return torch.where(a < 0, -mag, mag)


def isqrt(v: torch.Tensor) -> torch.Tensor:
    """Integer square root ``floor(sqrt(v))`` of non-negative int64 values below 2^52 (a float
    estimate corrected by one step, exact in that range)."""
    v = v.to(torch.int64)
    r = torch.sqrt(v.to(torch.float64)).floor().to(torch.int64)
    r = r + ((r + 1) * (r + 1) <= v).to(torch.int64)
    return r - (r * r > v).to(torch.int64)
