"""Judges of a conversion, trained on held-apart data: an accent-ID classifier and a
speaker-ID model (both :class:`MelClassifier`: two convolutions and a bidirectional GRU
over normalised log-mels, mean pooling, a linear layer; the pooled vector is the
speaker embedding), and :class:`PhoneRecognizer` (the same encoder with a per-frame phone
output), which gives the source phones when the text is unknown.
"""

from __future__ import annotations

import logging
import random
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger("sltk")


class MelEncoder(nn.Module):
    def __init__(self, num_mels: int = 80, hidden: int = 64):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(num_mels, hidden, 5, padding=2), nn.ReLU(),
                                  nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, num_mels) -> (B, T, 2 * hidden)."""
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.gru(h)[0]


class MelClassifier(nn.Module):
    def __init__(self, num_classes: int, num_mels: int = 80, hidden: int = 64):
        super().__init__()
        self.config = {"num_classes": num_classes, "num_mels": num_mels, "hidden": hidden}
        self.enc = MelEncoder(num_mels, hidden)
        self.out = nn.Linear(self.enc.out_dim, num_classes)

    def embed(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        mask = (torch.arange(x.shape[1])[None, :] < lens[:, None]).float()[:, :, None]
        return (h * mask).sum(1) / mask.sum(1).clamp_min(1)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(x, lens))


class PhoneRecognizer(nn.Module):
    def __init__(self, num_phones: int, num_mels: int = 80, hidden: int = 64):
        super().__init__()
        self.config = {"num_phones": num_phones, "num_mels": num_mels, "hidden": hidden}
        self.enc = MelEncoder(num_mels, hidden)
        self.out = nn.Linear(self.enc.out_dim, num_phones)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.enc(x))


def pad(xs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([x.shape[0] for x in xs])
    out = xs[0].new_zeros(len(xs), int(lens.max()), *xs[0].shape[1:])
    for i, x in enumerate(xs):
        out[i, : x.shape[0]] = x
    return out, lens


def _fit(model: nn.Module, n_items: int, batch_loss, epochs: int, lr: float, batch_size: int, seed: int,
         what: str, metric: str) -> List[float]:
    """Adam over shuffled minibatches of item indices; ``batch_loss(idx, rng)`` gives the
    batch's mean loss, the number of targets it averages and how many it got right. Returns
    the loss per target of each epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = random.Random(seed)
    history = []
    for ep in range(epochs):
        model.train()
        order = list(range(n_items))
        rng.shuffle(order)
        tot, n, correct = 0.0, 0, 0
        for i in range(0, len(order), batch_size):
            loss, count, right = batch_loss(order[i:i + batch_size], rng)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * count
            n += count
            correct += right
        history.append(tot / max(n, 1))
        log.info("%s epoch %d/%d: loss %.4f, %s %.1f%%", what, ep + 1, epochs, history[-1], metric,
                 100.0 * correct / max(n, 1))
    model.eval()
    return history


def train_classifier(model: MelClassifier, xs: List[torch.Tensor], ys: List[int], epochs: int, lr: float = 2e-3,
                     batch_size: int = 16, seed: int = 0, crop: int = 0, desc: str = "judge") -> List[float]:
    """Cross-entropy training on whole utterances (or random ``crop``-frame pieces)."""
    def batch_loss(idx, rng):
        batch = []
        for j in idx:
            x = xs[j]
            if crop and x.shape[0] > crop:
                s = rng.randrange(x.shape[0] - crop + 1)
                x = x[s:s + crop]
            batch.append(x)
        xb, lens = pad(batch)
        y = torch.tensor([ys[j] for j in idx])
        logits = model(xb, lens)
        return F.cross_entropy(logits, y), len(idx), int((logits.argmax(1) == y).sum())

    return _fit(model, len(xs), batch_loss, epochs, lr, batch_size, seed, desc, "train accuracy")


def train_recognizer(model: PhoneRecognizer, xs: List[torch.Tensor], ys: List[torch.Tensor], epochs: int,
                     lr: float = 2e-3, batch_size: int = 16, seed: int = 0) -> List[float]:
    """Frame-level cross-entropy against the aligned phone of every frame."""
    def batch_loss(idx, rng):
        xb, lens = pad([xs[j] for j in idx])
        yb, _ = pad([ys[j] for j in idx])
        mask = torch.arange(xb.shape[1])[None, :] < lens[:, None]
        logits = model(xb)[mask]
        return F.cross_entropy(logits, yb[mask]), int(mask.sum()), int((logits.argmax(1) == yb[mask]).sum())

    return _fit(model, len(xs), batch_loss, epochs, lr, batch_size, seed, "phone recognizer", "frame accuracy")


@torch.no_grad()
def recognize(model: PhoneRecognizer, x: torch.Tensor, phones: Sequence[str], pauses: Sequence[str],
              min_frames: int = 2) -> Tuple[List[List[str]], List[int]]:
    """Units (runs of phones between pauses) and per-phone durations of one utterance
    (T, num_mels) from the frame-wise best phones; runs shorter than ``min_frames`` join
    the run before them."""
    best = model(x[None])[0].argmax(1).tolist()
    runs: List[List[int]] = []
    for b in best:
        if runs and runs[-1][0] == b:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    merged: List[List[int]] = []
    for r in runs:
        if merged and (r[1] < min_frames or merged[-1][0] == r[0]):
            merged[-1][1] += r[1]
        else:
            merged.append(list(r))
    if len(merged) > 1 and merged[0][1] < min_frames:
        merged[1][1] += merged[0][1]
        merged = merged[1:]
    units: List[List[str]] = []
    durs: List[int] = []
    cur: List[str] = []
    for pid, d in merged:
        p = phones[pid] if 0 < pid < len(phones) else "sil"
        durs.append(d)
        if p in pauses:
            if cur:
                units.append(cur)
                cur = []
            units.append([p])
        else:
            cur.append(p)
    if cur:
        units.append(cur)
    return units, durs


def save_dict(model: nn.Module) -> dict:
    return {"config": model.config, "state": model.state_dict()}


def load_classifier(d: dict) -> MelClassifier:
    m = MelClassifier(**d["config"])
    m.load_state_dict(d["state"])
    return m.eval()


def load_recognizer(d: dict) -> PhoneRecognizer:
    m = PhoneRecognizer(**d["config"])
    m.load_state_dict(d["state"])
    return m.eval()
