"""Convolutional front end: 4x subsampling in time."""

from __future__ import annotations

import torch
from torch import nn


def subsampled_lengths(lens: torch.Tensor) -> torch.Tensor:
    """Output lengths of :class:`Conv2dSubsampling` (two 3x3 convolutions, stride 2, no pad)."""
    return ((lens - 1) // 2 - 1) // 2


class Conv2dSubsampling(nn.Module):
    """(N, T, F) -> (N, T', D) with T' = ((T - 1) // 2 - 1) // 2, i.e. 40 ms frames from 10 ms."""

    def __init__(self, feat_dim: int, out_dim: int, channels: int = 64):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )
        f = ((feat_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * f, out_dim)

    def forward(self, x: torch.Tensor, lens: torch.Tensor):
        x = self.conv(x.unsqueeze(1))  # (N, C, T', F')
        n, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(n, t, c * f))
        return x, subsampled_lengths(lens).clamp(min=0)
