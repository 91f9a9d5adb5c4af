"""Vocoders: log-mel frames (:mod:`sltk.tts.features`) to waveforms.

:class:`Vocoder` is the interface (``vocoder(mel) -> samples``); :class:`GriffinLim` is the
default: the mel power is mapped back to a linear power spectrum by the pseudo-inverse of
the mel filters (negative values clipped), and the phase is reconstructed by torchaudio's
Griffin-Lim. A neural vocoder can replace it by implementing :class:`Vocoder` and being
registered in :data:`VOCODERS`.
"""

from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import torch

from sltk.tts.features import MelConfig, mel_banks
from sltk.utils.errors import UserError


class Vocoder:
    """Maps (frames, num_mels) natural-log mel power to float32 samples in [-1, 1]."""

    name = "base"

    def __init__(self, cfg: MelConfig):
        self.cfg = cfg

    def __call__(self, mel: torch.Tensor) -> np.ndarray:
        raise NotImplementedError


class GriffinLim(Vocoder):
    name = "griffin-lim"

    def __init__(self, cfg: MelConfig = MelConfig(), n_iter: int = 32, momentum: float = 0.99, seed: int = 0):
        super().__init__(cfg)
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed
        self.inv = torch.linalg.pinv(mel_banks(cfg).double()).float()  # (n_fft/2+1, num_mels)

    def linear_magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """(n_fft/2+1, frames) magnitude spectrum whose mel power is about exp(mel)."""
        power = torch.exp(torch.as_tensor(mel, dtype=torch.float32)).t()  # (num_mels, frames)
        lin = (self.inv @ power).clamp_min(0.0)
        return lin.sqrt()

    def __call__(self, mel: torch.Tensor) -> np.ndarray:
        import torchaudio.functional as AF

        mel = torch.as_tensor(mel, dtype=torch.float32)
        if mel.dim() != 2 or mel.shape[1] != self.cfg.num_mels or mel.shape[0] == 0:
            raise ValueError(f"expected (frames, {self.cfg.num_mels}) log-mel, got {tuple(mel.shape)}")
        c = self.cfg
        spec = self.linear_magnitude(mel)
        window = torch.hann_window(c.win, periodic=False)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            y = AF.griffinlim(spec, window, c.n_fft, c.hop, c.win, power=1.0, n_iter=self.n_iter,
                              momentum=self.momentum, length=(mel.shape[0] - 1) * c.hop, rand_init=True)
        # the stft of (frames - 1) * hop samples has `frames` frames; pad to frames * hop samples,
        # whose log_mel has `frames` frames again
        y = np.pad(y.numpy().astype(np.float32), (0, c.hop))
        peak = float(np.abs(y).max()) if y.size else 0.0
        if peak > 0.99:
            y *= 0.99 / peak
        return y


VOCODERS: Dict[str, Callable[[MelConfig], Vocoder]] = {"griffin-lim": GriffinLim}


def get_vocoder(name: str, cfg: MelConfig) -> Vocoder:
    if name not in VOCODERS:
        raise UserError(f"unknown vocoder {name!r} (known: {', '.join(VOCODERS)})")
    return VOCODERS[name](cfg)
