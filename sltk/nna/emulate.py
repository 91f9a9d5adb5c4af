"""Emulation of a neural-network accelerator (NNA) inside a transducer: AAT and the integer path.

:func:`convert` swaps, in place, the operators of a :class:`~sltk.asr.model.Transducer` that
the profile (:mod:`sltk.nna.profile`) places on the NNA for emulating subclasses of the same
torch modules (same parameters, plus the activation-range observers as buffers):

=================  ============================================================================
``NNALinear``      nn.Linear (profile kind ``linear``)
``NNAConv1d/2d``   nn.Conv1d / nn.Conv2d (``conv``), groups and padding included
``NNALSTM``        nn.LSTM (``lstm``): gates through the sigmoid/tanh LUTs, the cell state at
                   ``lstm.cell_bits``, with or without a projection, any number of layers
``NNAEmbedding``   nn.Embedding (``embedding``): a table of weight codes
``NNALayerNorm``   nn.LayerNorm (``layernorm``): integer mean, variance and square root
``NNALUT``         nn.Tanh / nn.Sigmoid (``tanh``, ``sigmoid``): the joiner's tanh via the LUT
=================  ============================================================================

Operators the profile keeps on the CPU stay as they are and run in float (fallbacks). Only
the deployed parts are converted: encoder, prediction network, joiner and CTC head (not the
projections of k2's simple loss, which serve training only).

Every emulated module has four modes (:func:`set_mode`):

``float``      the original float computation;
``calibrate``  float computation, and the observers record the range of the operator's input,
               output (and LSTM cell state) as an EMA of min/max, and the largest accumulator
               (for headroom, below); :func:`freeze_ranges` ends it;
``fake``       fake quantization for training (AAT): values are rounded and clamped onto the
               integer grid of the NNA, with straight-through gradients (identity inside the
               clamp range, zero outside; smooth sigmoid/tanh gradients through the LUTs);
``int``        the integer path: what the NNA computes. Integer codes (int64 tensors), products
               accumulated exactly, saturated (or wrapped) to the accumulator width, bias at the
               accumulator's scale, requantization ``y = acc * m * 2^-n`` rounded half away from
               zero (:func:`sltk.nna.quant.requantize`), outputs clamped to the activation codes,
               LUT look-ups for sigmoid and tanh. Only the conversions at the operator's edges
               (float input -> codes, output codes -> float) use floating point.

Accumulator headroom (profile ``accumulator.headroom``, on by default): where the calibrated
sums of an operator would overflow its accumulator, its input range is widened until they fit
(coarser input codes instead of saturated sums), as an NNA toolchain does; with 32-bit
accumulators it never triggers, with 16-bit ones it is what keeps a layer with hundreds of
inputs usable. Outliers beyond the calibrated range still saturate.

The integer dot products run as float64 matrix products of integer-valued tensors: every partial
sum is an integer below 2^53 (checked), which float64 represents exactly, so the result *is* the
int64 accumulation (and runs on BLAS and on GPUs, where int64 matmul does not exist).

Simplifications, stated: each emulated operator quantizes its own input with its own calibrated
range (where two NNA operators follow each other the second re-quantizes codes that are already
on a grid of nearly the same scale); element-wise operators between emulated ones (relu,
residual add) are computed on the dequantized values, which is exact for relu and, for add,
leaves the rounding of the sum to the next operator's input quantizer; the accumulator saturates
once, on the complete sum (a wide accumulator with a saturating output), not after each partial
sum; LayerNorm's epsilon is dropped (an integer datapath has no 1e-5).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from sltk.nna.profile import LUT, NNAProfile, profile_from_meta
from sltk.nna.quant import (fake_quant, isqrt, qrange, quantize, quantize_multiplier, requantize, round_half_away,
                            round_ste, rounding_div, saturate, symmetric_scale, wrap)
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

MODES = ("float", "calibrate", "fake", "int")
_EXACT = 2 ** 53          # float64 holds every integer below this exactly
_MIN_RANGE = 1e-3         # observed ranges narrower than this are widened to it (scales stay sane)


# ------------------------------------------------------------------------- fixed-point helpers
def accumulate(acc: torch.Tensor, bits: int, saturating: bool) -> torch.Tensor:
    """An exact int64 sum reduced to the accumulator register: saturated or wrapped."""
    return saturate(acc, bits) if saturating else wrap(acc, bits)


def fake_accumulate(acc: torch.Tensor, scale: torch.Tensor, bits: int, saturating: bool) -> torch.Tensor:
    """The same on a float accumulator whose integer unit is ``scale`` (STE: saturation passes
    no gradient outside the register's range; wrapping passes it unchanged)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if saturating:
        return torch.clamp(acc, lo * scale, hi * scale)
    span = float(2 ** bits) * scale
    return acc - (span * torch.floor((acc + (2 ** (bits - 1)) * scale) / span)).detach()


def multipliers(reals: Sequence[float], bits: int, where: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel fixed-point multipliers ``(m, n)`` (int64 tensors) of the real factors."""
    ms, ns = [], []
    for r in reals:
        try:
            m, n = quantize_multiplier(float(r), bits)
        except ValueError as e:
            raise UserError(f"NNA emulation of {where}: {e} (with {bits}-bit multipliers)") from None
        ms.append(m)
        ns.append(n)
    return torch.tensor(ms, dtype=torch.int64), torch.tensor(ns, dtype=torch.int64)


def _multiplier(real: float, bits: int, where: str) -> Tuple[int, int]:
    m, n = multipliers([real], bits, where)
    return int(m[0]), int(n[0])


def lut_codes(kind: str, lut: LUT) -> Tuple[torch.Tensor, int]:
    """The table of a sigmoid or tanh LUT as integer codes (int64, E entries) and the code of
    1.0: sigmoid ``round(sigmoid(x_i) * (2^b - 1))``, tanh ``round(tanh(x_i) * (2^(b-1) - 1))``
    at ``x_i = (i - E/2) * step``."""
    x = (torch.arange(lut.entries, dtype=torch.float64) - lut.entries // 2) * lut.step
    if kind == "sigmoid":
        one = 2 ** lut.output_bits - 1
        y = torch.sigmoid(x)
    elif kind == "tanh":
        one = 2 ** (lut.output_bits - 1) - 1
        y = torch.tanh(x)
    else:
        raise ValueError(f"no LUT for {kind!r}")
    return round_half_away(y * one).to(torch.int64), one


def lut_index(k: torch.Tensor, lut: LUT) -> torch.Tensor:
    """Entry read for an input of ``k`` steps (int64): ``clamp(k + E/2, 0, E-1)``."""
    return torch.clamp(k + lut.entries // 2, 0, lut.entries - 1)


def lut_fake(k: torch.Tensor, kind: str, lut: LUT, values: torch.Tensor) -> torch.Tensor:
    """LUT read on a float step count ``k`` (already rounded): the table's value forward, the
    smooth function's gradient backward."""
    x = k * lut.step
    smooth = torch.sigmoid(x) if kind == "sigmoid" else torch.tanh(x)
    idx = lut_index(k.detach().to(torch.int64), lut)
    return smooth + (values.to(x.device)[idx] - smooth).detach()


def _exact_check(fan_in: int, bits_a: int, bits_b: int, extra_bits: int, where: str) -> None:
    bound = fan_in * 2 ** (bits_a - 1) * 2 ** (bits_b - 1) + 2 ** extra_bits
    if bound >= _EXACT:
        raise UserError(f"NNA emulation of {where}: integer sums up to {bound} exceed the exact range of "
                        "the float64 emulation (2^53); use narrower weights or activations")


def headroom_scale(s_x: float, acc_obs: "RangeObserver", profile: NNAProfile) -> float:
    """The input scale widened, where needed, so that the calibrated accumulator fits its
    register (profile ``accumulator.headroom``): ``acc_obs`` holds the largest |sum of input x
    weight| in units of the weight scale, so the accumulator in codes is that over ``s_x``. An
    NNA toolchain trades input precision for accumulator headroom; with 8-bit operands only
    accumulators narrower than about 24 bits need it, and without it a 16-bit accumulator
    saturates on most outputs of a layer with a few hundred inputs."""
    if not profile.acc_headroom or not acc_obs.calibrated:
        return s_x
    return max(s_x, float(acc_obs.max_val) / (2 ** (profile.acc_bits - 1) - 1))


# ------------------------------------------------------------------------------- observers
class RangeObserver(nn.Module):
    """Range of a tensor seen while calibrating: min and max, an EMA over batches (the first
    batch sets them). ``frozen`` stops the updates; the state is saved with the model."""

    def __init__(self, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        if bool(self.frozen) or x.numel() == 0:
            return
        x = x.detach().float()
        lo, hi = x.min(), x.max()
        if int(self.count) == 0:
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        else:
            m = self.momentum
            self.min_val.mul_(m).add_((1 - m) * lo)
            self.max_val.mul_(m).add_((1 - m) * hi)
        self.count.add_(1)

    @property
    def calibrated(self) -> bool:
        return int(self.count) > 0

    def qparams(self, bits: int, signedness: str = "signed") -> Tuple[float, bool]:
        """(scale, signed) of the codes for this range: symmetric signed, or unsigned where
        ``signedness`` is ``auto`` and the range is non-negative."""
        lo, hi = float(self.min_val), float(self.max_val)
        if signedness == "auto" and lo >= 0.0:
            return max(hi, _MIN_RANGE) / qrange(bits, False)[1], False
        return max(abs(lo), abs(hi), _MIN_RANGE) / qrange(bits, True)[1], True

    def extra_repr(self) -> str:
        return f"min={float(self.min_val):.4g}, max={float(self.max_val):.4g}, count={int(self.count)}"


# ------------------------------------------------------------------------------ the modules
class NNAModule:
    """Mixin of every emulated module: the profile, the mode, the name, a cache of the integer
    constants (quantized weights, multipliers), keyed on the versions of the module's tensors."""

    nna_kind = ""
    profile: NNAProfile
    nna_mode: str
    nna_name: str

    def _setup_nna(self, profile: NNAProfile, name: str) -> None:
        self.profile = profile
        self.nna_mode = "float"
        self.nna_name = name
        self._int_cache = None

    def _require_calibrated(self, *obs: RangeObserver) -> None:
        for o in obs:
            if not o.calibrated:
                raise UserError(f"NNA emulation: the activation ranges of {self.nna_name or type(self).__name__} "
                                "were never calibrated (calibrate before fake or int mode)")

    def _cached(self, build: Callable[[], Dict]) -> Dict:
        tensors = list(self.parameters(recurse=True)) + list(self.buffers(recurse=True))  # type: ignore
        key = tuple((t.data_ptr(), t._version, t.device) for t in tensors)
        if self._int_cache is None or self._int_cache[0] != key:
            self._int_cache = (key, build())
        return self._int_cache[1]

    def _weight_scale(self, w: torch.Tensor, bits: int, per_channel: Optional[bool] = None) -> torch.Tensor:
        """Symmetric weight scales, one per output channel (rows of ``w``), detached."""
        per_channel = self.profile.per_channel if per_channel is None else per_channel
        if per_channel:
            return symmetric_scale(w, bits, axis=0)
        return symmetric_scale(w, bits).expand(w.size(0))

    def extra_repr(self) -> str:  # appended to the torch module's description
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, nna={self.profile.name}, mode={self.nna_mode}"


class _WeightedOp(NNAModule):
    """Linear and convolutions: quantized input x weights (+ bias) into the accumulator,
    requantized into the output codes."""

    channel_axis = -1

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def _chan(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """A per-output-channel vector shaped to broadcast against the output."""
        if self.channel_axis == -1:
            return t
        return t.reshape([-1] + [1] * (ndim - 2))

    def _init_observers(self) -> None:
        self.in_obs = RangeObserver(self.profile.momentum)
        self.out_obs = RangeObserver(self.profile.momentum)
        self.acc_obs = RangeObserver(self.profile.momentum)   # |x . w| / s_w: accumulator headroom

    def _in_qparams(self) -> Tuple[float, bool]:
        p = self.profile
        s_x, signed = self.in_obs.qparams(p.act_bits, p.act_signedness)
        return headroom_scale(s_x, self.acc_obs, p), signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nna_mode == "float":
            return self._op(x, self.weight, self.bias)  # type: ignore[attr-defined]
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.nna_mode == "calibrate":
                y = self._op(x, self.weight, self.bias)  # type: ignore[attr-defined]
                self.in_obs.observe(x)
                self.out_obs.observe(y)
                with torch.no_grad():
                    s_w = self._weight_scale(self.weight.detach(), self.profile.weight_bits)  # type: ignore
                    self.acc_obs.observe((self._op(x, self.weight, None) / self._chan(s_w, y.dim())).abs())
                return y
            self._require_calibrated(self.in_obs, self.out_obs)
            return self._fake(x) if self.nna_mode == "fake" else self._int(x)

    def _fake(self, x: torch.Tensor) -> torch.Tensor:
        p = self.profile
        w, b = self.weight, self.bias  # type: ignore[attr-defined]
        s_x, sx_signed = self._in_qparams()
        s_y, sy_signed = self.out_obs.qparams(p.act_bits, p.act_signedness)
        s_w = self._weight_scale(w, p.weight_bits)
        acc_scale = s_x * s_w
        xf = fake_quant(x, s_x, p.act_bits, sx_signed)
        wf = fake_quant(w, s_w, p.weight_bits, True, axis=0)
        bf = fake_quant(b, acc_scale, p.acc_bits, True) if b is not None else None
        acc = self._op(xf, wf, bf)
        acc = fake_accumulate(acc, self._chan(acc_scale, acc.dim()), p.acc_bits, p.acc_saturate)
        return fake_quant(acc, s_y, p.act_bits, sy_signed)

    def _int_consts(self) -> Dict:
        p = self.profile
        w, b = self.weight.detach(), self.bias  # type: ignore[attr-defined]
        s_x, sx_signed = self._in_qparams()
        s_y, sy_signed = self.out_obs.qparams(p.act_bits, p.act_signedness)
        s_w = self._weight_scale(w, p.weight_bits)
        wq = quantize(w, s_w, p.weight_bits, True, axis=0).double()  # integer codes, exact in float64
        acc_scale = s_x * s_w.double()
        bq = None
        if b is not None:
            lo, hi = qrange(p.acc_bits, True)
            bq = torch.clamp(round_half_away(b.detach().double() / acc_scale), lo, hi)
        _exact_check(w[0].numel(), p.act_bits, p.weight_bits, p.acc_bits, self.nna_name)
        m, n = multipliers((acc_scale / s_y).tolist(), p.multiplier_bits, self.nna_name)
        return dict(s_x=s_x, sx_signed=sx_signed, s_y=s_y, sy_signed=sy_signed, wq=wq, bq=bq,
                    m=m.to(w.device), n=n.to(w.device))

    @torch.no_grad()
    def _int(self, x: torch.Tensor) -> torch.Tensor:
        p = self.profile
        c = self._cached(self._int_consts)
        xq = quantize(x, c["s_x"], p.act_bits, c["sx_signed"])
        acc = self._op(xq.double(), c["wq"], c["bq"])
        acc = accumulate(acc.round().to(torch.int64), p.acc_bits, p.acc_saturate)
        yq = requantize(acc, self._chan(c["m"], acc.dim()), self._chan(c["n"], acc.dim()))
        lo, hi = qrange(p.act_bits, c["sy_signed"])
        return torch.clamp(yq, lo, hi).to(torch.float32) * c["s_y"]


class NNALinear(_WeightedOp, nn.Linear):
    nna_kind = "linear"
    channel_axis = -1

    def _op(self, x, w, b):
        return F.linear(x, w, b)

    @classmethod
    def from_float(cls, mod: nn.Linear, profile: NNAProfile, name: str = "") -> "NNALinear":
        new = cls(mod.in_features, mod.out_features, bias=mod.bias is not None, device=mod.weight.device)
        new.weight, new.bias = mod.weight, mod.bias
        new._setup_nna(profile, name)
        new._init_observers()
        return new.to(mod.weight.device)


class _NNAConv(_WeightedOp):
    nna_kind = "conv"
    channel_axis = 1

    def _op(self, x, w, b):
        return self._conv_forward(x, w, b)  # type: ignore[attr-defined]

    @classmethod
    def from_float(cls, mod, profile: NNAProfile, name: str = ""):
        if mod.padding_mode != "zeros":
            raise UserError(f"NNA emulation of {name}: padding mode {mod.padding_mode!r} (only zeros)")
        new = cls(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride, padding=mod.padding,
                  dilation=mod.dilation, groups=mod.groups, bias=mod.bias is not None, device=mod.weight.device)
        new.weight, new.bias = mod.weight, mod.bias
        new._setup_nna(profile, name)
        new._init_observers()
        return new.to(mod.weight.device)


class NNAConv1d(_NNAConv, nn.Conv1d):
    pass


class NNAConv2d(_NNAConv, nn.Conv2d):
    pass


class NNAEmbedding(NNAModule, nn.Embedding):
    """A table of weight codes with one scale for the whole table (a lookup's output feeds
    integer operators, which need a single scale)."""

    nna_kind = "embedding"

    @classmethod
    def from_float(cls, mod: nn.Embedding, profile: NNAProfile, name: str = "") -> "NNAEmbedding":
        new = cls(mod.num_embeddings, mod.embedding_dim, padding_idx=mod.padding_idx, device=mod.weight.device)
        new.weight = mod.weight
        new._setup_nna(profile, name)
        return new

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.nna_mode in ("float", "calibrate"):
            return super().forward(ids)
        bits = self.profile.weight_bits
        if self.nna_mode == "fake":
            s = symmetric_scale(self.weight, bits)
            return F.embedding(ids, fake_quant(self.weight, s, bits), self.padding_idx)
        c = self._cached(lambda: self._table(bits))
        return c["codes"][ids].to(torch.float32) * c["s"]

    def _table(self, bits: int) -> Dict:
        s = symmetric_scale(self.weight, bits)
        return dict(s=float(s), codes=quantize(self.weight.detach(), float(s), bits))


class NNALUT(NNAModule, nn.Module):
    """Element-wise sigmoid or tanh through the NNA's look-up table: the input is requantized
    to the table's step, the entry read, the output is its code."""

    def __init__(self, kind: str, profile: NNAProfile, name: str = ""):
        super().__init__()
        if kind not in ("sigmoid", "tanh"):
            raise ValueError(f"no LUT for {kind!r}")
        self.nna_kind = kind
        self._setup_nna(profile, name)
        self.lut = profile.sigmoid if kind == "sigmoid" else profile.tanh
        codes, one = lut_codes(kind, self.lut)
        self.register_buffer("codes", codes, persistent=False)
        self.one = one

    @classmethod
    def from_float(cls, mod: nn.Module, profile: NNAProfile, name: str = "") -> "NNALUT":
        return cls("sigmoid" if isinstance(mod, nn.Sigmoid) else "tanh", profile, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.sigmoid if self.nna_kind == "sigmoid" else torch.tanh
        if self.nna_mode in ("float", "calibrate"):
            return f(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.nna_mode == "fake":
                k = round_ste(x / self.lut.step)
                return lut_fake(k, self.nna_kind, self.lut, self.codes.to(torch.float32) / self.one)
            k = round_half_away(x / self.lut.step).to(torch.int64)
            return self.codes[lut_index(k, self.lut)].to(torch.float32) / self.one

    def extra_repr(self) -> str:
        return f"{self.nna_kind}, entries={self.lut.entries}, nna={self.profile.name}, mode={self.nna_mode}"


class NNALayerNorm(NNAModule, nn.LayerNorm):
    """Layer norm on the integer datapath, over the last dimension (D values, codes q):
    ``d = D*q - sum(q)``, ``V = sum(d^2)``, ``r = isqrt(V // D)`` (so d / r is the normalized
    value), ``z = round(d * 2^F / r)`` with ``F = min(activation bits, accumulator bits - weight
    bits - 3)`` fraction bits (|z| < 8 fits the accumulator), then
    ``acc = gamma_q * z + beta_q`` (beta at the accumulator's scale), saturated and requantized
    to the output codes. Epsilon is dropped; a constant input gives z = 0 (output beta)."""

    nna_kind = "layernorm"

    @classmethod
    def from_float(cls, mod: nn.LayerNorm, profile: NNAProfile, name: str = "") -> "NNALayerNorm":
        if len(mod.normalized_shape) != 1:
            raise UserError(f"NNA emulation of {name}: layer norm over {mod.normalized_shape} (only the last dim)")
        new = cls(mod.normalized_shape, eps=mod.eps, elementwise_affine=mod.elementwise_affine,
                  device=mod.weight.device if mod.weight is not None else None)
        if mod.elementwise_affine:
            new.weight, new.bias = mod.weight, mod.bias
        new._setup_nna(profile, name)
        new.in_obs = RangeObserver(profile.momentum)
        new.out_obs = RangeObserver(profile.momentum)
        return new

    def _frac_bits(self) -> int:
        p = self.profile
        return max(0, min(p.act_bits, p.acc_bits - p.weight_bits - 3))

    def _affine(self, device) -> Tuple[torch.Tensor, torch.Tensor]:
        d = self.normalized_shape[0]
        if self.weight is None:
            return torch.ones(d, device=device), torch.zeros(d, device=device)
        return self.weight, self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nna_mode == "float":
            return super().forward(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.nna_mode == "calibrate":
                y = super().forward(x)
                self.in_obs.observe(x)
                self.out_obs.observe(y)
                return y
            self._require_calibrated(self.in_obs, self.out_obs)
            return self._fake(x) if self.nna_mode == "fake" else self._int(x)

    def _fake(self, x: torch.Tensor) -> torch.Tensor:
        p = self.profile
        D = self.normalized_shape[0]
        s_x, sx_signed = self.in_obs.qparams(p.act_bits, p.act_signedness)
        s_y, sy_signed = self.out_obs.qparams(p.act_bits, p.act_signedness)
        g, b = self._affine(x.device)
        s_g = self._weight_scale(g[:, None], p.weight_bits)
        lo, hi = qrange(p.act_bits, sx_signed)
        q = torch.clamp(round_ste(x.double() / s_x), lo, hi)      # codes, float64 (exact integers)
        d = D * q - q.sum(-1, keepdim=True)
        v = (d * d).sum(-1, keepdim=True)
        r_smooth = torch.sqrt(v / D)
        r = r_smooth + (torch.floor(torch.sqrt(torch.floor(v / D))) - r_smooth).detach()
        frac = 2.0 ** self._frac_bits()
        z = round_ste(d * frac / r.clamp(min=1.0))
        acc_scale = s_g.double() / frac
        gq = fake_quant(g, s_g, p.weight_bits, True, axis=0).double() / s_g.double()
        bq = torch.clamp(round_ste(b.double() / acc_scale), *qrange(p.acc_bits, True))
        acc = fake_accumulate(gq * z + bq, torch.ones((), dtype=torch.float64), p.acc_bits, p.acc_saturate)
        return fake_quant((acc * acc_scale).float(), s_y, p.act_bits, sy_signed)

    def _int_consts(self) -> Dict:
        p = self.profile
        s_x, sx_signed = self.in_obs.qparams(p.act_bits, p.act_signedness)
        s_y, sy_signed = self.out_obs.qparams(p.act_bits, p.act_signedness)
        g, b = self._affine(self.in_obs.min_val.device)
        g, b = g.detach(), b.detach()
        s_g = self._weight_scale(g[:, None], p.weight_bits)
        frac = 2 ** self._frac_bits()
        acc_scale = s_g.double() / frac
        gq = quantize(g, s_g, p.weight_bits, True)
        bq = torch.clamp(round_half_away(b.double() / acc_scale), *qrange(p.acc_bits, True)).to(torch.int64)
        m, n = multipliers((acc_scale / s_y).tolist(), p.multiplier_bits, self.nna_name)
        return dict(s_x=s_x, sx_signed=sx_signed, s_y=s_y, sy_signed=sy_signed, gq=gq, bq=bq, frac=frac,
                    m=m.to(g.device), n=n.to(g.device))

    @torch.no_grad()
    def _int(self, x: torch.Tensor) -> torch.Tensor:
        p = self.profile
        D = self.normalized_shape[0]
        c = self._cached(self._int_consts)
        q = quantize(x, c["s_x"], p.act_bits, c["sx_signed"])
        d = D * q - q.sum(-1, keepdim=True)
        v = (d * d).sum(-1, keepdim=True)
        r = isqrt(torch.div(v, D, rounding_mode="floor")).clamp(min=1)
        z = rounding_div(d * c["frac"], r)
        acc = accumulate(c["gq"] * z + c["bq"], p.acc_bits, p.acc_saturate)
        yq = requantize(acc, c["m"], c["n"])
        return torch.clamp(yq, *qrange(p.act_bits, c["sy_signed"])).to(torch.float32) * c["s_y"]


class NNALSTM(NNAModule, nn.LSTM):
    """A unidirectional (multi-layer, optionally projected) LSTM on the NNA. Per layer and step,
    with codes x (input), h (recurrent output), c (cell), rows r = (i, f, g, o) gates::

        acc_x = W_ih x + b          acc_h = W_hh h              (each saturated to the accumulator)
        k     = rq(acc_x, s_x s_wi / D_r) + rq(acc_h, s_h s_wh / D_r)    (D_r: the gate's LUT step)
        i, f, o = SIGMOID[k] ; g = TANH[k]                      (codes of 1/Qs and 1/Qt)
        c     = clamp(rq(f c, 1/Qs) + rq(i g, 1/(Qs Qt s_c)), cell_bits)
        t     = TANH[rq(c, s_c / D_t)]
        h     = clamp(rq(o t, 1/(Qs Qt s_h)), act_bits)          (no projection)
        m     = clamp(rq(o t, 1/(Qs Qt s_m))); h = clamp(rq(W_hr m, s_m s_wr / s_h))   (projection)

    ``rq(a, r)`` is requantization by the fixed-point multiplier of the real factor r; the
    scales s_x, s_c, s_m, s_h are the calibrated ranges of each layer."""

    nna_kind = "lstm"

    @classmethod
    def from_float(cls, mod: nn.LSTM, profile: NNAProfile, name: str = "") -> "NNALSTM":
        if mod.bidirectional:
            raise UserError(f"NNA emulation of {name}: bidirectional LSTMs are not supported")
        new = cls(mod.input_size, mod.hidden_size, num_layers=mod.num_layers, bias=mod.bias,
                  batch_first=mod.batch_first, dropout=mod.dropout, proj_size=mod.proj_size,
                  device=mod.weight_ih_l0.device)
        for pname in mod._flat_weights_names:
            setattr(new, pname, getattr(mod, pname))
        new._setup_nna(profile, name)
        mom = profile.momentum
        new.obs = nn.ModuleList()
        for _ in range(mod.num_layers):
            # ranges of input x, cell c, output h (and cell output m), and the accumulator headroom of
            # the input (ax), recurrent (ah) and projection (ar) products, in units of the weight scale
            layer = nn.ModuleDict({k: RangeObserver(mom) for k in ("x", "c", "h", "ax", "ah")})
            if mod.proj_size > 0:
                layer["m"] = RangeObserver(mom)
                layer["ar"] = RangeObserver(mom)
            new.obs.append(layer)
        new.flatten_parameters()
        return new

    def _w(self, kind: str, layer: int) -> Optional[torch.Tensor]:
        return getattr(self, f"{kind}_l{layer}", None)

    def forward(self, x: torch.Tensor, hx=None):
        if self.nna_mode == "float":
            return super().forward(x, hx)
        if x.dim() != 3:
            raise ValueError("NNALSTM expects batched input (N, T, I) or (T, N, I)")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if not self.batch_first:
                x = x.transpose(0, 1)
            n = x.size(0)
            h_out = self.proj_size if self.proj_size > 0 else self.hidden_size
            if hx is None:
                h0 = x.new_zeros(self.num_layers, n, h_out)
                c0 = x.new_zeros(self.num_layers, n, self.hidden_size)
            else:
                h0, c0 = hx[0].float(), hx[1].float()
            hs, cs = [], []
            for layer in range(self.num_layers):
                if self.nna_mode == "calibrate":
                    x, h, c = self._layer_float(layer, x, h0[layer], c0[layer])
                elif self.nna_mode == "fake":
                    x, h, c = self._layer_fake(layer, x, h0[layer], c0[layer])
                else:
                    x, h, c = self._layer_int(layer, x, h0[layer], c0[layer])
                hs.append(h)
                cs.append(c)
                if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                    x = F.dropout(x, self.dropout, True)
            out = x if self.batch_first else x.transpose(0, 1)
            return out, (torch.stack(hs), torch.stack(cs))

    # -- float, observing (calibration)
    def _layer_float(self, layer: int, x, h, c):
        obs = self.obs[layer]
        w_ih, w_hh, w_hr = self._w("weight_ih", layer), self._w("weight_hh", layer), self._w("weight_hr", layer)
        b = self._bias(layer)
        bits = self.profile.weight_bits
        s_wi, s_wh = self._weight_scale(w_ih.detach(), bits), self._weight_scale(w_hh.detach(), bits)
        gx = F.linear(x, w_ih)
        outs, cells, ms, ghs, grs = [], [], [], [], []
        for t in range(x.size(1)):
            gh = F.linear(h, w_hh)
            pre = gx[:, t] + gh if b is None else gx[:, t] + b + gh
            i, f, g, o = pre.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            m = torch.sigmoid(o) * torch.tanh(c)
            if w_hr is not None:
                h = F.linear(m, w_hr)
                grs.append(h.detach())
            else:
                h = m
            outs.append(h)
            cells.append(c)
            ms.append(m)
            ghs.append(gh.detach())
        out = torch.stack(outs, 1)
        with torch.no_grad():
            obs["x"].observe(x)
            obs["c"].observe(torch.stack(cells, 1))
            obs["h"].observe(out)
            obs["ax"].observe((gx / s_wi).abs())
            obs["ah"].observe((torch.stack(ghs, 1) / s_wh).abs())
            if w_hr is not None:
                obs["m"].observe(torch.stack(ms, 1))
                s_wr = self._weight_scale(w_hr.detach(), bits)
                obs["ar"].observe((torch.stack(grs, 1) / s_wr).abs())
        return out, h, c

    def _bias(self, layer: int) -> Optional[torch.Tensor]:
        if not self.bias:
            return None
        return self._w("bias_ih", layer) + self._w("bias_hh", layer)

    def _gate_steps(self, device) -> Tuple[torch.Tensor, List[LUT]]:
        """The LUT input step of every gate row (i, f, g, o) and the gates' LUTs."""
        p, H = self.profile, self.hidden_size
        luts = [p.sigmoid, p.sigmoid, p.tanh, p.sigmoid]
        steps = torch.cat([torch.full((H,), lut.step, dtype=torch.float64) for lut in luts])
        return steps.to(device), luts

    def _scales(self, layer: int):
        p = self.profile
        obs = self.obs[layer]
        for k in ("x", "c", "h", "m"):
            if k in obs:
                self._require_calibrated(obs[k])
        sx = obs["x"].qparams(p.act_bits, p.act_signedness)
        sh = obs["h"].qparams(p.act_bits, p.act_signedness)
        sc = obs["c"].qparams(p.cell_bits, "signed")
        sm = obs["m"].qparams(p.act_bits, p.act_signedness) if "m" in obs else None
        # where the products would overflow the accumulator, the input ranges widen (headroom)
        sx = (headroom_scale(sx[0], obs["ax"], p), sx[1])
        sh = (headroom_scale(sh[0], obs["ah"], p), sh[1])
        if sm is not None:
            sm = (headroom_scale(sm[0], obs["ar"], p), sm[1])
        return sx, sh, sc, sm

    # -- fake quantization (AAT)
    def _layer_fake(self, layer: int, x, h, c):
        p = self.profile
        (s_x, sx_sg), (s_h, sh_sg), (s_c, _), sm = self._scales(layer)
        w_ih, w_hh, w_hr = self._w("weight_ih", layer), self._w("weight_hh", layer), self._w("weight_hr", layer)
        b = self._bias(layer)
        steps, _ = self._gate_steps(x.device)
        steps = steps.float()
        s_wi, s_wh = self._weight_scale(w_ih, p.weight_bits), self._weight_scale(w_hh, p.weight_bits)
        wi = fake_quant(w_ih, s_wi, p.weight_bits, True, axis=0)
        wh = fake_quant(w_hh, s_wh, p.weight_bits, True, axis=0)
        sig_codes, qs = lut_codes("sigmoid", p.sigmoid)
        tanh_codes, qt = lut_codes("tanh", p.tanh)
        sig_vals, tanh_vals = sig_codes.float() / qs, tanh_codes.float() / qt
        acc_x = F.linear(fake_quant(x, s_x, p.act_bits, sx_sg), wi,
                         fake_quant(b, s_x * s_wi, p.acc_bits) if b is not None else None)
        kx = round_ste(fake_accumulate(acc_x, s_x * s_wi, p.acc_bits, p.acc_saturate) / steps)
        if w_hr is not None:
            s_m, sm_sg = sm
            s_wr = self._weight_scale(w_hr, p.weight_bits)
            wr = fake_quant(w_hr, s_wr, p.weight_bits, True, axis=0)
        cmin, cmax = qrange(p.cell_bits, True)
        H = self.hidden_size
        h = fake_quant(h, s_h, p.act_bits, sh_sg)
        c = fake_quant(c, s_c, p.cell_bits)
        outs = []
        for t in range(x.size(1)):
            acc_h = fake_accumulate(F.linear(h, wh), s_h * s_wh, p.acc_bits, p.acc_saturate)
            k = kx[:, t] + round_ste(acc_h / steps)
            i = lut_fake(k[:, :H], "sigmoid", p.sigmoid, sig_vals)
            f = lut_fake(k[:, H:2 * H], "sigmoid", p.sigmoid, sig_vals)
            g = lut_fake(k[:, 2 * H:3 * H], "tanh", p.tanh, tanh_vals)
            o = lut_fake(k[:, 3 * H:], "sigmoid", p.sigmoid, sig_vals)
            c = torch.clamp(round_ste(f * c / s_c) + round_ste(i * g / s_c), cmin, cmax) * s_c
            th = lut_fake(round_ste(c / p.tanh.step), "tanh", p.tanh, tanh_vals)
            m = o * th
            if w_hr is None:
                h = fake_quant(m, s_h, p.act_bits, sh_sg)
            else:
                mq = fake_quant(m, s_m, p.act_bits, sm_sg)
                acc_r = fake_accumulate(F.linear(mq, wr), s_m * s_wr, p.acc_bits, p.acc_saturate)
                h = fake_quant(acc_r, s_h, p.act_bits, sh_sg)
            outs.append(h)
        return torch.stack(outs, 1), h, c

    # -- the integer path
    def _int_consts(self, layer: int) -> Dict:
        p = self.profile
        (s_x, sx_sg), (s_h, sh_sg), (s_c, _), sm = self._scales(layer)
        w_ih, w_hh, w_hr = (self._w(k, layer) for k in ("weight_ih", "weight_hh", "weight_hr"))
        b = self._bias(layer)
        dev = w_ih.device
        where = f"{self.nna_name} layer {layer}"
        steps, _ = self._gate_steps(dev)
        s_wi, s_wh = self._weight_scale(w_ih.detach(), p.weight_bits), self._weight_scale(w_hh.detach(), p.weight_bits)
        sig, qs = lut_codes("sigmoid", p.sigmoid)
        tnh, qt = lut_codes("tanh", p.tanh)
        acc_scale = s_x * s_wi.double()
        c = dict(s_x=s_x, sx_sg=sx_sg, s_h=s_h, sh_sg=sh_sg, s_c=s_c, sig=sig.to(dev), tanh=tnh.to(dev),
                 wi=quantize(w_ih.detach(), s_wi, p.weight_bits, True, axis=0).double(),
                 wh=quantize(w_hh.detach(), s_wh, p.weight_bits, True, axis=0).double(), bq=None)
        if b is not None:
            c["bq"] = torch.clamp(round_half_away(b.detach().double() / acc_scale),
                                  *qrange(p.acc_bits, True)).to(torch.int64)
        _exact_check(max(w_ih.size(1), w_hh.size(1)), p.act_bits, p.weight_bits, p.acc_bits, where)
        c["mx"], c["nx"] = (t.to(dev) for t in multipliers((acc_scale / steps).tolist(), p.multiplier_bits, where))
        c["mh"], c["nh"] = (t.to(dev) for t in multipliers((s_h * s_wh.double() / steps).tolist(),
                                                            p.multiplier_bits, where))
        c["fc"] = _multiplier(1.0 / qs, p.multiplier_bits, where)
        c["ig"] = _multiplier(1.0 / (qs * qt * s_c), p.multiplier_bits, where)
        c["ct"] = _multiplier(s_c / p.tanh.step, p.multiplier_bits, where)
        if w_hr is None:
            c["oh"] = _multiplier(1.0 / (qs * qt * s_h), p.multiplier_bits, where)
        else:
            s_m, sm_sg = sm
            s_wr = self._weight_scale(w_hr.detach(), p.weight_bits)
            c.update(s_m=s_m, sm_sg=sm_sg, wr=quantize(w_hr.detach(), s_wr, p.weight_bits, True, axis=0).double())
            c["om"] = _multiplier(1.0 / (qs * qt * s_m), p.multiplier_bits, where)
            c["mr"], c["nr"] = (t.to(dev) for t in multipliers((s_m * s_wr.double() / s_h).tolist(),
                                                                p.multiplier_bits, where))
            _exact_check(w_hr.size(1), p.act_bits, p.weight_bits, 0, where)
        return c

    @torch.no_grad()
    def _layer_int(self, layer: int, x, h, c):
        p = self.profile
        k = self._cached(lambda: {i: self._int_consts(i) for i in range(self.num_layers)})[layer]
        H = self.hidden_size
        acc = lambda a: accumulate(a.round().to(torch.int64), p.acc_bits, p.acc_saturate)  # noqa: E731
        xq = quantize(x, k["s_x"], p.act_bits, k["sx_sg"])
        acc_x = acc(F.linear(xq.double(), k["wi"]) + (k["bq"].double() if k["bq"] is not None else 0.0))
        kx = requantize(acc_x, k["mx"], k["nx"])
        hq = quantize(h, k["s_h"], p.act_bits, k["sh_sg"])
        cq = quantize(c, k["s_c"], p.cell_bits)
        cmin, cmax = qrange(p.cell_bits, True)
        hmin, hmax = qrange(p.act_bits, k["sh_sg"])
        outs = []
        for t in range(x.size(1)):
            kk = kx[:, t] + requantize(acc(F.linear(hq.double(), k["wh"])), k["mh"], k["nh"])
            i = k["sig"][lut_index(kk[:, :H], p.sigmoid)]
            f = k["sig"][lut_index(kk[:, H:2 * H], p.sigmoid)]
            g = k["tanh"][lut_index(kk[:, 2 * H:3 * H], p.tanh)]
            o = k["sig"][lut_index(kk[:, 3 * H:], p.sigmoid)]
            cq = torch.clamp(requantize(f * cq, *k["fc"]) + requantize(i * g, *k["ig"]), cmin, cmax)
            th = k["tanh"][lut_index(requantize(cq, *k["ct"]), p.tanh)]
            if "wr" not in k:
                hq = torch.clamp(requantize(o * th, *k["oh"]), hmin, hmax)
            else:
                mq = torch.clamp(requantize(o * th, *k["om"]), *qrange(p.act_bits, k["sm_sg"]))
                hq = torch.clamp(requantize(acc(F.linear(mq.double(), k["wr"])), k["mr"], k["nr"]), hmin, hmax)
            outs.append(hq)
        out = torch.stack(outs, 1).to(torch.float32) * k["s_h"]
        return out, hq.to(torch.float32) * k["s_h"], cq.to(torch.float32) * k["s_c"]


# --------------------------------------------------------------------- converting a model
_SWAPS = (  # (float module type, profile kind, emulating class); exact types, first match wins
    (nn.Linear, "linear", NNALinear),
    (nn.Conv1d, "conv", NNAConv1d),
    (nn.Conv2d, "conv", NNAConv2d),
    (nn.LSTM, "lstm", NNALSTM),
    (nn.Embedding, "embedding", NNAEmbedding),
    (nn.LayerNorm, "layernorm", NNALayerNorm),
    (nn.Tanh, "tanh", NNALUT),
    (nn.Sigmoid, "sigmoid", NNALUT),
)
DEPLOYED = ("encoder", "decoder", "joiner", "ctc_head")


def _swap(parent: nn.Module, profile: NNAProfile, prefix: str, counts: Dict[str, int]) -> None:
    for name, child in list(parent.named_children()):
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, NNAModule):
            raise UserError(f"{full} is already converted for the NNA (profile {child.profile.name})")
        if isinstance(child, nn.MultiheadAttention):
            continue  # attention has no integer implementation: it stays on the CPU as a whole
        for typ, kind, cls in _SWAPS:
            if type(child) is typ:
                if profile.on_nna(kind):
                    dev = next(child.parameters(), torch.empty(0)).device
                    setattr(parent, name, cls.from_float(child, profile, full).to(dev))
                    counts[kind] = counts.get(kind, 0) + 1
                break
        else:
            _swap(child, profile, full, counts)


def convert(model: nn.Module, profile: NNAProfile, parts: Sequence[str] = DEPLOYED) -> Dict[str, int]:
    """Replace, in place, the operators of ``model``'s ``parts`` that ``profile`` places on the
    NNA by their emulation (mode ``float`` until :func:`set_mode`). Returns the number of
    converted modules per kind. The profile is kept as ``model.nna_profile``."""
    if getattr(model, "nna_profile", None) is not None:
        raise UserError(f"the model is already converted for the NNA profile {model.nna_profile.name}")
    counts: Dict[str, int] = {}
    for part in parts:
        _swap(getattr(model, part), profile, part, counts)
    model.nna_profile = profile
    return counts


def emulated_modules(model: nn.Module) -> List[Tuple[str, NNAModule]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NNAModule)]


def set_mode(model: nn.Module, mode: str) -> None:
    """Switch every emulated module to ``mode`` (float, calibrate, fake, int)."""
    if mode not in MODES:
        raise ValueError(f"unknown NNA mode {mode!r} (one of {', '.join(MODES)})")
    for _, m in emulated_modules(model):
        m.nna_mode = mode


def observers(model: nn.Module) -> List[Tuple[str, RangeObserver]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, RangeObserver)]


def freeze_ranges(model: nn.Module) -> List[str]:
    """End calibration: the observers keep their ranges from now on. Returns the names of
    observers that never saw data (their modules refuse fake/int mode)."""
    missing = []
    for name, o in observers(model):
        o.frozen.fill_(True)
        if not o.calibrated:
            missing.append(name)
    if missing:
        log.warning("NNA calibration: %d activation ranges never observed, e.g. %s", len(missing), missing[0])
    return missing


def ranges_frozen(model: nn.Module) -> bool:
    obs = observers(model)
    return bool(obs) and all(bool(o.frozen) for _, o in obs)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Tuple[torch.Tensor, torch.Tensor, List[List[int]]]]) -> int:
    """Post-training calibration: run ``(feats, feat_lens, token_ids)`` batches through every
    deployed part (encoder, prediction network on the reference tokens, joiner over each
    utterance's (t, u) grid, CTC head) with the observers recording, then freeze the ranges.
    Returns the number of utterances seen."""
    from sltk.asr.model import pad_targets

    was_training = model.training
    model.eval()
    set_mode(model, "calibrate")
    n = 0
    for feats, lens, ys in batches:
        dev = model.feat_mean.device
        enc, enc_lens = model.encode(feats.to(dev), lens.to(dev))
        y, y_lens = pad_targets(ys, pad=model.blank_id, device=dev)
        dec = model.decoder(y)
        enc_p, dec_p = model.joiner.encoder_proj(enc), model.joiner.decoder_proj(dec)
        for i in range(enc.size(0)):
            model.joiner(enc_p[i, : int(enc_lens[i]), None], dec_p[i, None, : int(y_lens[i]) + 1],
                         project_input=False)
        model.ctc_head(enc)
        n += enc.size(0)
    if n == 0:
        raise UserError("NNA calibration: no utterances to calibrate on")
    freeze_ranges(model)
    model.train(was_training)
    return n


# ------------------------------------------------------------------ checkpoint transform
def apply_transform(model: nn.Module, meta: Dict) -> None:
    """The ``nna`` checkpoint transform: convert per the recorded profile, in the recorded mode
    (the observers' ranges come with the weights)."""
    profile = profile_from_meta(meta, "checkpoint")
    convert(model, profile)
    set_mode(model, meta.get("mode", "fake"))


def transform_meta(profile: NNAProfile, mode: str = "fake", source: str = "") -> Dict:
    return {"profile": profile.to_dict(), "mode": mode, "source": source}


def _register() -> None:
    from sltk.asr.checkpoint import register_transform

    register_transform("nna", apply_transform)


_register()
