"""Small streaming detectors of keywords and device-directed speech on log-mel features.

A causal temporal convolutional network (TCN): a 1x1 input projection, residual blocks of
a dilated causal convolution (kernel 3, dilations 1, 2, 4, ... ) + ReLU + 1x1 convolution
+ per-frame layer norm, and a 1x1 head with two logits per frame (keyword, device-directed).
An utterance's score is the sigmoid of the maximum over frames (max pooling), so the same
network scores utterances and, frame by frame, streams (:meth:`KWSModel.step` keeps each
convolution's past inputs, so streaming equals the offline output exactly).

Variants (``VARIANTS``):

* ``mic``: the microphone's features only;
* ``early``: implicit AEC, microphone and reference features stacked as two input streams
  (the input projection sees both);
* ``mid``: implicit AEC, one encoder per stream (half of the blocks each), concatenated and
  fused by a 1x1 convolution, then the other half of the blocks;
* ``aec``: a classical AEC front end (:class:`sltk.kws.aec.PBFDAF`) removes the echo
  estimate from the microphone signal, then the ``mic`` network.

Inputs are (batch, streams, frames, mel bins) of log-mel features normalised with the
global mean and variance of the training microphone features (buffers of the model).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sltk.audio.features import FeatureComputer, FeatureOptions
from sltk.kws import aec

VARIANTS = ("mic", "early", "mid", "aec")
OUTPUTS = ("kw", "dd")
SR = 16000
LOG_FLOOR = 0.0  # log-mel floor (16-bit scale): a silent stream gives a constant input

AEC_BLOCK, AEC_PARTITIONS, AEC_MU = 256, 8, 0.3


def num_streams(variant: str) -> int:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (valid: {', '.join(VARIANTS)})")
    return 2 if variant in ("early", "mid") else 1


def feature_options(num_mel_bins: int = 40) -> FeatureOptions:
    """25 ms frames every 10 ms, computed only from whole frames (``snip_edges``) so that a
    stream cut in chunks gives the same frames as the whole signal."""
    return FeatureOptions(num_mel_bins=num_mel_bins, snip_edges=True, dither=0.0)


class Features:
    """Log-mel features of raw signals (float in [-1, 1]), floored at ``LOG_FLOOR``."""

    def __init__(self, num_mel_bins: int = 40):
        self.opts = feature_options(num_mel_bins)
        self.comp = FeatureComputer(self.opts)

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, dtype=np.float32)
        if len(x) < self.opts.window_size:
            return torch.zeros(0, self.opts.dim)
        return self.comp(torch.from_numpy(x)).clamp_min(LOG_FLOOR)


def model_input(variant: str, mic: np.ndarray, ref: Optional[np.ndarray], feats: Features) -> torch.Tensor:
    """The un-normalised input streams (streams, frames, bins) of one utterance: the mic
    features first, the reference's second (``early``, ``mid``); for ``aec`` the features
    of the echo-cancelled mic. ``ref`` None means a silent reference."""
    mic = np.asarray(mic, dtype=np.float32)
    ref = np.zeros_like(mic) if ref is None else np.asarray(ref, dtype=np.float32)
    if len(ref) != len(mic):
        ref = np.pad(ref, (0, max(0, len(mic) - len(ref))))[: len(mic)]
    n = num_streams(variant)
    if variant == "aec":
        mic = aec.pbfdaf(mic, ref, AEC_BLOCK, AEC_PARTITIONS, AEC_MU) if np.any(ref) else mic
    streams = [feats(mic)] + ([feats(ref)] if n == 2 else [])
    return torch.stack(streams)


class CausalConv(nn.Conv1d):
    """A 1-D convolution that sees only the present and past frames."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1):
        super().__init__(cin, cout, kernel, dilation=dilation)
        self.left = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return super().forward(F.pad(x, (self.left, 0)))

    def step(self, x: torch.Tensor, cache: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Streaming: ``x`` the new frames, ``cache`` the last ``left`` inputs (None: zeros)."""
        if self.left == 0:
            return super().forward(x), x[:, :, :0]
        if cache is None:
            cache = x.new_zeros(x.shape[0], x.shape[1], self.left)
        full = torch.cat([cache, x], dim=2)
        return super().forward(full), full[:, :, full.shape[2] - self.left:]


class Block(nn.Module):
    def __init__(self, channels: int, dilation: int, kernel: int = 3):
        super().__init__()
        self.conv = CausalConv(channels, channels, kernel, dilation)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.norm = nn.LayerNorm(channels)

    def _out(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        y = x + self.proj(F.relu(h))
        return self.norm(y.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(x, self.conv(x))

    def step(self, x, cache):
        h, cache = self.conv.step(x, cache)
        return self._out(x, h), cache


class Encoder(nn.Module):
    def __init__(self, cin: int, channels: int, dilations: Sequence[int]):
        super().__init__()
        self.inp = nn.Conv1d(cin, channels, 1)
        self.blocks = nn.ModuleList(Block(channels, d) for d in dilations)

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return x

    def step(self, x, caches: List):
        x = self.inp(x)
        new = []
        for b, c in zip(self.blocks, caches):
            x, c = b.step(x, c)
            new.append(c)
        return x, new


class KWSModel(nn.Module):
    """The detector (see the module doc): ``forward`` (B, S, T, F) -> frame logits (B, T, 2)."""

    def __init__(self, variant: str = "mic", num_mel_bins: int = 40, channels: int = 48,
                 dilations: Sequence[int] = (1, 2, 4, 8, 16, 32)):
        super().__init__()
        self.variant = variant
        self.config = {"variant": variant, "num_mel_bins": num_mel_bins, "channels": channels,
                       "dilations": list(dilations)}
        self.streams = num_streams(variant)
        self.register_buffer("mean", torch.zeros(num_mel_bins))
        self.register_buffer("std", torch.ones(num_mel_bins))
        dil = list(dilations)
        if variant == "mid":
            half = len(dil) // 2
            self.enc_mic = Encoder(num_mel_bins, channels, dil[:half])
            self.enc_ref = Encoder(num_mel_bins, channels // 2, dil[:half])
            self.fuse = nn.Conv1d(channels + channels // 2, channels, 1)
            self.trunk = nn.ModuleList(Block(channels, d) for d in dil[half:])
        else:
            self.enc = Encoder(self.streams * num_mel_bins, channels, [])
            self.trunk = nn.ModuleList(Block(channels, d) for d in dil)
        self.head = nn.Conv1d(channels, len(OUTPUTS), 1)

    @property
    def receptive_field(self) -> int:
        """Frames of context a frame's output depends on (itself included)."""
        return 1 + sum(2 * d for d in self.config["dilations"])

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-3))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, T, F) -> (B, S, F, T)
        return ((x - self.mean) / self.std).permute(0, 1, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.streams:
            raise ValueError(f"variant {self.variant} expects (batch, {self.streams}, frames, bins), got {tuple(x.shape)}")
        z = self._norm(x)
        if self.variant == "mid":
            h = self.fuse(torch.cat([self.enc_mic(z[:, 0]), self.enc_ref(z[:, 1])], dim=1))
        else:
            h = self.enc(z.reshape(z.shape[0], -1, z.shape[-1]))
        for b in self.trunk:
            h = b(h)
        return self.head(h).transpose(1, 2)

    def step(self, x: torch.Tensor, state: Optional[Dict] = None) -> Tuple[torch.Tensor, Dict]:
        """Streaming forward of new frames ``x`` (B, S, T_new, F) given the state of the
        previous call (None at the start). Returns (logits (B, T_new, 2), state)."""
        state = state or {}
        z = self._norm(x)
        new: Dict = {}
        if self.variant == "mid":
            nb = len(self.enc_mic.blocks)
            a, new["mic"] = self.enc_mic.step(z[:, 0], state.get("mic", [None] * nb))
            r, new["ref"] = self.enc_ref.step(z[:, 1], state.get("ref", [None] * nb))
            h = self.fuse(torch.cat([a, r], dim=1))
        else:
            h, _ = self.enc.step(z.reshape(z.shape[0], -1, z.shape[-1]), [])
        caches = []
        for b, c in zip(self.trunk, state.get("trunk", [None] * len(self.trunk))):
            h, c = b.step(h, c)
            caches.append(c)
        new["trunk"] = caches
        return self.head(h).transpose(1, 2), new


def utterance_logits(frame_logits: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Max pooling over the valid frames: (B, T, 2) -> (B, 2)."""
    if lengths is not None:
        t = torch.arange(frame_logits.shape[1], device=frame_logits.device)
        mask = t[None, :] < lengths[:, None]
        frame_logits = frame_logits.masked_fill(~mask[:, :, None], float("-inf"))
    return frame_logits.max(dim=1).values


def build_model(config: Dict) -> KWSModel:
    return KWSModel(**config)


# ----------------------------------------------------------------------------- compute

def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _network_macs_per_frame(model: KWSModel) -> float:
    macs = 0.0
    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            macs += m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0]
        elif isinstance(m, nn.LayerNorm):
            macs += 3 * m.normalized_shape[0]
    return macs


def feature_macs_per_frame(opts: FeatureOptions) -> float:
    """One frame of log-mel features: windowing and pre-emphasis, a real FFT, the power
    spectrum and the mel filterbank (about two filters per FFT bin)."""
    n = opts.padded_window_size
    return 2 * opts.window_size + aec.fft_macs(n) + 2 * (n // 2 + 1) + 2 * (n // 2 + 1)


def complexity(model: KWSModel) -> Dict[str, float]:
    """Parameters and multiply-accumulates per second of audio (features, network and, for
    ``aec``, the adaptive filter)."""
    frames_per_s = 1000.0 / feature_options(model.config["num_mel_bins"]).frame_shift
    opts = feature_options(model.config["num_mel_bins"])
    feat = model.streams * feature_macs_per_frame(opts) * frames_per_s
    net = _network_macs_per_frame(model) * frames_per_s
    filt = aec.pbfdaf_macs_per_sample(AEC_BLOCK, AEC_PARTITIONS) * SR if model.variant == "aec" else 0.0
    return {"variant": model.variant, "params": count_params(model), "macs_per_s": feat + net + filt,
            "network_macs_per_s": net, "feature_macs_per_s": feat, "aec_macs_per_s": filt}
