"""Detection metrics: false-reject rate at a fixed false-accept rate, DET curves, and their
breakdown by signal-to-echo-ratio bin (and the clean, no-playback condition)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SER_BINS = ((-10.0, -5.0), (-5.0, 0.0), (0.0, 5.0), (5.0, 10.0))


def threshold_at_far(neg: Sequence[float], far: float) -> float:
    """The smallest threshold t such that accepting ``score > t`` accepts at most
    ``floor(far * len(neg))`` negatives: the (k+1)-th highest negative score."""
    neg = np.sort(np.asarray(neg, dtype=float))[::-1]
    if len(neg) == 0:
        return -math.inf
    k = int(math.floor(far * len(neg) + 1e-9))
    return float(neg[k]) if k < len(neg) else -math.inf


def frr_at_far(pos: Sequence[float], neg: Sequence[float], far: float) -> Tuple[float, float, float]:
    """(false-reject rate, actual false-accept rate, threshold) with decision ``score > t``;
    the rate is nan without positives or negatives."""
    pos = np.asarray(pos, dtype=float)
    neg = np.asarray(neg, dtype=float)
    t = threshold_at_far(neg, far)
    frr = float(np.mean(pos <= t)) if len(pos) and len(neg) else math.nan
    fa = float(np.mean(neg > t)) if len(neg) else math.nan
    return frr, fa, t


def det_curve(pos: Sequence[float], neg: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """(false-accept rates, false-reject rates) over every threshold (``score > t``)."""
    pos = np.asarray(pos, dtype=float)
    neg = np.asarray(neg, dtype=float)
    ts = np.unique(np.concatenate([pos, neg, [-np.inf]]))
    fa = np.array([np.mean(neg > t) if len(neg) else np.nan for t in ts])
    fr = np.array([np.mean(pos <= t) if len(pos) else np.nan for t in ts])
    return fa, fr


def condition(ser: str) -> str:
    """The condition of an ``utt2ser`` value: ``clean`` or an SER bin like ``[-10,-5)``."""
    if ser == "clean":
        return "clean"
    v = float(ser)
    for lo, hi in SER_BINS:
        if lo <= v < hi or (hi == SER_BINS[-1][1] and v == hi):
            return f"ser[{lo:g},{hi:g})"
    return "ser<-10" if v < SER_BINS[0][0] else "ser>10"


def _finite(x: float) -> Optional[float]:
    """JSON-safe: None for nan and infinities."""
    return float(x) if math.isfinite(x) else None


def evaluate(scores: Dict[str, Tuple[float, float]], labels: Dict[str, Tuple[int, int]], sers: Dict[str, str],
             far: float = 0.05) -> Dict:
    """FRR at ``far`` per task (kw, dd) and condition (all, playback, clean, SER bins)."""
    groups: Dict[str, List[str]] = {"all": sorted(scores)}
    for u in sorted(scores):
        c = condition(sers.get(u, "clean"))
        groups.setdefault(c, []).append(u)
        if c != "clean":
            groups.setdefault("playback", []).append(u)
    res: Dict = {"far": far, "tasks": {}}
    for ti, task in enumerate(("kw", "dd")):
        res["tasks"][task] = {}
        for g, us in groups.items():
            pos = [scores[u][ti] for u in us if labels[u][ti] == 1]
            neg = [scores[u][ti] for u in us if labels[u][ti] == 0]
            frr, fa, t = frr_at_far(pos, neg, far)
            res["tasks"][task][g] = {"frr": _finite(frr), "fa": _finite(fa), "threshold": _finite(t), "positives": len(pos), "negatives": len(neg)}
    return res


def plot_det(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], path, title: str = "") -> None:
    """DET curves (FRR vs FA rate, log axes) of several conditions into one png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (fa, fr) in curves.items():
        ax.plot(np.clip(fa, 1e-3, 1), np.clip(fr, 1e-3, 1), label=name, drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false-accept rate")
    ax.set_ylabel("false-reject rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
