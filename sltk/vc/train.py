"""Training the accent-conversion system on a non-parallel ``train`` set (:mod:`sltk.vc.data`).

Preparation (``prep.pt``, computed once): log-mels (:func:`sltk.tts.features.log_mel`), the
phones of every utterance in its accent, a forced aligner
(:class:`sltk.tts.align.GaussianAligner`, flat start) and the phone durations it gives, the
phone vocabulary, the per-accent :class:`~sltk.vc.convert.DurationModel`, the
:class:`~sltk.vc.convert.PhoneMapper` (from the training texts phonemized in every accent),
the mel normalisation and a :class:`~sltk.vc.judges.PhoneRecognizer` (for sources without
text). Then the flow is trained by maximum likelihood on random crops, an epoch at a time;
``last.pt`` holds the model, the optimizer and the epoch, so rerunning resumes. ``final.pt``
holds everything conversion needs.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Tuple

import torch

from sltk.audio.io import read_audio
from sltk.tts.align import GaussianAligner
from sltk.tts.features import MelConfig, log_mel
from sltk.tts.model import frame_position
from sltk.tts.phonemize import Phonemized
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_path
from sltk.utils.progress import progress
from sltk.vc.accents import PhoneVocab, phonemize_accent
from sltk.vc.convert import DurationModel, PhoneMapper, flatten
from sltk.vc.data import Utt, read_set
from sltk.vc.flow import AccentFlow, FlowConfig, nll_per_dim
from sltk.vc.judges import PhoneRecognizer, save_dict, train_recognizer

log = logging.getLogger("sltk")
KIND = "convert-accent-flow"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    crop: int = 64                  # frames per training piece
    lr: float = 1e-3
    steps: int = 6                  # flow steps
    hidden: int = 96
    noise: float = 0.05             # dequantisation noise (normalised units)
    aligner_iterations: int = 6
    recognizer_epochs: int = 8
    seed: int = 0
    cond_prior: bool = False        # conditional base distribution (sltk.vc.flow.CondAffine)
    cond_context: int = 0           # dilated context convolutions of the conditioning (sltk.vc.flow.CondEncoder)

    def to_dict(self) -> dict:
        return asdict(self)


def load_mel(wav: str, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    x, _ = read_audio(wav, expected_sample_rate=cfg.sample_rate)
    return log_mel(x, cfg)


def utt_units(u: Utt) -> List[List[str]]:
    if u.phones:
        try:
            return Phonemized.from_line(u.phones).unit_phones
        except ValueError as e:
            raise UserError(f"phones of {u.utt}: {e}") from None
    return phonemize_accent(u.text, u.accent).unit_phones


def frame_inputs(vocab: PhoneVocab, phones: List[str], durations: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(T,) phone ids and (T, 2) positions of each frame."""
    d = torch.tensor(durations, dtype=torch.long)
    ids = torch.repeat_interleave(torch.tensor(vocab.ids(phones), dtype=torch.long), d)
    pos = frame_position(d[None])[0]
    return ids, pos


def prepare(utts: List[Utt], cfg: TrainConfig, mel_cfg: MelConfig) -> dict:
    accents = sorted({u.accent for u in utts})
    speakers = sorted({u.speaker for u in utts})
    mels, units = [], []
    for u in progress(utts, desc="features", unit="utt"):
        mels.append(load_mel(u.wav, mel_cfg))
        units.append(utt_units(u))
    seqs = [flatten(x)[0] for x in units]
    for u, m, s in zip(utts, mels, seqs):
        if m.shape[0] < len(s):
            raise UserError(f"{u.utt} has {m.shape[0]} frames for {len(s)} phones (audio too short)")
    aligner = GaussianAligner(mel_cfg.num_mels)
    aligner.train([m.numpy() for m in mels], seqs, iterations=cfg.aligner_iterations)
    durs = [aligner.align(m.numpy(), s).tolist() for m, s in zip(mels, seqs)]
    # texts in every accent: the phone vocabulary and the phoneme-to-phoneme model
    texts = sorted({u.text for u in utts})
    by_acc = {a: [phonemize_accent(t, a).unit_phones for t in texts] for a in accents}
    vocab = PhoneVocab([p for s in seqs for p in s] + [p for a in accents for us in by_acc[a] for u in us for p in u])
    p2p = PhoneMapper().fit({(a, b): list(zip(by_acc[a], by_acc[b])) for a in accents for b in accents if a != b})
    dur = DurationModel().fit([(u.accent, s, d) for u, s, d in zip(utts, seqs, durs)])
    allm = torch.cat(mels)
    mean, std = allm.mean(0), allm.std(0).clamp_min(1e-2)
    torch.manual_seed(cfg.seed)
    rec = PhoneRecognizer(len(vocab), mel_cfg.num_mels)
    if cfg.recognizer_epochs:
        xs = [(m - mean) / std for m in mels]
        ys = [frame_inputs(vocab, s, d)[0] for s, d in zip(seqs, durs)]
        train_recognizer(rec, xs, ys, cfg.recognizer_epochs, seed=cfg.seed)
    return {"accents": accents, "speakers": speakers, "vocab": vocab.to_list(), "aligner": aligner.to_dict(),
            "durations": dur.to_dict(), "p2p": p2p.to_dict(), "norm": {"mean": mean, "std": std},
            "recognizer": save_dict(rec), "mel": mel_cfg.to_dict(),
            "utts": [u.utt for u in utts], "mels": mels, "phones": seqs, "durs": durs}


