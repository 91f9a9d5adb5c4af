"""The joiner: logits(t, u) = out(tanh(enc_proj(h_t) + dec_proj(g_u)))."""

from __future__ import annotations

import torch
from torch import nn


class Joiner(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int):
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output = nn.Linear(joiner_dim, vocab_size)
        self.act = nn.Tanh()  # a module, so that accelerator emulation can swap in its tanh table

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, project_input: bool = True) -> torch.Tensor:
        """``enc`` and ``dec`` broadcast against each other, e.g. (N, T, 1, C) and (N, 1, U+1, D);
        with ``project_input=False`` they are already projected to joiner_dim."""
        if project_input:
            enc, dec = self.encoder_proj(enc), self.decoder_proj(dec)
        return self.output(self.act(enc + dec))
