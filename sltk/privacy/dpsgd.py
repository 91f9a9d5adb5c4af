"""DP-SGD (Abadi et al. 2016): per-example gradient clipping plus Gaussian noise, for torch models.

One step on a batch drawn by Poisson sampling (each example independently with rate q):

    g = (sum_i clip(g_i, C) + N(0, (sigma C)^2 I)) / L,   clip(g, C) = g min(1, C / ||g||)

with L the expected batch size q N (dividing by a fixed L keeps the noise calibrated to the
sum's sensitivity C under add/remove-one neighbours). Its privacy is the sampled Gaussian
mechanism's: :class:`sltk.privacy.accountant.DPSGDAccountant` (``step(q, sigma)`` per step).

* :func:`clip_and_noise` is the functional core, for per-example gradients computed any way
  (stacked ``(B, *param.shape)`` tensors, e.g. from hooks or a vectorised model).
* :func:`per_example_grads` gets them without ``torch.func`` (absent in torch 1.13): a backward
  pass per example (micro-batches of one), so it works with any model, slowly. Models with batch
  statistics (BatchNorm in training mode) mix examples and void the per-example bound.
* :class:`DPSGD` ties sampling, the noisy gradient, an optimizer and the accountant together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence

import torch

from sltk.privacy.accountant import DPSGDAccountant


def poisson_batch(n: int, q: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Indices of a Poisson-sampled batch: each of ``n`` examples kept with probability ``q``
    (the sampling the accountant assumes; the batch may be empty)."""
    return torch.nonzero(torch.rand(n, generator=generator) < q, as_tuple=False).flatten()


def per_example_grads(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
                      examples: Iterable, params: Optional[Sequence[torch.nn.Parameter]] = None) -> List[torch.Tensor]:
    """Per-example gradients by micro-batches of one: ``loss_fn(model, example)`` -> a scalar
    loss per example. Returns one ``(B, *p.shape)`` tensor per parameter (zeros where a
    parameter gets no gradient). ``.grad`` of the parameters is left cleared."""
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    rows: List[List[torch.Tensor]] = [[] for _ in params]
    for ex in examples:
        for p in params:
            p.grad = None
        loss = loss_fn(model, ex)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar per example, got shape {tuple(loss.shape)}")
        loss.backward()
        for r, p in zip(rows, params):
            r.append(p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
    for p in params:
        p.grad = None
    return [torch.stack(r) if r else torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            for r, p in zip(rows, params)]


@dataclass
class StepStats:
    batch_size: int
    clipped: int            # examples whose gradient norm exceeded max_norm
    mean_norm: float        # mean per-example gradient norm before clipping


def clip_and_noise(per_example: Sequence[torch.Tensor], max_norm: float, noise_multiplier: float,
                   denominator: float, generator: Optional[torch.Generator] = None):
    """The DP-SGD gradient from per-example gradients ``(B, *shape)`` (one tensor per parameter):
    each example's whole gradient clipped to L2 norm ``max_norm``, summed, N(0, (noise_multiplier
    max_norm)^2) added to every coordinate, divided by ``denominator`` (the expected batch size).
    Returns (list of gradients, :class:`StepStats`)."""
    if max_norm <= 0 or noise_multiplier < 0 or denominator <= 0:
        raise ValueError("need max_norm > 0, noise_multiplier >= 0, denominator > 0")
    B = per_example[0].shape[0] if per_example else 0
    if B:
        norms = torch.sqrt(sum(g.reshape(B, -1).pow(2).sum(1) for g in per_example))
        factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        stats = StepStats(B, int((norms > max_norm).sum()), float(norms.mean()))
    else:
        factor = None
        stats = StepStats(0, 0, 0.0)
    out = []
    for g in per_example:
        s = (g * factor.view(-1, *([1] * (g.dim() - 1)))).sum(0) if B else torch.zeros(g.shape[1:], dtype=g.dtype,
                                                                                       device=g.device)
        if noise_multiplier > 0:
            noise = torch.normal(0.0, noise_multiplier * max_norm, size=s.shape, generator=generator,
                                 device=generator.device if generator is not None else s.device)
            s = s + noise.to(s.device, s.dtype)
        out.append(s / denominator)
    return out, stats


class DPSGD:
    """DP-SGD training steps with accounting.

    Usage::

        dp = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.1), sample_rate=256 / len(data),
                   noise_multiplier=1.1, max_norm=1.0, seed=0)
        for step in range(steps):
            idx = dp.sample(len(data))
            dp.step([data[i] for i in idx], loss_fn)     # loss_fn(model, example) -> scalar
        eps, order = dp.epsilon(delta=1e-5)
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sample_rate: float,
                 noise_multiplier: float, max_norm: float, seed: Optional[int] = None, orders=None):
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.model, self.optimizer = model, optimizer
        self.q, self.sigma, self.C = sample_rate, noise_multiplier, max_norm
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)
        self.accountant = DPSGDAccountant(orders)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def sample(self, n: int) -> torch.Tensor:
        """A Poisson batch of indices out of ``n`` examples (rate ``sample_rate``)."""
        return poisson_batch(n, self.q, self.generator)

    def step(self, examples: Sequence, loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
             num_examples: Optional[int] = None) -> StepStats:
        """One noisy step on a batch; the divisor is the expected batch size q * ``num_examples``
        (or the batch size when not given)."""
        grads = per_example_grads(self.model, loss_fn, examples, self.params)
        denom = self.q * num_examples if num_examples else max(1, len(examples))
        noisy, stats = clip_and_noise(grads, self.C, self.sigma, denom, self.generator)
        for p, g in zip(self.params, noisy):
            p.grad = g.to(p.device, p.dtype)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.accountant.step(self.q, self.sigma)
        return stats

    def epsilon(self, delta: float, conversion: str = "classic"):
        """(eps, order) spent so far."""
        return self.accountant.epsilon(delta, conversion)


__all__ = ["DPSGD", "StepStats", "clip_and_noise", "per_example_grads", "poisson_batch"]
