"""Prediction networks with one step API for every search.

``init_state(batch)`` gives the state before any token (blank context); ``step(tokens, state)``
consumes one token per hypothesis (N,) and returns the output (N, D) and the new state;
``select_state(state, idx)`` reorders/duplicates hypotheses. ``forward(y)`` runs a whole
(N, U) token sequence prefixed by blank for training and returns (N, U + 1, D).

``output_hooks``: callables ``f(out) -> out`` applied, in order, to every output the decoder
returns (``forward``, ``output``, ``step``, and the output cached in a state), so that the
step API and the training forward stay consistent (adapters hook in here).
"""

from __future__ import annotations

from typing import Any, List

import torch
from torch import nn

from sltk.asr.config import ModelConfig


def _apply_hooks(hooks: List, out: torch.Tensor) -> torch.Tensor:
    for hook in hooks:
        out = hook(out)
    return out


class StatelessDecoder(nn.Module):
    """Embedding of the last ``context_size`` tokens, mixed by a grouped 1-D convolution
    (the stateless prediction network of icefall's pruned transducers)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.blank_id = cfg.blank_id
        self.context_size = cfg.context_size
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.decoder_dim)
        self.conv = (nn.Conv1d(cfg.decoder_dim, cfg.decoder_dim, cfg.context_size, groups=cfg.decoder_dim // 4,
                               bias=False) if cfg.context_size > 1 else None)
        self.output_hooks: List = []  # f(out) -> out, on every output (see the module doc)

    def _mix(self, emb: torch.Tensor) -> torch.Tensor:  # (N, U, D) with U >= context
        if self.conv is not None:
            emb = self.conv(emb.transpose(1, 2)).transpose(1, 2)
        return torch.relu(emb)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n = y.size(0)
        pad = torch.full((n, max(self.context_size, 1)), self.blank_id, dtype=y.dtype, device=y.device)
        ctx = torch.cat([pad, y], dim=1)  # blank-padded history
        # (N, U + 1, D): the conv eats context_size - 1
        return _apply_hooks(self.output_hooks, self._mix(self.embedding(ctx)))

    def init_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.full((batch, self.context_size), self.blank_id, dtype=torch.long, device=device)

    def output(self, state: torch.Tensor) -> torch.Tensor:
        """Decoder output for a context state (N, context_size) -> (N, D)."""
        return _apply_hooks(self.output_hooks, self._mix(self.embedding(state))[:, -1])

    def step(self, tokens: torch.Tensor, state: torch.Tensor):
        state = torch.cat([state[:, 1:], tokens[:, None]], dim=1)
        return self.output(state), state

    @staticmethod
    def select_state(state: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return state[idx]


class LSTMDecoder(nn.Module):
    """Embedding + LSTM prediction network (the classic RNN-T; unlimited left context)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.blank_id = cfg.blank_id
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.decoder_dim)
        self.lstm = nn.LSTM(cfg.decoder_dim, cfg.decoder_dim, num_layers=cfg.decoder_layers, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.output_hooks: List = []  # f(out) -> out, on every output (see the module doc)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n = y.size(0)
        blank = torch.full((n, 1), self.blank_id, dtype=y.dtype, device=y.device)
        out, _ = self.lstm(self.embedding(torch.cat([blank, y], dim=1)))
        return _apply_hooks(self.output_hooks, self.drop(out))

    def init_state(self, batch: int, device=None) -> Any:
        # the state *after* consuming the initial blank, with its output cached
        tokens = torch.full((batch,), self.blank_id, dtype=torch.long, device=device)
        h0 = torch.zeros(self.lstm.num_layers, batch, self.lstm.hidden_size, device=device)
        out, (h, c) = self.lstm(self.embedding(tokens)[:, None], (h0, h0.clone()))
        return (h, c, _apply_hooks(self.output_hooks, out[:, 0]))

    def output(self, state) -> torch.Tensor:
        return state[2]

    def step(self, tokens: torch.Tensor, state):
        h, c, _ = state
        out, (h, c) = self.lstm(self.embedding(tokens)[:, None], (h, c))
        o = _apply_hooks(self.output_hooks, out[:, 0])
        return o, (h, c, o)

    @staticmethod
    def select_state(state, idx: torch.Tensor):
        h, c, o = state
        return (h[:, idx], c[:, idx], o[idx])


def build_decoder(cfg: ModelConfig) -> nn.Module:
    return StatelessDecoder(cfg) if cfg.decoder == "stateless" else LSTMDecoder(cfg)
