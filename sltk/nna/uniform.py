"""Uniform baselines for :mod:`sltk.nna.gq`: symmetric per-channel fixed-point weights at b bits.

* **QAT** (:class:`UniformHook`): fake quantization in training with the straight-through
  estimator of :func:`sltk.nna.quant.fake_quant`, the step size per output channel either
  learned (LSQ: initialised by min/max, its gradient scaled by 1/sqrt(n * qmax)) or recomputed
  from the weights by min/max at every forward (``learn_scale=False``).
* **PTQ** (:func:`apply_ptq`): per-channel symmetric min/max on a trained float model, no
  training.

Channel axis 0 (the output channel of linear and convolution kernels, the gate rows of LSTM
matrices, the token of an embedding). Codes use the symmetric range of
:func:`sltk.nna.quant.qrange`, ``2^b - 1`` values, so b >= 2 (a "1-bit" symmetric code is
ternary and does not fit one bit; binary weights are GQ's 1-bit case).
"""

from __future__ import annotations

import logging
import math
from typing import Dict

import torch
from torch import nn

from sltk.asr.checkpoint import register_transform
from sltk.asr.train import TrainHook
from sltk.nna import quant as Q
from sltk.nna.qparam import BitAllocation, Bits, attach, quantizers
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

AXIS = 0


class _GradScale(torch.autograd.Function):
    """Identity forward (exactly), gradient times ``g`` (LSQ's step-size gradient scale)."""

    @staticmethod
    def forward(ctx, x, g: float):  # type: ignore[override]
        ctx.g = g
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad * ctx.g, None


class UniformQuantizer(nn.Module):
    """Symmetric per-channel fake quantizer of one weight tensor at ``bits`` (2..8)."""

    def __init__(self, bits: int, channels: int, learn_scale: bool = True):
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"uniform bits must be in 2..8, got {bits}")
        self.bits = bits
        self.learn_scale = learn_scale
        if learn_scale:
            self.scale = nn.Parameter(torch.ones(channels))

    @torch.no_grad()
    def init_from(self, w: torch.Tensor) -> None:
        if self.learn_scale:
            self.scale.copy_(Q.symmetric_scale(w, self.bits, axis=AXIS))

    def scales(self, w: torch.Tensor) -> torch.Tensor:
        """The per-channel step sizes used for ``w``: learned, or min/max of ``w``."""
        if not self.learn_scale:
            return Q.symmetric_scale(w, self.bits, axis=AXIS)
        _, qmax = Q.qrange(self.bits)
        g = 1.0 / math.sqrt(w[0].numel() * qmax)
        return _GradScale.apply(self.scale, g).clamp(min=1e-12)

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes (int64, in qrange(bits)) of ``w``."""
        with torch.no_grad():
            return Q.quantize(w, self.scales(w), self.bits, axis=AXIS)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return Q.fake_quant(w, self.scales(w), self.bits, axis=AXIS)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, learn_scale={self.learn_scale}"


def check_bits(bits: Dict[str, Bits], where: str) -> None:
    low = [n for n, b in bits.items() if b is not None and b < 2]
    if low:
        raise UserError(f"{where}: uniform quantization needs 2..8 bits ({low[0]} has {bits[low[0]]}); "
                        "1-bit weights are GQ's (--method gq)")


def apply_uniform(model: nn.Module, bits: Dict[str, Bits], learn_scale: bool = True, init: bool = True) -> int:
    """Attach a :class:`UniformQuantizer` to every weight with a bit width in ``bits``; returns
    how many."""
    params = dict(model.named_parameters())
    n = 0
    for name, b in bits.items():
        if b is None:
            continue
        w = params[name]
        q = UniformQuantizer(b, w.shape[AXIS], learn_scale).to(w.device)
        if init:
            q.init_from(w)
        attach(model, name, q)
        n += 1
    return n


def apply_ptq(model: nn.Module, allocation: BitAllocation) -> Dict[str, Bits]:
    """Post-training quantization: per-channel min/max quantizers on the float weights."""
    bits = allocation.for_model(model)
    check_bits(bits, allocation.source)
    apply_uniform(model, bits, learn_scale=False)
    return bits


def apply_meta(model: nn.Module, meta: Dict) -> None:
    """Checkpoint transform ``"uniform"``: rebuild the quantizers so that the state dict loads."""
    apply_uniform(model, dict(meta["bits"]), learn_scale=bool(meta.get("learn_scale", True)), init=False)


register_transform("uniform", apply_meta)


class UniformHook(TrainHook):
    """Uniform QAT: quantizers attached in ``on_model`` (step sizes initialised by min/max)."""

    name = "uniform"

    def __init__(self, allocation: BitAllocation, learn_scale: bool = True):
        self.allocation = allocation
        self.learn_scale = learn_scale
        self.bits: Dict[str, Bits] = {}

    def on_model(self, model: nn.Module) -> None:
        self.bits = self.allocation.for_model(model)
        check_bits(self.bits, self.allocation.source)
        n = apply_uniform(model, self.bits, self.learn_scale)
        log.info("uniform QAT (%s step sizes): %d weights quantized, %d left in float",
                 "learned" if self.learn_scale else "min/max", n, len(self.bits) - n)

    def checkpoint_meta(self) -> Dict:
        return {"bits": dict(self.bits), "allocation": self.allocation.to_dict(), "learn_scale": self.learn_scale}


def uniform_quantizers(model: nn.Module):
    return [(n, q) for n, _, q in quantizers(model) if isinstance(q, UniformQuantizer)]
