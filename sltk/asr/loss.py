"""Transducer and CTC losses with three RNN-T backends.

* ``k2``: k2's pruned RNN-T loss (icefall's recipe): a smoothed "simple" loss on a
  trivial joiner (am + lm) gives the gradients that select, per frame, a window of
  ``prune_range`` symbols; the real joiner runs only inside that window and the pruned
  loss is computed there. Memory O(N T prune_range V) instead of O(N T U V).
* ``torchaudio``: torchaudio's full RNN-T loss on the whole (N, T, U+1, V) lattice.
* ``torch``: a pure-torch full RNN-T loss (forward algorithm over anti-diagonals), the
  reference implementation and the fallback where neither k2 nor torchaudio's loss exist.

All return sums over the batch (not means), so that a trainer can normalise by frames.
"""

from __future__ import annotations

import importlib.util
from typing import Dict, Tuple

import torch
from torch import nn

BACKENDS = ("k2", "torchaudio", "torch")


def k2_available() -> bool:
    if importlib.util.find_spec("k2") is None:
        return False
    try:
        import k2  # noqa: F401  (raises ImportError on a torch mismatch)
        return True
    except Exception:
        return False


def torchaudio_rnnt_available() -> bool:
    try:
        import torchaudio.functional as F
        return hasattr(F, "rnnt_loss")
    except Exception:
        return False


def default_backend() -> str:
    if k2_available():
        return "k2"
    return "torchaudio" if torchaudio_rnnt_available() else "torch"


def rnnt_loss_reference(logits: torch.Tensor, targets: torch.Tensor, logit_lens: torch.Tensor,
                        target_lens: torch.Tensor, blank: int = 0, reduction: str = "sum") -> torch.Tensor:
    """Negative log-likelihood summed over the batch (``reduction="none"``: per sequence, (N,));
    logits (N, T, U+1, V), targets (N, U).

    alpha(t, u) = logaddexp(alpha(t-1, u) + blank(t-1, u), alpha(t, u-1) + emit(t, u-1)),
    loss = -(alpha(T-1, U) + blank(T-1, U)); one anti-diagonal t + u = d at a time, so
    T + U python steps, each vectorised over the batch and the diagonal.
    """
    n, t_max, u1, _ = logits.shape
    logp = logits.float().log_softmax(-1)
    blank_lp = logp[..., blank]  # (N, T, U+1)
    if u1 > 1:
        idx = targets.long().clamp(min=0)[:, None, :, None].expand(n, t_max, u1 - 1, 1)
        emit_lp = logp[:, :, :-1, :].gather(3, idx).squeeze(-1)  # (N, T, U)
    alpha = logits.new_full((n, t_max, u1), float("-inf"), dtype=torch.float32)
    alpha[:, 0, 0] = 0.0
    ninf = torch.tensor(float("-inf"), device=logits.device)
    for d in range(1, t_max + u1 - 1):
        ts = torch.arange(max(0, d - u1 + 1), min(t_max - 1, d) + 1, device=logits.device)
        us = d - ts
        tp = (ts - 1).clamp(min=0)
        up = (us - 1).clamp(min=0)
        from_t = torch.where(ts > 0, alpha[:, tp, us] + blank_lp[:, tp, us], ninf)
        if u1 > 1:
            from_u = torch.where(us > 0, alpha[:, ts, up] + emit_lp[:, ts, up.clamp(max=u1 - 2)], ninf)
        else:
            from_u = torch.full_like(from_t, float("-inf"))
        alpha[:, ts, us] = torch.logaddexp(from_t, from_u)
    tl = logit_lens.long() - 1
    ul = target_lens.long()
    b = torch.arange(n, device=logits.device)
    nll = -(alpha[b, tl, ul] + blank_lp[b, tl, ul])
    return nll if reduction == "none" else nll.sum()


