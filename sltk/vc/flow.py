"""A conditional normalizing flow over log-mel frames (Glow-style, over the mel channels).

One step is :class:`ActNorm` (per-channel affine, initialised from the first batch) ->
:class:`InvConv1x1` (an invertible channel mixing, the same matrix at every frame) ->
:class:`AffineCoupling` (half the channels scale-and-shift the other half, by a small
convolutional network over time that also reads the conditioning). Every operation is
invertible with a cheap log-determinant, so

    log p(x | c) = log N(f(x; c); 0, I) + log |det df/dx|

is exact and training maximises it. With ``cond_prior`` the base distribution is conditional
too, N(mu(c), sigma(c)^2) per frame and channel (Glow-TTS's text-conditioned prior), written as
a last invertible layer (:class:`CondAffine`, z -> (z - mu(c)) / sigma(c)) so that the flow's
output is always standard normal: the conditioning then predicts the frames' means directly,
and the residual latents need not carry what the phones already say. The conditioning ``c`` of each frame is
:class:`CondEncoder`'s: the frame's phone (embedding and position within the phone) and
the accent, through a few convolutions over time, with the speaker embedding appended.

Tensors are (batch, channels, frames) inside the flow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn as nn

LOG_2PI = float(torch.log(torch.tensor(2 * torch.pi)))


@dataclass
class FlowConfig:
    num_mels: int = 80
    num_phones: int = 64
    num_speakers: int = 4
    num_accents: int = 4
    steps: int = 6
    hidden: int = 96
    phone_dim: int = 48
    cond_dim: int = 64
    speaker_dim: int = 16
    accent_dim: int = 16
    cond_prior: bool = False    # a conditional base distribution (CondAffine as the last layer)
    cond_context: int = 0       # dilated residual convolutions after the conditioning's two (wider context)

    def to_dict(self) -> dict:
        return asdict(self)


class ActNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.logs = nn.Parameter(torch.zeros(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        m = x.mean(dim=(0, 2), keepdim=True)
        s = x.std(dim=(0, 2), keepdim=True).clamp_min(1e-3)
        self.bias.data.copy_(-m / s)
        self.logs.data.copy_(-torch.log(s))
        self.initialized.fill_(1)

    def forward(self, x, cond=None):
        if not self.initialized:
            self._init(x)
        y = x * torch.exp(self.logs) + self.bias
        return y, self.logs.sum() * x.new_ones(x.shape[0]) * x.shape[2]

    def reverse(self, y, cond=None):
        return (y - self.bias) * torch.exp(-self.logs)


class InvConv1x1(nn.Module):
    """y_t = W x_t for every frame; log-determinant T * log|det W|."""

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.weight = nn.Parameter(w)

    def forward(self, x, cond=None):
        logdet = torch.linalg.slogdet(self.weight)[1]
        y = torch.einsum("ij,bjt->bit", self.weight, x)
        return y, logdet * x.new_ones(x.shape[0]) * x.shape[2]

    def reverse(self, y, cond=None):
        inv = torch.linalg.inv(self.weight)
        return torch.einsum("ij,bjt->bit", inv, y)


class AffineCoupling(nn.Module):
    """x = [xa, xb]: xb' = xb * exp(s) + t with (s, t) = net(xa, cond); xa unchanged.
    ``s`` is bounded by tanh, and the last layer starts at zero (the identity)."""

    def __init__(self, channels: int, cond_dim: int, hidden: int):
        super().__init__()
        self.na = channels // 2
        self.nb = channels - self.na
        self.net = nn.Sequential(
            nn.Conv1d(self.na + cond_dim, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv1d(hidden, 2 * self.nb, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _st(self, xa, cond):
        h = self.net(torch.cat([xa, cond], 1))
        s, t = h[:, : self.nb], h[:, self.nb:]
        return torch.tanh(s), t

    def forward(self, x, cond):
        xa, xb = x[:, : self.na], x[:, self.na:]
        s, t = self._st(xa, cond)
        return torch.cat([xa, xb * torch.exp(s) + t], 1), s.sum(dim=(1, 2))

    def reverse(self, y, cond):
        ya, yb = y[:, : self.na], y[:, self.na:]
        s, t = self._st(ya, cond)
        return torch.cat([ya, (yb - t) * torch.exp(-s)], 1)


class CondAffine(nn.Module):
    """The conditional prior as a layer: y = (x - mu(c)) * exp(-logs(c)), with (mu, logs) from
    the conditioning alone by two convolutions over time; log|det| = -sum logs. ``logs`` is
    bounded to (-2, 2) by a scaled tanh, and the last convolution starts at zero (the identity)."""

    def __init__(self, channels: int, cond_dim: int, hidden: int):
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(nn.Conv1d(cond_dim, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden, 2 * channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def stats(self, cond):
        h = self.net(cond)
        return h[:, : self.channels], 2.0 * torch.tanh(h[:, self.channels:] / 2.0)

    def forward(self, x, cond):
        mu, logs = self.stats(cond)
        return (x - mu) * torch.exp(-logs), -logs.sum(dim=(1, 2))

    def reverse(self, y, cond):
        mu, logs = self.stats(cond)
        return y * torch.exp(logs) + mu


class CondEncoder(nn.Module):
    """Frame-aligned conditioning: phone embedding + position in the phone + accent embedding,
    two convolutions over time (a context of 4 frames each side), ``cond_context`` residual
    convolutions dilated 2, 4, 8, ... (kernel 5: cond_context = 3 sees 60 frames each side,
    several phones), then the speaker embedding appended. (B, T) ids, (B, T, 2) positions,
    (B,) speaker and accent ids -> (B, cond_dim + speaker_dim, T)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.phone = nn.Embedding(cfg.num_phones, cfg.phone_dim)
        self.accent = nn.Embedding(cfg.num_accents, cfg.accent_dim)
        self.speaker = nn.Embedding(cfg.num_speakers, cfg.speaker_dim)
        self.convs = nn.Sequential(
            nn.Conv1d(cfg.phone_dim + 2 + cfg.accent_dim, cfg.cond_dim, 5, padding=2), nn.ReLU(),
            nn.Conv1d(cfg.cond_dim, cfg.cond_dim, 5, padding=2), nn.ReLU())
        self.context = nn.ModuleList(
            nn.Sequential(nn.Conv1d(cfg.cond_dim, cfg.cond_dim, 5, padding=2 * 2 ** (i + 1), dilation=2 ** (i + 1)),
                          nn.ReLU())
            for i in range(cfg.cond_context))
        self.out_dim = cfg.cond_dim + cfg.speaker_dim
        # frames each side that one output frame depends on
        self.receptive_field = 4 + sum(2 * 2 ** (i + 1) for i in range(cfg.cond_context))

    def forward(self, phones, pos, speaker, accent):
        T = phones.shape[1]
        a = self.accent(accent)[:, :, None].expand(-1, -1, T)
        h = torch.cat([self.phone(phones).transpose(1, 2), pos.transpose(1, 2), a], 1)
        h = self.convs(h)
        for block in self.context:
            h = h + block(h)
        s = self.speaker(speaker)[:, :, None].expand(-1, -1, T)
        return torch.cat([h, s], 1)


