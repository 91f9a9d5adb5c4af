"""The TTS front end: log-mel spectrograms that a vocoder can invert.

It is sltk's Kaldi-compatible fbank (:class:`sltk.audio.features.FeatureComputer`) with
settings chosen for inversion: no pre-emphasis, no DC removal, no dither, a Hann window,
samples used as they are in [-1, 1], frames centred every 10 ms (``snip_edges`` false:
``num_frames = round(samples / 160)``), power spectra and the natural log floored at
:attr:`MelConfig.log_floor`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from sltk.audio.features import FeatureComputer, FeatureOptions


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    num_mels: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 40.0
    high_freq: float = 7600.0
    log_floor: float = -11.5   # ln of the smallest power kept (about 1e-5)

    def to_dict(self) -> dict:
        return asdict(self)

    def feature_options(self) -> FeatureOptions:
        return FeatureOptions(feature_type="fbank", sample_frequency=float(self.sample_rate),
                              frame_length=self.frame_length_ms, frame_shift=self.frame_shift_ms,
                              num_mel_bins=self.num_mels, low_freq=self.low_freq, high_freq=self.high_freq,
                              dither=0.0, preemphasis_coefficient=0.0, remove_dc_offset=False,
                              window_type="hanning", snip_edges=False, waveform_scale=1.0)

    @property
    def hop(self) -> int:
        return self.feature_options().window_shift

    @property
    def win(self) -> int:
        return self.feature_options().window_size

    @property
    def n_fft(self) -> int:
        return self.feature_options().padded_window_size


@lru_cache(maxsize=8)
def _computer(cfg: MelConfig) -> FeatureComputer:
    return FeatureComputer(cfg.feature_options())


def mel_banks(cfg: MelConfig) -> torch.Tensor:
    """The mel filters (num_mels, n_fft // 2 + 1) that :func:`log_mel` applies."""
    return _computer(cfg).banks_t.t().contiguous()


def log_mel(samples, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """(frames, num_mels) natural-log mel power of a 1-D signal in [-1, 1]."""
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    return _computer(cfg)(x).clamp_min(cfg.log_floor)