def rnnt_loss_full(logits: torch.Tensor, targets: torch.Tensor, logit_lens: torch.Tensor,
                   target_lens: torch.Tensor, blank: int, backend: str, reduction: str = "sum") -> torch.Tensor:
    """The full RNN-T loss by ``backend``: summed over the batch, or per sequence with
    ``reduction="none"``."""
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    if backend == "torchaudio":
        import torchaudio.functional as F

        return F.rnnt_loss(logits.float(), targets.int(), logit_lens.int(), target_lens.int(),
                           blank=blank, reduction=reduction)
    if backend == "torch":
        return rnnt_loss_reference(logits, targets, logit_lens, target_lens, blank, reduction)
    if backend == "k2":
        import k2

        boundary = _boundary(logit_lens, target_lens)
        return k2.rnnt_loss(logits.float(), targets.long(), termination_symbol=blank, boundary=boundary,
                            reduction=reduction)
    raise ValueError(f"unknown RNN-T loss backend {backend!r}")


def _boundary(enc_lens: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
    b = torch.zeros(enc_lens.size(0), 4, dtype=torch.int64, device=enc_lens.device)
    b[:, 2] = y_lens
    b[:, 3] = enc_lens
    return b


def pruned_rnnt_loss(joiner: nn.Module, simple_am_proj: nn.Module, simple_lm_proj: nn.Module,
                     enc: torch.Tensor, enc_lens: torch.Tensor, dec: torch.Tensor,
                     y: torch.Tensor, y_lens: torch.Tensor, blank: int, prune_range: int,
                     am_scale: float, lm_scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(simple loss, pruned loss), both summed over the batch. ``dec`` is (N, U+1, D)."""
    import k2

    boundary = _boundary(enc_lens, y_lens)
    lm = simple_lm_proj(dec)
    am = simple_am_proj(enc)
    simple, (px_grad, py_grad) = k2.rnnt_loss_smoothed(
        lm=lm.float(), am=am.float(), symbols=y.long(), termination_symbol=blank,
        lm_only_scale=lm_scale, am_only_scale=am_scale, boundary=boundary,
        reduction="sum", return_grad=True)
    ranges = k2.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range)
    am_pruned, lm_pruned = k2.do_rnnt_pruning(am=joiner.encoder_proj(enc), lm=joiner.decoder_proj(dec),
                                              ranges=ranges)
    logits = joiner(am_pruned, lm_pruned, project_input=False)
    pruned = k2.rnnt_loss_pruned(logits=logits.float(), symbols=y.long(), ranges=ranges,
                                 termination_symbol=blank, boundary=boundary, reduction="sum")
    return simple, pruned


def ctc_loss(logprobs: torch.Tensor, lens: torch.Tensor, y: torch.Tensor, y_lens: torch.Tensor,
             blank: int) -> torch.Tensor:
    """CTC on (N, T, V) log-probs, summed over the batch; impossible alignments give 0, not inf."""
    return nn.functional.ctc_loss(logprobs.transpose(0, 1).float(), y, lens, y_lens, blank=blank,
                                  reduction="sum", zero_infinity=True)


def loss_names(backend: str) -> Tuple[str, ...]:
    return ("simple", "pruned") if backend == "k2" else ("rnnt",)


def combine(losses: Dict[str, torch.Tensor], backend: str, step: int, warm_step: int,
            simple_scale: float, ctc_weight: float) -> torch.Tensor:
    """The training objective. With k2, icefall's warm-up: the simple loss weight goes from
    1 to ``simple_scale`` and the pruned loss weight from 0.1 to 1 over ``warm_step`` steps."""
    if backend == "k2":
        frac = min(1.0, step / max(1, warm_step))
        s = 1.0 - frac * (1.0 - simple_scale)
        p = 0.1 + 0.9 * frac
        total = s * losses["simple"] + p * losses["pruned"]
    else:
        total = losses["rnnt"]
    if ctc_weight > 0 and "ctc" in losses:
        total = total + ctc_weight * losses["ctc"]
    return total
