"""Batches for transducer training and decoding from lhotse CutSets with precomputed features."""

from __future__ import annotations

import random
from typing import Callable, Dict, List, Optional

import torch
from lhotse import CutSet

from sltk.asr.subsampling import subsampled_lengths


def cut_text(cut) -> str:
    return " ".join(s.text for s in cut.supervisions if s.text)


class AsrBatches(torch.utils.data.Dataset):
    """Maps a CutSet (one batch, as lhotse samplers yield) to padded features and texts:
    ``{"feats": (N, T, F), "feat_lens": (N,), "texts": [...], "ids": [...]}``."""

    def __init__(self, transforms: Optional[List[Callable]] = None):
        self.transforms = transforms or []

    def __getitem__(self, cuts: CutSet) -> Dict:
        cuts = cuts.sort_by_duration(ascending=False)
        feats = [torch.from_numpy(c.load_features()) for c in cuts]
        lens = torch.tensor([f.size(0) for f in feats])
        x = torch.zeros(len(feats), int(lens.max()), feats[0].size(1))
        for i, f in enumerate(feats):
            x[i, : f.size(0)] = f
        for t in self.transforms:
            x = t(x, lens)
        return {"feats": x, "feat_lens": lens, "texts": [cut_text(c) for c in cuts], "ids": [c.id for c in cuts]}


class SpecAugment:
    """Frequency and time masking (SpecAugment without time warping) on a padded batch.
    Time masks scale with each utterance's length: up to ``max_time_frac`` of it in total."""

    def __init__(self, num_freq_masks: int = 2, freq_width: int = 27, num_time_masks: int = 10,
                 time_width: int = 40, max_time_frac: float = 0.15, p: float = 0.9, seed: Optional[int] = None):
        self.nf, self.fw, self.nt, self.tw, self.frac, self.p = num_freq_masks, freq_width, num_time_masks, \
            time_width, max_time_frac, p
        self.rng = random.Random(seed)

    def __call__(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        n, _, f = x.shape
        for i in range(n):
            if self.rng.random() > self.p:
                continue
            mean = x[i, : lens[i]].mean()
            for _ in range(self.nf):
                w = self.rng.randint(0, min(self.fw, f - 1))
                s = self.rng.randint(0, f - w)
                x[i, :, s: s + w] = mean
            t = int(lens[i])
            budget = int(self.frac * t)
            nt = min(self.nt, max(1, t // 100 + 1))
            for _ in range(nt):
                w = self.rng.randint(0, max(0, min(self.tw, budget // nt)))
                if w == 0 or t - w <= 0:
                    continue
                s = self.rng.randint(0, t - w)
                x[i, s: s + w] = mean
        return x


class _PerUtterance:
    """A batch transform applied to each utterance's frames (not the padding) with probability
    ``self.p``, drawing from ``self.rng``; subclasses define :meth:`apply`."""

    p: float
    rng: random.Random

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        for i in range(x.size(0)):
            if self.rng.random() >= self.p:
                continue
            t = int(lens[i])
            x[i, :t] = self.apply(x[i, :t])
        return x


class FreqWarp(_PerUtterance):
    """VTLP-style vocal-tract-length perturbation of log-mel features (Jaitly & Hinton 2013):
    each utterance, with probability ``p``, gets a warp factor drawn uniformly from
    ``warp_range`` and its spectrum is stretched along frequency as Kaldi's VTLN warps the
    filter bank (:func:`sltk.audio.features.vtln_warp_freq`, piecewise linear: factor > 1 moves
    the formants up, as from a longer to a shorter vocal tract). The features are log-mel
    energies of ``num_mel_bins`` filters between ``low_freq`` and ``high_freq`` (the bins of
    the batch); a warped bin is linearly interpolated between the two nearest original bins."""

    def __init__(self, warp_range=(0.9, 1.1), sample_rate: int = 16000, low_freq: float = 20.0,
                 high_freq: float = 0.0, vtln_low: float = 100.0, vtln_high: float = -500.0,
                 p: float = 1.0, seed: Optional[int] = None):
        lo, hi = warp_range
        if not 0.5 <= lo <= hi <= 2.0:
            raise ValueError(f"freq warp range must satisfy 0.5 <= low <= high <= 2, got {lo} {hi}")
        nyquist = sample_rate / 2
        self.range, self.p = (lo, hi), p
        self.low_freq, self.high_freq = low_freq, high_freq + nyquist if high_freq <= 0 else high_freq
        self.vtln_low, self.vtln_high = vtln_low, vtln_high + nyquist if vtln_high < 0 else vtln_high
        self.rng = random.Random(seed)

    def source_bins(self, num_bins: int, warp: float) -> torch.Tensor:
        """For each output bin, the fractional index of the input bin it reads (clamped)."""
        from sltk.audio.features import inverse_mel_scale, mel_scale, vtln_warp_freq
        mel_lo, mel_hi = mel_scale(self.low_freq), mel_scale(self.high_freq)
        delta = (mel_hi - mel_lo) / (num_bins + 1)
        center = mel_lo + (torch.arange(num_bins, dtype=torch.float64) + 1.0) * delta
        src = mel_scale(vtln_warp_freq(self.vtln_low, self.vtln_high, self.low_freq, self.high_freq,
                                       warp, inverse_mel_scale(center)))
        return ((src - mel_lo) / delta - 1.0).clamp(0, num_bins - 1)

    def warp(self, x: torch.Tensor, warp: float) -> torch.Tensor:
        """``x`` (..., F) warped by one factor."""
        pos = self.source_bins(x.size(-1), warp).to(x.dtype)
        i0 = pos.floor().long().clamp(max=x.size(-1) - 2)
        frac = pos - i0
        return x[..., i0] * (1 - frac) + x[..., i0 + 1] * frac

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.warp(x, self.rng.uniform(*self.range))


class NoiseMixer(_PerUtterance):
    """MUSAN-style additive noise in the log-mel domain: x' = log(exp(x) + g * exp(n)), with the
    gain g set for an SNR drawn uniformly from ``snr`` (dB) over mel power, noise tiled/cropped
    to the utterance. ``noises``: log-mel matrices (T_i, F) of noise recordings."""

    def __init__(self, noises: List[torch.Tensor], snr=(10.0, 20.0), p: float = 0.5, seed: Optional[int] = None):
        if not noises:
            raise ValueError("NoiseMixer needs at least one noise")
        self.noises, self.snr, self.p = noises, snr, p
        self.rng = random.Random(seed)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        t = x.size(0)
        n = self.noises[self.rng.randrange(len(self.noises))]
        reps = -(-t // n.size(0))
        start = self.rng.randrange(n.size(0))
        n = torch.cat([n] * (reps + 1))[start: start + t].to(x.dtype)
        snr = self.rng.uniform(*self.snr)
        sp = x.exp().mean()
        npow = n.exp().mean()
        gain = sp / (npow * 10 ** (snr / 10))
        return torch.logaddexp(x, n + gain.log())


def alignable(num_frames: int, num_tokens: int) -> bool:
    """A transducer (and CTC) needs at least as many encoder frames as tokens, and some frames."""
    t = int(subsampled_lengths(torch.tensor(num_frames)))
    return t >= 1 and num_tokens >= 1 and t >= num_tokens
