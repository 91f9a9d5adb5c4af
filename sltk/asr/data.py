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


class NoiseMixer:
    """MUSAN-style additive noise in the log-mel domain: x' = log(exp(x) + g * exp(n)), with the
    gain g set for an SNR drawn uniformly from ``snr`` (dB) over mel power, noise tiled/cropped
    to the utterance. ``noises``: log-mel matrices (T_i, F) of noise recordings."""

    def __init__(self, noises: List[torch.Tensor], snr=(10.0, 20.0), p: float = 0.5, seed: Optional[int] = None):
        if not noises:
            raise ValueError("NoiseMixer needs at least one noise")
        self.noises, self.snr, self.p = noises, snr, p
        self.rng = random.Random(seed)

    def __call__(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        for i in range(x.size(0)):
            if self.rng.random() >= self.p:
                continue
            t = int(lens[i])
            n = self.noises[self.rng.randrange(len(self.noises))]
            reps = -(-t // n.size(0))
            start = self.rng.randrange(n.size(0))
            n = torch.cat([n] * (reps + 1))[start: start + t].to(x.dtype)
            snr = self.rng.uniform(*self.snr)
            sp = x[i, :t].exp().mean()
            npow = n.exp().mean()
            gain = sp / (npow * 10 ** (snr / 10))
            x[i, :t] = torch.logaddexp(x[i, :t], n + gain.log())
        return x


def alignable(num_frames: int, num_tokens: int) -> bool:
    """A transducer (and CTC) needs at least as many encoder frames as tokens, and some frames."""
    t = int(subsampled_lengths(torch.tensor(num_frames)))
    return t >= 1 and num_tokens >= 1 and t >= num_tokens
