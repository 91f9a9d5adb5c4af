"""General Quantizer (GQ): sub-8-bit quantization-aware training with self-adjustable centroids.

Each quantized weight tensor ``w`` gets its own codebook of ``K = 2^b`` centroids laid out in a
mu-law constrained space (dense near zero, where most weights are)::

    c_j = a * F^-1(u_j),   u_j = -1 + 2j / (K - 1),  j = 0..K-1,
    F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu)                      (the mu-law compander)

with the scale ``a`` (and optionally ``mu``) learned along with the weights. In training every
weight is replaced by a soft mixture of the centroids::

    w_hat = sum_j p_j c_j,   p = softmax_j(-d(w, c_j) / tau),   d(w, c) = |w - c| / delta

where ``delta = (c_max - c_min) / (K - 1)`` is the mean centroid spacing, so that ``tau`` is in
units of centroid spacings and one schedule (:class:`TauSchedule`) serves every bit width and
every weight scale. ``tau`` is annealed to 0; from then on the forward pass is hard (``w_hat``
is the nearest centroid, with a straight-through gradient to ``w``), and the trained model is
exactly a codebook model: each tensor holds at most ``2^b`` distinct values, all of them its
codebook's. There is no regularizer in the loss: the annealing alone drives the weights to the
centroids.

The soft assignment costs ``numel * K`` values per tensor; :class:`_SoftAssign` computes it in
chunks of weights and recomputes them in the backward pass instead of keeping them, so the
memory it needs is one chunk, whatever the tensor size and bit width.

Training goes through :class:`GQHook` (a :class:`sltk.asr.train.TrainHook`): it attaches a
:class:`GeneralQuantizer` to each weight the :class:`~sltk.nna.qparam.BitAllocation` quantizes,
anneals tau in ``on_step`` and records the allocation in the checkpoints, from which
:func:`apply_meta` (registered as checkpoint transform ``"gq"``) rebuilds the quantized model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from sltk.asr.checkpoint import register_transform
from sltk.asr.train import TrainHook
from sltk.nna.qparam import BitAllocation, Bits, attach, quantizers
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

MU_MIN = 1e-4          # mu -> 0 is the uniform grid; below this the two are the same in float32
MU_GRID = (1e-3, 1.0, 3.0, 10.0, 30.0, 100.0)  # candidates of mu="auto"
SCALE_GRID = 32        # candidates of the scale a, from 2% to 100% of max|w|
INIT_SAMPLE = 1 << 16  # weights looked at by the initial search


# ------------------------------------------------------------------------------- mu-law
def mulaw(x: torch.Tensor, mu) -> torch.Tensor:
    """The mu-law compander F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu), [-1, 1] -> [-1, 1]."""
    mu = torch.as_tensor(mu, dtype=x.dtype, device=x.device).clamp(min=MU_MIN)
    return torch.sign(x) * torch.log1p(mu * x.abs()) / torch.log1p(mu)


def inv_mulaw(y: torch.Tensor, mu) -> torch.Tensor:
    """The expander F^-1(y) = sign(y) ((1 + mu)^|y| - 1) / mu, the inverse of :func:`mulaw`."""
    mu = torch.as_tensor(mu, dtype=y.dtype, device=y.device).clamp(min=MU_MIN)
    return torch.sign(y) * torch.expm1(y.abs() * torch.log1p(mu)) / mu


def uniform_grid(bits: int, device=None) -> torch.Tensor:
    """u_j = -1 + 2j / (K - 1), the K = 2^bits points spread uniformly over [-1, 1]."""
    return torch.linspace(-1.0, 1.0, 2 ** bits, device=device)


def codebook(scale, mu, bits: int) -> torch.Tensor:
    """The K centroids a * F^-1(u_j), ascending."""
    scale = torch.as_tensor(scale, dtype=torch.float32)
    return scale * inv_mulaw(uniform_grid(bits, scale.device), mu)


# ------------------------------------------------------------------------------- assignment
def hard_assign(w: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of every element of ``w`` (centroids ascending); a weight
    exactly halfway between two goes to the lower one."""
    mid = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(w.detach(), mid.detach())


class _SoftAssign(torch.autograd.Function):
    """out_i = sum_j p_ij c_j with p_i = softmax(-|w_i - c_j| * inv_t), in chunks of weights.

    Backward, per chunk (recomputing p), with g the incoming gradient and
    dz_ij = g_i p_ij (c_j - out_i) the gradient of the logits z_ij = -|w_i - c_j| inv_t:
    dw_i = -inv_t sum_j dz_ij sign(w_i - c_j),
    dc_j = sum_i g_i p_ij + inv_t sum_i dz_ij sign(w_i - c_j).
    ``inv_t`` is a constant (no gradient)."""

    @staticmethod
    @torch.cuda.amp.custom_fwd(cast_inputs=torch.float32)
    def forward(ctx, w, c, inv_t: float, chunk: int):  # type: ignore[override]
        out = torch.empty_like(w)
        for s in range(0, w.numel(), chunk):
            p = torch.softmax((w[s:s + chunk, None] - c).abs() * -inv_t, dim=1)
            out[s:s + chunk] = (p * c).sum(1)
        ctx.save_for_backward(w, c, out)
        ctx.inv_t, ctx.chunk = inv_t, chunk
        return out

    @staticmethod
    @torch.cuda.amp.custom_bwd
    def backward(ctx, g):  # type: ignore[override]
        w, c, out = ctx.saved_tensors
        inv_t, chunk = ctx.inv_t, ctx.chunk
        gw = torch.empty_like(w)
        gc = torch.zeros_like(c)
        for s in range(0, w.numel(), chunk):
            diff = w[s:s + chunk, None] - c
            p = torch.softmax(diff.abs() * -inv_t, dim=1)
            gp = g[s:s + chunk, None] * p
            gz_sign = gp * (c - out[s:s + chunk, None]) * torch.sign(diff)
            gw[s:s + chunk] = gz_sign.sum(1) * -inv_t
            gc += gp.sum(0) + gz_sign.sum(0) * inv_t
        return gw, gc, None, None


