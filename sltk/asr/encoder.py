"""Encoders: a Conformer and a stacked unidirectional LSTM (the on-device RNN-T encoder).

Both are a :class:`~sltk.asr.subsampling.Conv2dSubsampling` front end followed by a list of
layers, ``self.layers``, each mapping (N, T, D) -> (N, T, D) given the padding mask, so that
later work (adapters, accelerator emulation) can hook in after any chosen layer.
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import nn

from sltk.asr.config import ModelConfig
from sltk.asr.subsampling import Conv2dSubsampling


def padding_mask(lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """(N, T) bool, True where the frame is padding."""
    return torch.arange(max_len, device=lens.device)[None, :] >= lens[:, None]


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, swish, pointwise conv (Conformer's conv block)."""

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError("conv_kernel must be odd")
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Conv1d(dim, 2 * dim, 1)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.pw2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.norm(x).transpose(1, 2)  # (N, D, T)
        y = nn.functional.glu(self.pw1(y), dim=1)
        y = self.dw(y.masked_fill(mask[:, None, :], 0.0)).transpose(1, 2)  # padding must not leak in
        y = nn.functional.silu(self.norm2(y)).transpose(1, 2)
        return self.drop(self.pw2(y).transpose(1, 2))


class ConformerLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.encoder_dim
        self.ff1 = FeedForward(d, cfg.ff_dim, cfg.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_dim, cfg.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        y = self.attn_norm(x)
        y, _ = self.attn(y, y, y, key_padding_mask=mask, need_weights=False)
        x = x + self.attn_drop(y)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class LSTMLayer(nn.Module):
    """One unidirectional LSTM layer (cell size lstm_hidden, projected to encoder_dim), residual."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, h = cfg.encoder_dim, cfg.lstm_hidden
        self.lstm = nn.LSTM(d, h, batch_first=True, proj_size=d if h > d else 0)
        self.proj = nn.Linear(h, d) if h < d else nn.Identity()
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.norm(x + self.drop(self.proj(y)))


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


class Encoder(nn.Module):
    """Subsampling + ``num_encoder_layers`` Conformer or LSTM layers."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.subsampling = Conv2dSubsampling(cfg.feat_dim, cfg.encoder_dim)
        self.in_drop = nn.Dropout(cfg.dropout)
        layer = ConformerLayer if cfg.encoder == "conformer" else LSTMLayer
        self.layers = nn.ModuleList([layer(cfg) for _ in range(cfg.num_encoder_layers)])
        # hooks run after layer i: f(i, x, mask) -> x   (adapters, emulation)
        self.layer_hooks: List = []

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        x, lens = self.subsampling(feats, feat_lens)
        if self.cfg.encoder == "conformer":
            x = x * math.sqrt(self.cfg.encoder_dim) / 4.0 + sinusoidal_positions(x.size(1), x.size(2), x.device)
        x = self.in_drop(x)
        mask = padding_mask(lens, x.size(1))
        for i, layer in enumerate(self.layers):
            x = layer(x, mask)
            for hook in self.layer_hooks:
                x = hook(i, x, mask)
        return x.masked_fill(mask[..., None], 0.0), lens
