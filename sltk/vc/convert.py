"""Conversion by remap, warp and attend, and the models it needs.

An utterance's phonetic content is a list of *units* (words and pauses, each a list of
phones, as :class:`sltk.tts.phonemize.Phonemized` has them) and a duration in frames for
every phone. Converting to a target accent:

1. **remap** (:func:`remap`): the units of the target accent replace the source's (from the
   target accent's phonemization of the text, or :class:`PhoneMapper` when there is no
   text); each unit keeps its source frame count, shared among its new phones in
   proportion to their typical durations. Identical units keep their durations exactly,
   so remapping to the same accent is the identity.
2. **warp**: durations from the per-accent duration model. :meth:`DurationModel.warp_relative`
   (the default) stretches each unit of the source by the ratio of its typical length in
   the target accent to its typical length in the source accent, keeping the source's
   rhythm; :meth:`DurationModel.warp` ("absolute") gives every target phone its accent's mean
   duration, scaled by the source speaker's tempo (how much slower or faster than typical
   the source is). Pauses keep their length.
3. **attend** (:func:`unit_attention`, :func:`attend`): each target frame attends to the
   source frames of the same unit at the same relative position (a Gaussian over source
   frames), so the source latents are carried to a sequence of another length. Without
   attend, the latents are stretched uniformly (:func:`stretch`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from sltk.tts.phonemize import PAUSES

Units = List[List[str]]


def flatten(units: Units) -> Tuple[List[str], List[int]]:
    """(phones, unit index of each phone)."""
    phones = [p for u in units for p in u]
    idx = [i for i, u in enumerate(units) for _ in u]
    return phones, idx


def unit_frames(units: Units, durations: Sequence[int]) -> List[int]:
    """Frames of each unit."""
    out, k = [], 0
    for u in units:
        out.append(int(sum(durations[k:k + len(u)])))
        k += len(u)
    return out


def split_frames(total: int, weights: Sequence[float]) -> List[int]:
    """``total`` frames over len(weights) phones in proportion to ``weights``, at least one
    each (the total grows when it is smaller than the number of phones); sums are kept by
    largest-remainder rounding."""
    n = len(weights)
    if n == 0:
        return []
    if total <= n:
        return [1] * n
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)
    extra = total - n
    raw = w * extra
    out = np.floor(raw).astype(int)
    rest = extra - out.sum()
    if rest > 0:
        out[np.argsort(-(raw - out), kind="stable")[:rest]] += 1
    return (out + 1).tolist()


# ---------------------------------------------------------------------------- durations
class DurationModel:
    """Per-accent duration statistics: the mean duration (frames) of each (accent, phone),
    backing off to the phone over all accents, then to the accent's mean phone."""

    def __init__(self):
        self.mean: Dict[str, Dict[str, float]] = {}   # accent -> phone -> mean frames
        self.phone_mean: Dict[str, float] = {}
        self.accent_mean: Dict[str, float] = {}
        self.global_mean = 8.0

    def fit(self, data: Sequence[Tuple[str, Sequence[str], Sequence[int]]], min_count: int = 2) -> "DurationModel":
        """``data``: (accent, phones, durations) per utterance."""
        per = defaultdict(list)
        per_phone = defaultdict(list)
        per_acc = defaultdict(list)
        for acc, phones, durs in data:
            for p, d in zip(phones, durs):
                if d <= 0:
                    continue
                per[(acc, p)].append(d)
                per_phone[p].append(d)
                if p not in PAUSES:
                    per_acc[acc].append(d)
        self.mean = {}
        for (acc, p), v in per.items():
            if len(v) >= min_count:
                self.mean.setdefault(acc, {})[p] = float(np.mean(v))
        self.phone_mean = {p: float(np.mean(v)) for p, v in per_phone.items()}
        self.accent_mean = {a: float(np.mean(v)) for a, v in per_acc.items()}
        allv = [x for v in per_acc.values() for x in v]
        self.global_mean = float(np.mean(allv)) if allv else 8.0
        return self

    def duration(self, accent: str, phone: str) -> float:
        """Expected frames of ``phone`` in ``accent``."""
        m = self.mean.get(accent, {})
        if phone in m:
            return m[phone]
        if phone in self.phone_mean:
            return self.phone_mean[phone]
        return self.accent_mean.get(accent, self.global_mean)

    def tempo(self, accent: str, phones: Sequence[str], durations: Sequence[int]) -> float:
        """How slow the utterance is against the accent's typical durations: the ratio of the
        frames of its non-pause phones to their expected frames."""
        pairs = [(d, self.duration(accent, p)) for p, d in zip(phones, durations) if p not in PAUSES]
        if not pairs:
            return 1.0
        return float(sum(d for d, _ in pairs) / max(sum(e for _, e in pairs), 1e-6))

    def warp(self, src_accent: str, src_units: Units, src_durations: Sequence[int], tgt_accent: str,
             tgt_units: Units) -> List[int]:
        """Durations of the target units' phones in the target accent at the source's tempo;
        pause units keep their source frames (the units correspond one to one)."""
        sp, _ = flatten(src_units)
        tempo = self.tempo(src_accent, sp, src_durations)
        src_uf = unit_frames(src_units, src_durations)
        out: List[int] = []
        carry = 0.0
        for su, tu, f in zip(src_units, tgt_units, src_uf):
            if all(p in PAUSES for p in tu) and all(p in PAUSES for p in su):
                out += split_frames(f, [1.0] * len(tu))
                continue
            for p in tu:
                want = self.duration(tgt_accent, p) * tempo + carry
                d = max(1, int(round(want)))
                carry = want - d
                out.append(d)
        return out

    def warp_relative(self, src_accent: str, src_units: Units, src_durations: Sequence[int], tgt_accent: str,
                      tgt_units: Units) -> List[int]:
        """Durations of the target units' phones, each unit keeping the source's timing and
        stretched by the ratio of its expected frames in the target accent to the source
        unit's expected frames in the source accent: the source's rhythm (stress, phrase-final
        lengthening) is kept and only the accents' typical differences are applied, where
        :meth:`warp` replaces every phone by its accent mean. Within a changed unit the frames
        are shared in proportion to the target phones' typical durations; an unchanged unit
        scales its source phone durations. Pause units keep their frames. Between the same
        accents this is the identity."""
        out: List[int] = []
        k = 0
        carry = 0.0
        for su, tu in zip(src_units, tgt_units):
            d = [int(x) for x in src_durations[k:k + len(su)]]
            k += len(su)
            f = sum(d)
            if all(p in PAUSES for p in tu) and all(p in PAUSES for p in su):
                out += d if list(su) == list(tu) else split_frames(f, [1.0] * len(tu))
                continue
            ratio = (sum(self.duration(tgt_accent, p) for p in tu)
                     / max(sum(self.duration(src_accent, p) for p in su), 1e-6))
            want = f * ratio + carry
            n = max(len(tu), int(round(want)))
            carry = want - n
            if list(su) == list(tu):
                out += d if n == f else split_frames(n, d)
            else:
                out += split_frames(n, [self.duration(tgt_accent, p) for p in tu])
        return out

    def to_dict(self) -> dict:
        return {"mean": self.mean, "phone_mean": self.phone_mean, "accent_mean": self.accent_mean,
                "global_mean": self.global_mean}

    @classmethod
    def from_dict(cls, d: dict) -> "DurationModel":
        m = cls()
        m.mean, m.phone_mean, m.accent_mean, m.global_mean = d["mean"], d["phone_mean"], d["accent_mean"], d["global_mean"]
        return m


