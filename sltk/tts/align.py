"""Forced alignment without hand labels: monotonic alignment search (MAS) over per-phoneme
Gaussian likelihoods, trained by flat-start Viterbi re-estimation (segmental k-means).

:func:`mas` finds the monotonic alignment of N tokens to T >= N frames (every token at
least one frame, in order, the first frame to the first token and the last to the last)
that maximises the summed log-likelihood, so the durations it returns always sum to T.

:class:`GaussianAligner` models each phoneme (the pause tokens share one ``sil`` model) by a
diagonal Gaussian over the mel-cepstra of :mod:`sltk.tts.features` (the first
``num_ceps`` DCT coefficients of the log mel, utterance mean removed). Training starts
from a uniform segmentation of each utterance and alternates MAS with re-estimating the
Gaussians from the aligned frames. It is stored as a small dict (``to_dict``), and can be
kept inside other checkpoints.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence

import numpy as np
import torch

from sltk.audio.features import dct_matrix
from sltk.tts.phonemize import PAUSES

log = logging.getLogger("sltk")

VAR_FLOOR = 1e-2


def mas(logp: np.ndarray) -> np.ndarray:
    """Durations (N,) of the best monotonic alignment of ``logp`` (N tokens, T frames), T >= N."""
    logp = np.asarray(logp, dtype=np.float64)
    N, T = logp.shape
    if T < N:
        raise ValueError(f"cannot align {N} tokens to {T} frames (fewer frames than tokens)")
    neg = -np.inf
    score = np.full(N, neg)
    score[0] = logp[0, 0]
    came_from_prev = np.zeros((T, N), dtype=bool)  # token n at frame t entered from n-1 at t-1
    for t in range(1, T):
        stay = score
        move = np.concatenate([[neg], score[:-1]])
        came_from_prev[t] = move > stay
        score = np.maximum(stay, move) + logp[:, t]
        # token n cannot be reached before frame n, nor leave room too late: -inf handles it
    if not np.isfinite(score[N - 1]):
        raise ValueError("no monotonic alignment")
    dur = np.zeros(N, dtype=np.int64)
    n = N - 1
    for t in range(T - 1, -1, -1):
        dur[n] += 1
        if t > 0 and came_from_prev[t, n]:
            n -= 1
    assert n == 0 and dur.sum() == T
    return dur


def uniform_durations(n: int, t: int) -> np.ndarray:
    """``t`` frames split over ``n`` tokens as evenly as possible (sums to ``t``)."""
    edges = np.round(np.linspace(0, t, n + 1)).astype(np.int64)
    return np.diff(edges)


def align_key(phone: str) -> str:
    return "sil" if phone in PAUSES else phone


class GaussianAligner:
    def __init__(self, num_mels: int = 80, num_ceps: int = 20):
        self.num_mels, self.num_ceps = num_mels, num_ceps
        self.dct = dct_matrix(num_ceps, num_mels).numpy().astype(np.float64)
        self.means: Dict[str, np.ndarray] = {}
        self.vars: Dict[str, np.ndarray] = {}
        self.global_mean = np.zeros(num_ceps)
        self.global_var = np.ones(num_ceps)

    # ------------------------------------------------------------------ features
    def ceps(self, mel) -> np.ndarray:
        c = np.asarray(mel, dtype=np.float64) @ self.dct
        return c - c.mean(0, keepdims=True)

    def loglik(self, ceps: np.ndarray, phones: Sequence[str]) -> np.ndarray:
        """(N, T) log-likelihood of each frame under each token's Gaussian."""
        keys = [align_key(p) for p in phones]
        mu = np.stack([self.means.get(k, self.global_mean) for k in keys])
        var = np.stack([self.vars.get(k, self.global_var) for k in keys])
        d = ceps[None, :, :] - mu[:, None, :]
        return -0.5 * ((d * d) / var[:, None, :] + np.log(2 * np.pi * var)[:, None, :]).sum(-1)

    def align(self, mel, phones: Sequence[str]) -> np.ndarray:
        """Durations of ``phones`` in the frames of ``mel`` (they sum to its frame count)."""
        c = self.ceps(mel)
        return mas(self.loglik(c, phones))

    # ------------------------------------------------------------------ training
    def _estimate(self, data: List[tuple], durs: List[np.ndarray]) -> None:
        sums: Dict[str, np.ndarray] = {}
        sq: Dict[str, np.ndarray] = {}
        cnt: Dict[str, int] = {}
        for (c, phones), d in zip(data, durs):
            start = 0
            for p, n in zip(phones, d):
                k = align_key(p)
                seg = c[start:start + n]
                start += n
                sums[k] = sums.get(k, 0) + seg.sum(0)
                sq[k] = sq.get(k, 0) + (seg * seg).sum(0)
                cnt[k] = cnt.get(k, 0) + len(seg)
        allc = np.concatenate([c for c, _ in data])
        self.global_mean, self.global_var = allc.mean(0), np.maximum(allc.var(0), VAR_FLOOR)
        for k in sums:
            if cnt[k] < 2:
                continue
            m = sums[k] / cnt[k]
            self.means[k] = m
            self.vars[k] = np.maximum(sq[k] / cnt[k] - m * m, VAR_FLOOR * self.global_var)

    def train(self, mels: Sequence, phone_seqs: Sequence[Sequence[str]], iterations: int = 8) -> List[float]:
        """Flat start, then ``iterations`` rounds of MAS + re-estimation. Returns the mean
        per-frame log-likelihood after each round."""
        data = [(self.ceps(m), list(p)) for m, p in zip(mels, phone_seqs)]
        durs = [uniform_durations(len(p), len(c)) for c, p in data]
        self._estimate(data, durs)
        history = []
        for it in range(iterations):
            total, frames = 0.0, 0
            durs = []
            for c, p in data:
                ll = self.loglik(c, p)
                d = mas(ll)
                durs.append(d)
                total += float(ll[np.repeat(np.arange(len(p)), d), np.arange(len(c))].sum())
                frames += len(c)
            self._estimate(data, durs)
            history.append(total / max(frames, 1))
            log.info("aligner iteration %d/%d: log-likelihood per frame %.3f", it + 1, iterations, history[-1])
        return history

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        return {"num_mels": self.num_mels, "num_ceps": self.num_ceps,
                "means": {k: v.tolist() for k, v in self.means.items()},
                "vars": {k: v.tolist() for k, v in self.vars.items()},
                "global_mean": self.global_mean.tolist(), "global_var": self.global_var.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "GaussianAligner":
        a = cls(d["num_mels"], d["num_ceps"])
        a.means = {k: np.asarray(v) for k, v in d["means"].items()}
        a.vars = {k: np.asarray(v) for k, v in d["vars"].items()}
        a.global_mean, a.global_var = np.asarray(d["global_mean"]), np.asarray(d["global_var"])
        return a


def durations_to_frames(durations: torch.Tensor) -> torch.Tensor:
    """Token index of every frame: [2, 1, 3] -> [0, 0, 1, 2, 2, 2]."""
    return torch.repeat_interleave(torch.arange(len(durations)), durations)