def soft_assign(w: torch.Tensor, centroids: torch.Tensor, tau: float, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """The soft quantization of ``w`` at temperature ``tau`` (in units of the mean centroid
    spacing); ``chunk_elems`` bounds the weights x centroids values held at once."""
    k = centroids.numel()
    spacing = float((centroids[-1] - centroids[0]).detach()) / max(1, k - 1)
    inv_t = 1.0 / max(spacing * tau, 1e-30)
    chunk = max(1, chunk_elems // k)
    flat = _SoftAssign.apply(w.reshape(-1), centroids, inv_t, chunk)
    return flat.reshape(w.shape)


# ------------------------------------------------------------------------------- quantizer
class GeneralQuantizer(nn.Module):
    """The GQ quantizer of one weight tensor: ``forward(w)`` is soft at ``tau > 0`` and hard at
    ``tau == 0`` (the default, and what a loaded checkpoint decodes with).

    Parameters: ``log_scale`` (a = exp(log_scale)) and ``log_mu`` (a parameter with
    ``learn_mu``, else a buffer; either way saved, as the initial search picks it per tensor)."""

    def __init__(self, bits: int, mu: float = 10.0, learn_mu: bool = False, chunk_elems: int = 1 << 22):
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"GQ bits must be in 1..8, got {bits}")
        self.bits = bits
        self.learn_mu = learn_mu
        self.chunk_elems = chunk_elems
        self.tau = 0.0
        self.register_buffer("grid", uniform_grid(bits), persistent=False)
        self.log_scale = nn.Parameter(torch.zeros(()))
        log_mu = torch.tensor(math.log(max(mu, MU_MIN)))
        if learn_mu:
            self.log_mu = nn.Parameter(log_mu)
        else:
            self.register_buffer("log_mu", log_mu)

    @property
    def num_centroids(self) -> int:
        return 2 ** self.bits

    def centroids(self) -> torch.Tensor:
        """The codebook (K,), ascending, differentiable w.r.t. the scale (and mu)."""
        return self.log_scale.exp() * inv_mulaw(self.grid, self.log_mu.exp())

    def assign(self, w: torch.Tensor) -> torch.Tensor:
        """Hard codes (int64, shape of ``w``): the index of each weight's nearest centroid."""
        return hard_assign(w, self.centroids())

    @torch.no_grad()
    def init_from(self, w: torch.Tensor, mu: Union[float, str] = "auto") -> float:
        """Pick the scale (and, with ``mu="auto"``, mu) that minimise the hard quantization
        error of ``w``; returns the relative RMS error."""
        flat = w.detach().reshape(-1).float()
        if flat.numel() > INIT_SAMPLE:  # a strided sample: deterministic, spans the whole tensor
            flat = flat[:: flat.numel() // INIT_SAMPLE]
        wmax = float(flat.abs().max())
        if wmax == 0.0:
            self.log_scale.fill_(math.log(1e-8))
            return 0.0
        mus = MU_GRID if mu == "auto" else (float(mu),)
        best = (math.inf, 1.0, mus[0])
        for m in mus:
            for frac in torch.logspace(math.log10(0.02), 0.0, SCALE_GRID).tolist():
                c = codebook(frac * wmax, m, self.bits).to(flat.device)
                err = float(((flat - c[hard_assign(flat, c)]) ** 2).sum())
                if err < best[0]:
                    best = (err, frac * wmax, m)
        self.log_scale.fill_(math.log(best[1]))
        self.log_mu.fill_(math.log(max(best[2], MU_MIN)))
        return math.sqrt(best[0] / max(1e-30, float((flat ** 2).sum())))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        c = self.centroids()
        if self.tau <= 0:
            q = c[self.assign(w)]
            # straight-through to w (the hard value exactly, since w - w.detach() == 0)
            return q + (w - w.detach()) if w.requires_grad else q
        return soft_assign(w, c, self.tau, self.chunk_elems)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, learn_mu={self.learn_mu}, tau={self.tau:g}"


# ------------------------------------------------------------------------------- schedule
@dataclass
class TauSchedule:
    """Temperature per training step (1-based): ``tau0`` for ``start`` steps, then annealed over
    ``steps`` steps (``exp``: geometric from tau0 to tau_min; ``linear`` and ``cosine``: to 0),
    then 0, i.e. hard, for every later step. ``steps == 0``: hard from the first step."""

    tau0: float = 0.5
    start: int = 0
    steps: int = 1000
    shape: str = "exp"
    tau_min: float = 0.01

    SHAPES = ("exp", "linear", "cosine")

    def __post_init__(self):
        if self.shape not in self.SHAPES:
            raise UserError(f"tau schedule: shape must be one of {', '.join(self.SHAPES)}, got {self.shape!r}")
        if self.tau0 <= 0 or self.tau_min <= 0 or self.start < 0 or self.steps < 0:
            raise UserError("tau schedule: tau0 and tau_min must be > 0, start and steps >= 0")

    @property
    def hard_from(self) -> int:
        """The first hard step."""
        return self.start + self.steps + 1

    def __call__(self, step: int) -> float:
        if step >= self.hard_from:
            return 0.0
        t = max(0, step - 1 - self.start) / max(1, self.steps)  # 0 .. (steps-1)/steps
        if self.shape == "exp":
            return self.tau0 * (self.tau_min / self.tau0) ** t
        if self.shape == "linear":
            return self.tau0 * (1.0 - t)
        return self.tau0 * 0.5 * (1.0 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------- model level
def gq_quantizers(model: nn.Module):
    return [(n, q) for n, _, q in quantizers(model) if isinstance(q, GeneralQuantizer)]


def set_tau(model: nn.Module, tau: float) -> None:
    for _, q in gq_quantizers(model):
        q.tau = tau


def apply_gq(model: nn.Module, bits: Dict[str, Bits], mu: Union[float, str] = "auto",
             learn_mu: bool = False, init: bool = True, chunk_elems: int = 1 << 22) -> Dict[str, float]:
    """Attach a :class:`GeneralQuantizer` to every weight with a bit width in ``bits``
    (``None``: left in float). With ``init``, each codebook is fitted to its float weight;
    returns the relative RMS error of each at the start (empty without ``init``)."""
    errors = {}
    params = dict(model.named_parameters())
    for name, b in bits.items():
        if b is None:
            continue
        w = params[name]
        q = GeneralQuantizer(b, mu=10.0 if mu == "auto" else float(mu), learn_mu=learn_mu,
                             chunk_elems=chunk_elems).to(w.device)
        if init:
            errors[name] = q.init_from(w, mu)
        attach(model, name, q)
    return errors


def apply_meta(model: nn.Module, meta: Dict) -> None:
    """Checkpoint transform ``"gq"``: rebuild the quantizers a checkpoint was trained with
    (hard, tau = 0) so that its state dict loads; the codebooks come with the weights."""
    apply_gq(model, {k: v for k, v in meta["bits"].items()}, learn_mu=bool(meta.get("learn_mu")), init=False)


register_transform("gq", apply_meta)


class GQHook(TrainHook):
    """Fine-tune with GQ: quantizers attached in ``on_model`` (codebooks fitted to the initial
    float weights), tau set by ``schedule`` before every step."""

    name = "gq"

    def __init__(self, allocation: BitAllocation, schedule: Optional[TauSchedule] = None,
                 mu: Union[float, str] = "auto", learn_mu: bool = False, chunk_elems: int = 1 << 22):
        self.allocation = allocation
        self.schedule = schedule or TauSchedule()
        self.mu = mu
        self.learn_mu = learn_mu
        self.chunk_elems = chunk_elems
        self.bits: Dict[str, Bits] = {}
        self._hard_logged = False

    def on_model(self, model: nn.Module) -> None:
        self.bits = self.allocation.for_model(model)
        errors = apply_gq(model, self.bits, self.mu, self.learn_mu, chunk_elems=self.chunk_elems)
        if errors:
            worst = max(errors, key=errors.get)
            log.info("GQ: %d weights quantized, %d left in float; initial relative RMS error %.3f on "
                     "average, worst %.3f (%s)", len(errors), len(self.bits) - len(errors),
                     sum(errors.values()) / len(errors), errors[worst], worst)
        set_tau(model, self.schedule(1))

    def on_step(self, step: int, model: nn.Module) -> None:
        tau = self.schedule(step)
        set_tau(model, tau)
        if tau == 0.0 and not self._hard_logged:
            log.info("GQ: step %d: tau annealed to 0, training on hard centroids from here", step)
            self._hard_logged = True

    def checkpoint_meta(self) -> Dict:
        return {"bits": dict(self.bits), "allocation": self.allocation.to_dict(), "learn_mu": self.learn_mu,
                "mu_init": self.mu, "schedule": asdict(self.schedule)}


def distinct_values(model: nn.Module) -> Dict[str, Sequence[int]]:
    """Per GQ-quantized weight: (number of distinct values of the quantized tensor, 2^bits)."""
    out = {}
    with torch.no_grad():
        for name, module, q in quantizers(model):
            if isinstance(q, GeneralQuantizer):
                w = getattr(module, name.rpartition(".")[2])
                out[name] = (int(torch.unique(w).numel()), q.num_centroids)
    return out
