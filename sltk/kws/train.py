"""Reading data directories, training (BCE on both outputs, max pooling), checkpoints and
per-utterance scoring of :class:`sltk.kws.models.KWSModel`."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from sltk.kws.models import Features, KWSModel, build_model, model_input, utterance_logits
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_path, read_table
from sltk.utils.progress import progress

log = logging.getLogger("sltk")


@dataclass
class Utt:
    utt: str
    mic: str
    ref: Optional[str]
    kw: Optional[int] = None
    dd: Optional[int] = None
    ser: str = "clean"


def _table(path: Path) -> Dict[str, str]:
    return dict(read_table(path)) if path.is_file() else {}


def read_data_dir(data_dir, need_ref: bool = True, need_labels: bool = False) -> List[Utt]:
    """The utterances of a data directory (``wav.scp``, ``ref.scp``, ``utt2kw``, ``utt2dd``,
    ``utt2ser``). A ``ref.scp`` (when needed) or label file missing an utterance of
    ``wav.scp`` is a :class:`UserError` naming the file, the count and the first one."""
    d = Path(data_dir)
    wav = d / "wav.scp"
    if not wav.is_file():
        raise UserError(f"{wav} does not exist")
    mics = dict(read_table(wav))
    if not mics:
        raise UserError(f"{wav} is empty")
    refs = _table(d / "ref.scp")
    if need_ref:
        if not (d / "ref.scp").is_file():
            raise UserError(f"{d / 'ref.scp'} does not exist (the reference signal of each utterance is needed)")
        miss = sorted(set(mics) - set(refs))
        if miss:
            raise UserError(f"{d / 'ref.scp'} lacks {len(miss)} of the {len(mics)} utterances of wav.scp "
                            f"(first: {miss[0]})")
    labels = {k: _table(d / f"utt2{k}") for k in ("kw", "dd")}
    if need_labels:
        for k, tab in labels.items():
            miss = sorted(set(mics) - set(tab))
            if miss:
                raise UserError(f"{d / f'utt2{k}'} lacks {len(miss)} of the {len(mics)} utterances (first: {miss[0]})")
    ser = _table(d / "utt2ser")

    def label(k, u):
        v = labels[k].get(u)
        if v is None:
            return None
        if v not in ("0", "1"):
            raise UserError(f"{d / f'utt2{k}'}: label of {u} must be 0 or 1, got {v!r}")
        return int(v)

    return [Utt(u, mics[u], refs.get(u), label("kw", u), label("dd", u), ser.get(u, "clean")) for u in sorted(mics)]


def read_wav(path: str) -> np.ndarray:
    """A mono 16 kHz wav as float32 in [-1, 1]."""
    try:
        x, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read wav {path}: {e}") from None
    if sr != 16000:
        raise UserError(f"{path}: sample rate {sr}, expected 16000")
    return x[:, 0]


def load_inputs(utts: Sequence[Utt], variant: str, feats: Features, shuffle_ref: bool = False,
                seed: int = 0, desc: str = "features") -> List[torch.Tensor]:
    """Un-normalised model inputs (streams, frames, bins) of each utterance. ``shuffle_ref``
    gives each utterance the reference of another one (a derangement), cut or zero-padded
    to its length (the wrong-reference ablation)."""
    refs = [u.ref for u in utts]
    if shuffle_ref and len(utts) > 1:
        rng = random.Random(seed)
        perm = list(range(len(utts)))
        rng.shuffle(perm)
        perm = perm[1:] + perm[:1]  # a cycle: nobody keeps their own reference
        order = {perm[i]: perm[(i + 1) % len(perm)] for i in range(len(perm))}
        refs = [utts[order[i]].ref for i in range(len(utts))]
    out = []
    for u, r in progress(list(zip(utts, refs)), desc=desc, unit="utt"):
        mic = read_wav(u.mic)
        ref = read_wav(r) if r else None
        out.append(model_input(variant, mic, ref, feats))
    return out


def _batch(xs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([x.shape[1] for x in xs])
    T = max(int(lengths.max()), 1)
    b = torch.zeros(len(xs), xs[0].shape[0], T, xs[0].shape[2])
    for i, x in enumerate(xs):
        b[i, :, : x.shape[1]] = x
    return b, lengths


def save_checkpoint(path, model: KWSModel, extra: Optional[dict] = None) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": model.config, "state": model.state_dict(), **(extra or {})}, tmp)


def load_model(path) -> Tuple[KWSModel, dict]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        model = build_model(ck["config"])
        model.load_state_dict(ck["state"])
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{p} is not a kws-aec model checkpoint: {e}") from None
    return model.eval(), ck


def train(data_dir, out_dir, variant: str = "mic", epochs: int = 10, batch_size: int = 16, lr: float = 2e-3,
          channels: int = 48, num_mel_bins: int = 40, seed: int = 0, max_utts: int = 0) -> Path:
    """Train a model on a data directory; checkpoints ``epoch-N.pt`` and ``final.pt`` in
    ``out_dir``; resumes from the last ``epoch-N.pt`` with the same configuration."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    utts = read_data_dir(data_dir, need_ref=variant != "mic", need_labels=True)
    if max_utts:
        utts = utts[:max_utts]
    feats = Features(num_mel_bins)
    model = KWSModel(variant, num_mel_bins, channels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    done = sorted(out.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if done:
        _, ck = load_model(done[-1])
        if ck["config"] != model.config:
            raise UserError(f"{done[-1]} has another model configuration ({ck['config']}); use a new directory")
        model.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        start = ck["epoch"]
        log.info("resuming from %s (epoch %d)", done[-1], start)
    if start >= epochs:
        save_checkpoint(out / "final.pt", model.eval(), {"epoch": start})
        return out / "final.pt"
    xs = load_inputs(utts, variant, feats)
    xs_ok = [(x, u) for x, u in zip(xs, utts) if x.shape[1] > 0]
    bad = [u.utt for x, u in xs_ok if not bool(torch.isfinite(x).all())]
    if bad:
        raise UserError(f"non-finite input features in {len(bad)} utterance(s) of {data_dir} "
                        f"(variant {variant}), e.g. {', '.join(bad[:3])}")
    if not xs_ok:
        raise UserError(f"no utterance of {data_dir} is long enough for one frame")
    if start == 0:
        mic = torch.cat([x[0] for x, _ in xs_ok])
        model.set_normalization(mic.mean(0), mic.std(0))
    y = torch.tensor([[u.kw, u.dd] for _, u in xs_ok], dtype=torch.float32)
    for epoch in range(start, epochs):
        model.train()
        order = list(range(len(xs_ok)))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        total, n = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            xb, lens = _batch([xs_ok[j][0] for j in idx])
            logits = utterance_logits(model(xb), lens)
            loss = F.binary_cross_entropy_with_logits(logits, y[idx])
            if not torch.isfinite(loss):
                raise UserError(f"epoch {epoch + 1}: non-finite loss on utterances "
                                f"{', '.join(xs_ok[j][1].utt for j in idx[:3])}, ...; nothing saved for this epoch")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += float(loss) * len(idx)
            n += len(idx)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, total / max(n, 1))
        save_checkpoint(out / f"epoch-{epoch + 1}.pt", model,
                        {"optimizer": opt.state_dict(), "epoch": epoch + 1, "loss": total / max(n, 1)})
    model.eval()
    save_checkpoint(out / "final.pt", model, {"epoch": epochs})
    return out / "final.pt"


@torch.no_grad()
def score(model: KWSModel, utts: Sequence[Utt], shuffle_ref: bool = False, seed: int = 0,
          batch_size: int = 16) -> Dict[str, Tuple[float, float]]:
    """Utterance scores (keyword, device-directed) in [0, 1]: sigmoid of the max-pooled logits."""
    feats = Features(model.config["num_mel_bins"])
    xs = load_inputs(utts, model.variant, feats, shuffle_ref, seed, desc="score")
    out = {}
    model.eval()
    for i in range(0, len(xs), batch_size):
        chunk = [(u, x) for u, x in zip(utts[i: i + batch_size], xs[i: i + batch_size])]
        ok = [(u, x) for u, x in chunk if x.shape[1] > 0]
        for u, x in chunk:
            if x.shape[1] == 0:
                out[u.utt] = (0.0, 0.0)
        if ok:
            xb, lens = _batch([x for _, x in ok])
            p = torch.sigmoid(utterance_logits(model(xb), lens))
            for (u, _), s in zip(ok, p.tolist()):
                out[u.utt] = (s[0], s[1])
    return out