class AccentFlow(nn.Module):
    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = CondEncoder(cfg)
        layers = []
        for _ in range(cfg.steps):
            layers += [ActNorm(cfg.num_mels), InvConv1x1(cfg.num_mels),
                       AffineCoupling(cfg.num_mels, self.encoder.out_dim, cfg.hidden)]
        if cfg.cond_prior:
            layers.append(CondAffine(cfg.num_mels, self.encoder.out_dim, cfg.hidden))
        self.layers = nn.ModuleList(layers)

    @property
    def config(self) -> dict:
        return self.cfg.to_dict()

    def condition(self, phones, pos, speaker, accent) -> torch.Tensor:
        return self.encoder(phones, pos, speaker, accent)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, num_mels) -> z (B, T, num_mels) and log|det dz/dx| (B,). With ``cond_prior``
        z is the residual against the conditional prior (standard normal either way)."""
        h = x.transpose(1, 2)
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            h, ld = layer(h, cond)
            logdet = logdet + ld
        return h.transpose(1, 2), logdet

    def reverse(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = z.transpose(1, 2)
        for layer in reversed(self.layers):
            h = layer.reverse(h, cond)
        return h.transpose(1, 2)

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """log p(x | cond) per sequence (B,), in nats."""
        z, logdet = self(x, cond)
        return -0.5 * (z * z + LOG_2PI).sum(dim=(1, 2)) + logdet


def nll_per_dim(model: AccentFlow, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The training loss: negative log-likelihood per frame and channel (nats)."""
    return -model.log_prob(x, cond).sum() / x.numel()