def _save(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(data_dir, out_dir, cfg: TrainConfig, max_utts: int = 0) -> Path:
    """Train on ``data_dir``; returns the path of ``final.pt`` (see the module doc)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = read_set(data_dir)
    if max_utts:
        utts = utts[:max_utts]
    mel_cfg = MelConfig()
    prep_path = out / "prep.pt"
    if prep_path.is_file():
        prep = torch.load(prep_path, weights_only=False)
        if prep["utts"] != [u.utt for u in utts]:
            raise UserError(f"{prep_path} was prepared from other utterances; use a new directory")
        log.info("loaded %s", prep_path)
    else:
        prep = prepare(utts, cfg, mel_cfg)
        _save(prep_path, prep)
    vocab = PhoneVocab.from_list(prep["vocab"])
    fcfg = FlowConfig(num_mels=mel_cfg.num_mels, num_phones=len(vocab), num_speakers=len(prep["speakers"]),
                      num_accents=len(prep["accents"]), steps=cfg.steps, hidden=cfg.hidden,
                      cond_prior=cfg.cond_prior, cond_context=cfg.cond_context)
    torch.manual_seed(cfg.seed)
    model = AccentFlow(fcfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    spk = {s: i for i, s in enumerate(prep["speakers"])}
    acc = {a: i for i, a in enumerate(prep["accents"])}
    mean, std = prep["norm"]["mean"], prep["norm"]["std"]
    data = []
    for u, m, s, d in zip(utts, prep["mels"], prep["phones"], prep["durs"]):
        ids, pos = frame_inputs(vocab, s, d)
        data.append(((m - mean) / std, ids, pos, spk[u.speaker], acc[u.accent]))
    start, history = 0, []
    last = out / "last.pt"
    if last.is_file():
        ck = torch.load(last, weights_only=False)
        # keys added since the checkpoint was written take their defaults
        if FlowConfig(**ck["config"]) != fcfg or TrainConfig(**ck["train_config"]) != cfg:
            raise UserError(f"{last} was trained with another configuration; use a new directory")
        model.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        start, history = ck["epoch"], ck["history"]
        log.info("resuming from %s (epoch %d)", last, start)
    total_frames = sum(x[0].shape[0] for x in data)
    min_len = min(x[0].shape[0] for x in data)
    crop = min(cfg.crop, min_len)
    steps = max(1, math.ceil(total_frames / (cfg.batch_size * crop)))
    margin = model.encoder.receptive_field
    for epoch in range(start, cfg.epochs):
        rng = random.Random(f"{cfg.seed}-{epoch}")
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        tot = 0.0
        for _ in progress(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch"):
            xs, conds = [], []
            for _ in range(cfg.batch_size):
                x, i, p, s, a = data[rng.randrange(len(data))]
                o = rng.randrange(x.shape[0] - crop + 1)
                xs.append(x[o:o + crop])
                # the conditioning sees the frames around the crop, as it does at conversion
                lo, hi = max(0, o - margin), min(x.shape[0], o + crop + margin)
                c = model.condition(i[None, lo:hi], p[None, lo:hi], torch.tensor([s]), torch.tensor([a]))
                conds.append(c[0, :, o - lo:o - lo + crop])
            x = torch.stack(xs)
            x = x + cfg.noise * torch.randn(x.shape, generator=gen)
            cond = torch.stack(conds)
            loss = nll_per_dim(model, x, cond)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot += float(loss)
        history.append(tot / steps)
        log.info("epoch %d/%d: negative log-likelihood %.4f nats per frame and channel", epoch + 1, cfg.epochs,
                 history[-1])
        _save(last, {"config": fcfg.to_dict(), "train_config": cfg.to_dict(), "state": model.state_dict(),
                     "optimizer": opt.state_dict(), "epoch": epoch + 1, "history": history})
    model.eval()
    final = out / "final.pt"
    keep = {k: v for k, v in prep.items() if k not in ("mels", "phones", "durs", "utts")}
    _save(final, {"kind": KIND, "config": fcfg.to_dict(), "state": model.state_dict(),
                  "train_config": cfg.to_dict(), "epoch": cfg.epochs, "history": history, **keep})
    return final
