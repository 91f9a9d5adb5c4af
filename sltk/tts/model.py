"""A FastSpeech2-like acoustic model with VAE prosody embeddings at a chosen granularity.

::

    phonemes (+ emphasis marks) -> encoder (convolutions + self-attention) -> h (B, N, D)
    h + proj(z[unit of each phoneme]) -> duration predictor (log(1 + frames))
                                      -> pitch predictor (phoneme log2-F0 and voicing)
    ... + proj(pitch, voicing)        -> length regulator (each phoneme repeated by its duration)
                                      -> decoder (dilated residual convolutions) -> log-mel

The pitch predictor is FastSpeech2's variance adaptor at phoneme level: it predicts each
phoneme's mean log2-F0 (normalised by the training set's mean and deviation) and whether
it is voiced; in training the decoder gets the recording's values (teacher forcing), in
inference the predicted ones.

The prosody embedding z comes, in training and for "oracle" synthesis, from a **reference
encoder** over the recording's mel frames (convolutions + a bidirectional GRU, per-frame
states), pooled at the model's **granularity** and turned into a Gaussian posterior
(mu, log-variance), sampled with the reparameterisation trick (a VAE; KL to N(0, I)):

==========  ========================================================================
none        no embedding (the baseline)
utterance   the mean of the states over all frames: one z, broadcast to every phoneme
word        the state at each unit's (word's or pause's) middle frame: one z per unit,
            broadcast to the unit's phonemes
phoneme     the mean of the states over each phoneme's frames: one z per phoneme
==========  ========================================================================

A **text-side predictor** learns the posterior means from the text alone (with the encoder's
states, stopped gradients): the phoneme states are averaged per unit, a bidirectional GRU
runs over the units (a small word-level model), and a linear layer gives one z per
utterance (the mean over units), per unit, or per phoneme (with the phoneme's own state).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

GRANULARITIES = ("none", "utterance", "word", "phoneme")


@dataclass
class ModelConfig:
    vocab: Tuple[str, ...] = ()
    granularity: str = "word"
    num_mels: int = 80
    dim: int = 128
    z_dim: int = 8
    ref_dim: int = 64           # GRU size (per direction) of the reference encoder
    pred_dim: int = 64          # GRU size (per direction) of the text-side predictor
    enc_layers: int = 3
    dec_layers: int = 4
    attention_heads: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vocab"] = list(self.vocab)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["vocab"] = tuple(d.get("vocab", ()))
        return cls(**d)


# ---------------------------------------------------------------------- pure functions
def length_regulate(x: torch.Tensor, durations: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Repeat each phoneme's vector by its duration: x (B, N, D), durations (B, N) integers
    >= 0 -> (B, T, D) with T the longest total, zero-padded, and the frame counts (B,)."""
    lens = durations.sum(1)
    T = int(lens.max()) if len(lens) else 0
    out = x.new_zeros(x.shape[0], max(T, 1), x.shape[2])
    for b in range(x.shape[0]):
        e = torch.repeat_interleave(x[b], durations[b].clamp_min(0), dim=0)
        out[b, : e.shape[0]] = e
    return out[:, :T] if T > 0 else out[:, :0], lens


def frame_phone_index(durations: torch.Tensor) -> torch.Tensor:
    """(B, T) index of the phoneme of every frame (pad frames: 0)."""
    B = durations.shape[0]
    T = int(durations.sum(1).max()) if B else 0
    out = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        idx = torch.repeat_interleave(torch.arange(durations.shape[1]), durations[b].clamp_min(0))
        out[b, : len(idx)] = idx
    return out


def frame_position(durations: torch.Tensor) -> torch.Tensor:
    """(B, T, 2): each frame's position within its phoneme in [0, 1), and 1 / duration."""
    B = durations.shape[0]
    T = int(durations.sum(1).max()) if B else 0
    out = torch.zeros(B, T, 2)
    for b in range(B):
        d = durations[b][durations[b] > 0]
        if len(d) == 0:
            continue
        starts = torch.cumsum(d, 0) - d
        idx = torch.repeat_interleave(torch.arange(len(d)), d)
        pos = torch.arange(int(d.sum())) - starts[idx]
        out[b, : len(idx), 0] = pos.float() / d[idx].float()
        out[b, : len(idx), 1] = 1.0 / d[idx].float()
    return out