# ---------------------------------------------------------------------------- remap
def remap(src_units: Units, src_durations: Sequence[int], tgt_units: Units, dur: Optional[DurationModel] = None,
          tgt_accent: str = "") -> List[int]:
    """Durations of the target units' phones, each unit keeping its source frames (see the
    module doc). The units must correspond one to one."""
    if len(src_units) != len(tgt_units):
        raise ValueError(f"remap needs corresponding units: {len(src_units)} source, {len(tgt_units)} target")
    out: List[int] = []
    k = 0
    for su, tu in zip(src_units, tgt_units):
        d = list(src_durations[k:k + len(su)])
        k += len(su)
        if list(su) == list(tu):
            out += [int(x) for x in d]
            continue
        w = [dur.duration(tgt_accent, p) if dur else 1.0 for p in tu]
        out += split_frames(int(sum(d)), w)
    return out


def _edit_align(a: Sequence[str], b: Sequence[str]) -> List[Tuple[int, int]]:
    """Levenshtein alignment of a and b as (i, j) pairs, -1 for a gap."""
    n, m = len(a), len(b)
    D = np.zeros((n + 1, m + 1), dtype=np.int64)
    D[:, 0] = np.arange(n + 1)
    D[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            D[i, j] = min(D[i - 1, j] + 1, D[i, j - 1] + 1, D[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    i, j, out = n, m, []
    while i > 0 or j > 0:
        if i > 0 and j > 0 and D[i, j] == D[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and D[i, j] == D[i - 1, j] + 1:
            out.append((i - 1, -1))
            i -= 1
        else:
            out.append((-1, j - 1))
            j -= 1
    return out[::-1]


def _spans(a: Sequence[str], b: Sequence[str]) -> List[Tuple[str, ...]]:
    """For each phone of a, the phones of b it became (insertions go with the phone before,
    or the first one at the start)."""
    out: List[List[str]] = [[] for _ in a]
    pending: List[str] = []
    last = -1
    for i, j in _edit_align(a, b):
        if i >= 0:
            last = i
            if pending:
                out[i] += pending
                pending = []
            if j >= 0:
                out[i].append(b[j])
        elif last >= 0:
            out[last].append(b[j])
        else:
            pending.append(b[j])
    if pending and out:
        out[0] = pending + out[0]
    return [tuple(x) for x in out]


class PhoneMapper:
    """A learned phoneme-to-phoneme model between accents: what each source phone becomes in
    the target accent, given its left and right neighbours (backing off to the phone alone,
    then to the phone itself). Learned from the same words phonemized in both accents
    (texts only: the audio stays non-parallel)."""

    def __init__(self):
        self.ctx: Dict[str, Dict[str, str]] = {}   # "src>tgt" -> "l p r" -> "q1 q2" (most frequent)
        self.mono: Dict[str, Dict[str, str]] = {}

    def fit(self, pairs: Dict[Tuple[str, str], Sequence[Tuple[Units, Units]]]) -> "PhoneMapper":
        for (sa, ta), utts in pairs.items():
            c_ctx: Dict[str, Counter] = defaultdict(Counter)
            c_mono: Dict[str, Counter] = defaultdict(Counter)
            for su, tu in utts:
                for a, b in zip(su, tu):
                    for k, (p, out) in enumerate(zip(a, _spans(a, b))):
                        l = a[k - 1] if k > 0 else "<w>"
                        r = a[k + 1] if k + 1 < len(a) else "</w>"
                        v = " ".join(out)
                        c_ctx[f"{l} {p} {r}"][v] += 1
                        c_mono[p][v] += 1
            key = f"{sa}>{ta}"
            self.ctx[key] = {k: c.most_common(1)[0][0] for k, c in c_ctx.items()}
            self.mono[key] = {k: c.most_common(1)[0][0] for k, c in c_mono.items()}
        return self

    def map_units(self, units: Units, src_accent: str, tgt_accent: str) -> Units:
        if src_accent == tgt_accent:
            return [list(u) for u in units]
        key = f"{src_accent}>{tgt_accent}"
        ctx, mono = self.ctx.get(key, {}), self.mono.get(key, {})
        out = []
        for a in units:
            new: List[str] = []
            for k, p in enumerate(a):
                l = a[k - 1] if k > 0 else "<w>"
                r = a[k + 1] if k + 1 < len(a) else "</w>"
                v = ctx.get(f"{l} {p} {r}", mono.get(p, p))
                new += v.split()
            out.append(new if new else list(a))
        return out

    def to_dict(self) -> dict:
        return {"ctx": self.ctx, "mono": self.mono}

    @classmethod
    def from_dict(cls, d: dict) -> "PhoneMapper":
        m = cls()
        m.ctx, m.mono = d["ctx"], d["mono"]
        return m


# ---------------------------------------------------------------------------- attend
def unit_attention(src_frames: Sequence[int], tgt_frames: Sequence[int], sigma: float = 0.3,
                   content: Optional[torch.Tensor] = None, content_weight: float = 0.0) -> torch.Tensor:
    """(T_tgt, T_src) attention weights: target frame t of unit u, at relative position r in
    it, attends to the source frames around the same relative position of unit u (Gaussian
    with ``sigma`` frames, scaled by the unit's length ratio when the source unit is longer);
    ``content`` (T_tgt, T_src) similarities add ``content_weight`` times themselves to the
    scores. Rows sum to one. ``sigma`` 0 gives hard (nearest-frame) alignment."""
    if len(src_frames) != len(tgt_frames):
        raise ValueError("unit_attention needs corresponding units")
    Ts, Tt = int(sum(src_frames)), int(sum(tgt_frames))
    centre = torch.zeros(Tt)
    width = torch.zeros(Tt)
    ss = st = 0
    for fs, ft in zip(src_frames, tgt_frames):
        if ft > 0:
            r = (torch.arange(ft, dtype=torch.float64) + 0.5) / ft
            centre[st:st + ft] = (ss + r * max(fs, 1) - 0.5).float() if fs > 0 else float(max(ss - 1, 0))
            width[st:st + ft] = sigma * max(1.0, fs / ft)
        ss += fs
        st += ft
    j = torch.arange(Ts, dtype=torch.float32)[None, :]
    d = j - centre[:, None]
    if sigma <= 0:
        w = torch.zeros(Tt, Ts)
        w[torch.arange(Tt), centre.round().long().clamp(0, Ts - 1)] = 1.0
        return w
    scores = -0.5 * (d / width[:, None]) ** 2
    if content is not None and content_weight:
        scores = scores + content_weight * content
    return torch.softmax(scores, dim=1)


def attend(z_src: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Target latents (T_tgt, D) = weights (T_tgt, T_src) @ z_src (T_src, D): each target frame
    a convex combination of source latents (a one-hot row returns its source frame exactly)."""
    if weights.shape[1] != z_src.shape[0]:
        raise ValueError(f"attention over {weights.shape[1]} frames, source has {z_src.shape[0]}")
    return weights @ z_src


def stretch(z: torch.Tensor, frames: int) -> torch.Tensor:
    """(T, D) -> (frames, D) by linear interpolation over time (uniform time warping)."""
    if z.shape[0] == frames:
        return z
    if z.shape[0] == 1:
        return z.expand(frames, -1).clone()
    return F.interpolate(z.t()[None], size=frames, mode="linear", align_corners=True)[0].t()
