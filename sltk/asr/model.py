"""The transducer: encoder, prediction network, joiner, and an auxiliary CTC head."""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn

from sltk.asr import loss as L
from sltk.asr.config import ModelConfig
from sltk.asr.decoder import build_decoder
from sltk.asr.encoder import Encoder
from sltk.asr.joiner import Joiner


def pad_targets(ys: Sequence[Sequence[int]], pad: int = 0, device=None):
    """List of token-id lists -> (N, U_max) long tensor and (N,) lengths."""
    lens = torch.tensor([len(y) for y in ys], dtype=torch.long)
    out = torch.full((len(ys), max(1, int(lens.max()) if len(ys) else 1)), pad, dtype=torch.long)
    for i, y in enumerate(ys):
        if len(y):
            out[i, : len(y)] = torch.as_tensor(y, dtype=torch.long)
    return out.to(device), lens.to(device)


class Transducer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = build_decoder(cfg)
        self.joiner = Joiner(cfg.encoder_dim, cfg.decoder_dim, cfg.joiner_dim, cfg.vocab_size)
        # projections for k2's smoothed "simple" loss (am + lm in vocabulary space)
        self.simple_am_proj = nn.Linear(cfg.encoder_dim, cfg.vocab_size)
        self.simple_lm_proj = nn.Linear(cfg.decoder_dim, cfg.vocab_size)
        self.ctc_head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.encoder_dim, cfg.vocab_size))
        # global feature normalisation (CMVN), set from training statistics; part of the weights
        # so that every consumer of a checkpoint normalises the same way
        self.register_buffer("feat_mean", torch.zeros(cfg.feat_dim))
        self.register_buffer("feat_std", torch.ones(cfg.feat_dim))
        # callables f(enc) -> enc applied, in order, to the encoder output before the CTC head only
        # (contextual biasing: sltk.bias.encoder); the transducer path never sees them
        self.ctc_hooks: List = []

    def set_cmvn(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feat_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-5))

    @property
    def blank_id(self) -> int:
        return self.cfg.blank_id

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        """(N, T, F) features -> (N, T', encoder_dim), (N,) lengths after 4x subsampling."""
        return self.encoder((feats - self.feat_mean) / self.feat_std, feat_lens)

    def ctc_logprobs(self, enc: torch.Tensor) -> torch.Tensor:
        """(N, T, encoder_dim) encoder output -> (N, T, vocab) CTC log-probs, through ``ctc_hooks``."""
        for hook in self.ctc_hooks:
            enc = hook(enc)
        return self.ctc_head(enc).log_softmax(-1)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, ys: List[List[int]],
                backend: str = "k2", prune_range: int = 5, am_scale: float = 0.0,
                lm_scale: float = 0.25) -> Dict[str, torch.Tensor]:
        """Losses summed over the batch: ``simple`` and ``pruned`` (k2) or ``rnnt``, plus ``ctc``.

        Utterances whose encoder output is shorter than their token sequence cannot be aligned;
        the caller should filter them (see :func:`sltk.asr.train` batch filtering)."""
        enc, enc_lens = self.encode(feats, feat_lens)
        y, y_lens = pad_targets(ys, pad=self.blank_id, device=feats.device)
        dec = self.decoder(y)  # (N, U+1, D)
        out: Dict[str, torch.Tensor] = {}
        if backend == "k2":
            out["simple"], out["pruned"] = L.pruned_rnnt_loss(
                self.joiner, self.simple_am_proj, self.simple_lm_proj, enc, enc_lens, dec, y, y_lens,
                self.blank_id, prune_range, am_scale, lm_scale)
        else:
            logits = self.joiner(enc[:, :, None, :], dec[:, None, :, :])
            out["rnnt"] = L.rnnt_loss_full(logits, y, enc_lens, y_lens, self.blank_id, backend)
        if self.cfg.ctc_weight > 0:
            out["ctc"] = L.ctc_loss(self.ctc_logprobs(enc), enc_lens, y, y_lens, self.blank_id)
        return out