def word_middle_frames(durations: torch.Tensor, word_index: torch.Tensor, num_units: int) -> torch.Tensor:
    """For one utterance: the middle frame ``start + (frames - 1) // 2`` of each unit's span
    of frames (units of 0 frames: their start, clipped to the last frame). (N,) -> (U,)."""
    ends = torch.cumsum(durations, 0)
    starts = ends - durations
    out = torch.zeros(num_units, dtype=torch.long)
    total = int(ends[-1]) if len(ends) else 0
    for u in range(num_units):
        sel = word_index == u
        if not bool(sel.any()):
            continue
        s, e = int(starts[sel].min()), int(ends[sel].max())
        out[u] = min(s + max(e - s - 1, 0) // 2, max(total - 1, 0))
    return out


def unit_mean(x: torch.Tensor, index: torch.Tensor, num: int, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, L, D) over positions with the same index (B, L) -> (B, num, D)."""
    B, L, D = x.shape
    w = mask.float()
    s = x.new_zeros(B, num, D).scatter_add_(1, index.clamp(0, num - 1)[..., None].expand(B, L, D), x * w[..., None])
    c = x.new_zeros(B, num).scatter_add_(1, index.clamp(0, num - 1), w)
    return s / c.clamp_min(1.0)[..., None]


def sequence_mask(lens: torch.Tensor, T: Optional[int] = None) -> torch.Tensor:
    T = int(lens.max()) if T is None else T
    return torch.arange(T)[None, :] < lens[:, None]


def _sinusoids(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float32)[None, :]
    ang = pos / torch.pow(10000.0, i / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : d // 2])
    return pe


# ---------------------------------------------------------------------- modules
class ConvBlock(nn.Module):
    def __init__(self, dim: int, kernel: int = 5, dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):  # x (B, L, D), mask (B, L)
        y = self.conv((x * mask[..., None]).transpose(1, 2)).transpose(1, 2)
        return self.norm(x + self.drop(F.relu(y))) * mask[..., None]


class RefEncoder(nn.Module):
    """Convolutions (the second with stride 2) and a bidirectional GRU at half the frame rate;
    each state is repeated back to the two frames it covers."""

    def __init__(self, num_mels: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(num_mels, 2 * dim, 3, padding=1)
        self.conv2 = nn.Conv1d(2 * dim, 2 * dim, 3, padding=1, stride=2)
        self.gru = nn.GRU(2 * dim, dim, batch_first=True, bidirectional=True)

    def forward(self, mel, lens):  # (B, T, M) -> (B, T, 2*dim)
        T = mel.shape[1]
        x = F.relu(self.conv1(mel.transpose(1, 2)))
        x = F.relu(self.conv2(x)).transpose(1, 2)
        half = ((lens + 1) // 2).clamp(1, x.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(x, half.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.gru(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return torch.repeat_interleave(y, 2, dim=1)[:, :T]


class TTSModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
        self.cfg = cfg
        D = cfg.dim
        self.embed = nn.Embedding(len(cfg.vocab) + 2, D, padding_idx=0)  # 0 pad, 1 unknown
        self.emph = nn.Embedding(2, D)
        self.enc = nn.ModuleList([ConvBlock(D, 5, 1, cfg.dropout) for _ in range(cfg.enc_layers)])
        self.attn = nn.TransformerEncoderLayer(D, cfg.attention_heads, 2 * D, cfg.dropout, batch_first=True)
        self.register_buffer("pe", _sinusoids(1024, D), persistent=False)
        self.dur = nn.ModuleList([ConvBlock(D, 3, 1, cfg.dropout) for _ in range(2)])
        self.dur_out = nn.Linear(D, 1)
        self.pitch = nn.ModuleList([ConvBlock(D, 3, 1, cfg.dropout) for _ in range(2)])
        self.pitch_out = nn.Linear(D, 2)       # normalised log2-F0, voicing logit
        self.pitch_proj = nn.Linear(2, D)
        self.register_buffer("f0_mean", torch.tensor(7.0))   # log2 Hz
        self.register_buffer("f0_std", torch.tensor(0.3))
        self.pos = nn.Linear(2, D)
        self.dec = nn.ModuleList([ConvBlock(D, 5, d, cfg.dropout) for d in (1, 2, 4, 1, 2, 4)[: cfg.dec_layers]])
        self.mel_out = nn.Linear(D, cfg.num_mels)
        self.register_buffer("mel_mean", torch.zeros(cfg.num_mels))
        self.register_buffer("mel_std", torch.ones(cfg.num_mels))
        self.phone_ids = {p: i + 2 for i, p in enumerate(cfg.vocab)}
        if cfg.granularity != "none":
            self.ref = RefEncoder(cfg.num_mels, cfg.ref_dim)
            self.post = nn.Linear(2 * cfg.ref_dim, 2 * cfg.z_dim)
            self.z_proj = nn.Linear(cfg.z_dim, D)
            self.pred_gru = nn.GRU(D, cfg.pred_dim, batch_first=True, bidirectional=True)
            self.pred_out = nn.Linear(2 * cfg.pred_dim + (D if cfg.granularity == "phoneme" else 0), cfg.z_dim)

    # ------------------------------------------------------------------ helpers
    def encode_phones(self, phones: List[str]) -> Tuple[torch.Tensor, List[str]]:
        unknown = sorted(set(p for p in phones if p not in self.phone_ids))
        return torch.tensor([self.phone_ids.get(p, 1) for p in phones], dtype=torch.long), unknown

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp_min(1e-3))

    def normalize(self, mel):
        return (mel - self.mel_mean) / self.mel_std

    def denormalize(self, mel):
        return mel * self.mel_std + self.mel_mean

    def num_units(self, batch: Dict) -> int:
        return int(batch["num_units"].max())

    # ------------------------------------------------------------------ parts
    def encoder(self, phones, emph, pmask):
        x = self.embed(phones) + self.emph(emph)
        for blk in self.enc:
            x = blk(x, pmask)
        x = x + self.pe[: x.shape[1]][None]
        x = self.attn(x, src_key_padding_mask=~pmask)
        return x * pmask[..., None]

    def unit_index(self, batch: Dict) -> torch.Tensor:
        """(B, N) index of each phoneme's embedding for the model's granularity."""
        g = self.cfg.granularity
        if g == "utterance":
            return torch.zeros_like(batch["phones"])
        if g == "word":
            return batch["word_index"]
        return torch.arange(batch["phones"].shape[1])[None].expand_as(batch["phones"])

    def num_embeddings(self, batch: Dict) -> int:
        g = self.cfg.granularity
        return 1 if g == "utterance" else (self.num_units(batch) if g == "word" else batch["phones"].shape[1])

    def embedding_mask(self, batch: Dict) -> torch.Tensor:
        g = self.cfg.granularity
        B = batch["phones"].shape[0]
        if g == "utterance":
            return torch.ones(B, 1, dtype=torch.bool)
        if g == "word":
            return sequence_mask(batch["num_units"], self.num_units(batch))
        return batch["phones"] != 0

    def posterior(self, batch: Dict) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, K, z_dim), from the recordings' mel and durations."""
        g = self.cfg.granularity
        mel = self.normalize(batch["mel"])
        lens = batch["mel_lens"]
        fmask = sequence_mask(lens, mel.shape[1])
        h = self.ref(mel * fmask[..., None], lens)
        if g == "utterance":
            pooled = (h * fmask[..., None]).sum(1, keepdim=True) / lens.clamp_min(1)[:, None, None].float()
        elif g == "word":
            U = self.num_units(batch)
            idx = torch.stack([word_middle_frames(batch["durations"][b], batch["word_index"][b], U)
                               for b in range(mel.shape[0])])
            pooled = torch.gather(h, 1, idx[..., None].expand(-1, -1, h.shape[2]))
        else:
            fidx = frame_phone_index(batch["durations"])
            pooled = unit_mean(h, fidx, batch["phones"].shape[1], fmask)
        mu, logvar = self.post(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 4.0)

    def predict_embedding(self, enc: torch.Tensor, batch: Dict) -> torch.Tensor:
        """The text-side predictor's z (B, K, z_dim)."""
        g = self.cfg.granularity
        pmask = batch["phones"] != 0
        U = self.num_units(batch)
        units = unit_mean(enc.detach(), batch["word_index"], U, pmask)
        packed = nn.utils.rnn.pack_padded_sequence(units, batch["num_units"].cpu().clamp_min(1), batch_first=True,
                                                   enforce_sorted=False)
        y, _ = self.pred_gru(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=U)
        if g == "utterance":
            m = sequence_mask(batch["num_units"], U).float()
            return self.pred_out((y * m[..., None]).sum(1, keepdim=True) / m.sum(1).clamp_min(1)[:, None, None])
        if g == "word":
            return self.pred_out(y)
        ctx = torch.gather(y, 1, batch["word_index"][..., None].expand(-1, -1, y.shape[2]))
        return self.pred_out(torch.cat([ctx, enc.detach()], -1))

    def broadcast(self, z: torch.Tensor, batch: Dict) -> torch.Tensor:
        idx = self.unit_index(batch)
        return torch.gather(z, 1, idx[..., None].expand(-1, -1, z.shape[2]))

    def decode(self, h, durations):
        x, lens = length_regulate(h, durations)
        fmask = sequence_mask(lens, x.shape[1])
        x = x + self.pos(frame_position(durations)[:, : x.shape[1]])
        for blk in self.dec:
            x = blk(x, fmask)
        return self.mel_out(x) * fmask[..., None], lens

    def set_pitch_normalization(self, mean: float, std: float) -> None:
        self.f0_mean.fill_(float(mean))
        self.f0_std.fill_(max(float(std), 1e-3))

    def pitch_of(self, h, pmask):
        """(normalised log2-F0, voicing logit), each (B, N)."""
        x = h
        for blk in self.pitch:
            x = blk(x, pmask)
        p = self.pitch_out(x) * pmask[..., None]
        return p[..., 0], p[..., 1]

    def add_pitch(self, h, pitch_norm, voiced, pmask):
        feat = torch.stack([pitch_norm * voiced, voiced], -1)
        return h + self.pitch_proj(feat) * pmask[..., None]

    def durations_of(self, h, pmask):
        x = h
        for blk in self.dur:
            x = blk(x, pmask)
        return self.dur_out(x).squeeze(-1) * pmask  # log(1 + frames)

    # ------------------------------------------------------------------ training
    def forward(self, batch: Dict, beta: float = 0.001) -> Dict[str, torch.Tensor]:
        pmask = batch["phones"] != 0
        enc = self.encoder(batch["phones"], batch["emphasis"], pmask)
        out = {}
        h = enc
        if self.cfg.granularity != "none":
            mu, logvar = self.posterior(batch)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            emask = self.embedding_mask(batch).float()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
            out["kl"] = (kl * emask).sum() / emask.sum()
            pred = self.predict_embedding(enc, batch)
            out["pred"] = (((pred - mu.detach()) ** 2).mean(-1) * emask).sum() / emask.sum()
            h = enc + self.z_proj(self.broadcast(z, batch)) * pmask[..., None]
        logd = self.durations_of(h, pmask)
        target = torch.log1p(batch["durations"].float())
        out["dur"] = (((logd - target) ** 2) * pmask).sum() / pmask.sum()
        p_hat, v_logit = self.pitch_of(h, pmask)
        pf = pmask.float()
        if "pitch" in batch:
            v = batch["voiced"] * pf
            p_norm = (batch["pitch"] - self.f0_mean) / self.f0_std * v
            out["pitch"] = (((p_hat - p_norm) ** 2) * v).sum() / v.sum().clamp_min(1.0)
            out["voicing"] = (F.binary_cross_entropy_with_logits(v_logit, v, reduction="none") * pf).sum() / pf.sum()
        else:  # no F0 in the data: the decoder gets the predictions (nothing to learn them from)
            p_norm, v = p_hat.detach(), (torch.sigmoid(v_logit) > 0.5).float().detach() * pf
        h = self.add_pitch(h, p_norm, v, pmask)
        mel_hat, lens = self.decode(h, batch["durations"])
        fmask = sequence_mask(lens, mel_hat.shape[1]).float()
        tgt = self.normalize(batch["mel"][:, : mel_hat.shape[1]])
        out["mel"] = ((mel_hat - tgt).abs().mean(-1) * fmask).sum() / fmask.sum()
        loss = out["mel"] + out["dur"] + 0.1 * (out.get("pitch", 0.0) + out.get("voicing", 0.0))
        if self.cfg.granularity != "none":
            loss = loss + beta * out["kl"] + out["pred"]
        out["loss"] = loss
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(self, batch: Dict, source: str = "predict", speed: float = 1.0,
              durations: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None) -> Dict:
        """Synthesize one batch. ``source``: ``oracle`` (the posterior mean of the recording in
        ``batch["mel"]`` with its ``durations``), ``predict`` (the text-side predictor),
        ``zero`` (the prior mean) or ``given`` (``z``). ``durations`` (B, N) forces the
        phoneme durations (else predicted, divided by ``speed``). Returns {"mel" (B, T, M)
        log-mel, "mel_lens", "durations", "z", "log2_f0" and "voiced" (B, N): the predicted
        phoneme pitch (0 where predicted unvoiced)}."""
        pmask = batch["phones"] != 0
        enc = self.encoder(batch["phones"], batch["emphasis"], pmask)
        h, zz = enc, None
        if self.cfg.granularity != "none":
            if source == "oracle":
                zz, _ = self.posterior(batch)
            elif source == "predict":
                zz = self.predict_embedding(enc, batch)
            elif source == "zero":
                zz = enc.new_zeros(enc.shape[0], self.num_embeddings(batch), self.cfg.z_dim)
            elif source == "given":
                zz = z
            else:
                raise ValueError(f"unknown embedding source {source!r}")
            h = enc + self.z_proj(self.broadcast(zz, batch)) * pmask[..., None]
        if durations is None:
            logd = self.durations_of(h, pmask)
            durations = (torch.round(torch.expm1(logd).clamp_min(0) / speed).long().clamp_min(1)) * pmask.long()
        p_hat, v_logit = self.pitch_of(h, pmask)
        voiced = (torch.sigmoid(v_logit) > 0.5).float() * pmask.float()
        h = self.add_pitch(h, p_hat, voiced, pmask)
        mel, lens = self.decode(h, durations)
        log2_f0 = (p_hat * self.f0_std + self.f0_mean) * voiced
        return {"mel": self.denormalize(mel), "mel_lens": lens, "durations": durations, "z": zz,
                "log2_f0": log2_f0, "voiced": voiced}


def make_batch(items: List[dict]) -> Dict[str, torch.Tensor]:
    """Pad utterances given as dicts of ``phones`` (N,) ids, ``emphasis`` (N,), ``word_index``
    (N,), optional ``durations`` (N,), ``mel`` (T, M), and ``pitch`` (N,) log2-F0 with
    ``voiced`` (N,) (all items or none)."""
    B = len(items)
    N = max(len(it["phones"]) for it in items)
    out = {"phones": torch.zeros(B, N, dtype=torch.long), "emphasis": torch.zeros(B, N, dtype=torch.long),
           "word_index": torch.zeros(B, N, dtype=torch.long), "durations": torch.zeros(B, N, dtype=torch.long),
           "num_units": torch.tensor([int(it["word_index"].max()) + 1 for it in items])}
    for b, it in enumerate(items):
        n = len(it["phones"])
        out["phones"][b, :n] = it["phones"]
        out["emphasis"][b, :n] = it["emphasis"]
        out["word_index"][b, :n] = it["word_index"]
        if "durations" in it:
            out["durations"][b, :n] = it["durations"]
    if all("pitch" in it for it in items):
        out["pitch"] = torch.zeros(B, N)
        out["voiced"] = torch.zeros(B, N)
        for b, it in enumerate(items):
            out["pitch"][b, : len(it["pitch"])] = it["pitch"]
            out["voiced"][b, : len(it["voiced"])] = it["voiced"]
    if all("mel" in it for it in items):
        T = max(it["mel"].shape[0] for it in items)
        M = items[0]["mel"].shape[1]
        out["mel"] = torch.zeros(B, T, M)
        out["mel_lens"] = torch.tensor([it["mel"].shape[0] for it in items])
        for b, it in enumerate(items):
            out["mel"][b, : it["mel"].shape[0]] = it["mel"]
    return out


def param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


