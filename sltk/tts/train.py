"""Training the acoustic model (:mod:`sltk.tts.model`) on an alignment directory, with resume,
logs and progress, and loading a trained model for synthesis.

:func:`train` writes ``epoch-N.pt`` (model, optimizer, RNG states) after every epoch and
``final.pt`` at the end, and resumes from the newest ``epoch-N.pt`` of ``exp_dir`` when its
configuration is the same but for the number of epochs (so a run can also be extended;
another configuration is an error: use a new directory).
``train.log.jsonl`` gets one line of losses per epoch. A checkpoint holds the model
configuration, the mel configuration, the aligner (so ``--reference`` recordings can be
aligned at synthesis time) and the espeak-ng voice of the phonemizer.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from sltk.tts.dataset import copy_aligner, phone_log_f0, read_align_dir
from sltk.tts.features import MelConfig
from sltk.tts.model import GRANULARITIES, ModelConfig, TTSModel, make_batch, param_count
from sltk.tts.phonemize import Phonemized
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path
from sltk.utils.progress import progress

log = logging.getLogger("sltk")


@dataclass
class TrainConfig:
    granularity: str = "word"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    kl_weight: float = 0.001     # beta of the KL term (annealed from 0 over the first 30% of epochs)
    dim: int = 128
    z_dim: int = 8
    seed: int = 0
    max_utts: int = 0
    predictor_epochs: int = 0    # then refit the text-side predictor alone on the converged posteriors


def utt_item(model: TTSModel, ph: Phonemized, durations=None, mel=None, f0=None) -> dict:
    ids, unknown = model.encode_phones(ph.phones)
    if unknown:
        log.warning("phonemes unseen in training (read as unknown): %s", " ".join(unknown))
    it = {"phones": ids, "emphasis": torch.tensor(ph.phone_emphasis, dtype=torch.long),
          "word_index": torch.tensor(ph.word_index, dtype=torch.long)}
    if durations is not None:
        it["durations"] = torch.as_tensor(np.asarray(durations), dtype=torch.long)
    if mel is not None:
        it["mel"] = torch.as_tensor(mel, dtype=torch.float32)
    if f0 is not None and durations is not None:
        p, v = phone_log_f0(f0, np.asarray(durations))
        it["pitch"], it["voiced"] = torch.tensor(p, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)
    return it


def save_checkpoint(path, model: TTSModel, meta: dict, extra: Optional[dict] = None) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": model.cfg.to_dict(), "state": model.state_dict(), **meta, **(extra or {})}, tmp)


def load_model(path) -> Tuple[TTSModel, dict]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        model = TTSModel(ModelConfig.from_dict(ck["config"]))
        model.load_state_dict(ck["state"])
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{p} is not a synth-prosody model checkpoint: {str(e)[:200]}") from None
    return model.eval(), ck


def _batches(lengths: List[int], batch_size: int, rng: random.Random) -> List[List[int]]:
    """Indices grouped into batches of similar length, in a shuffled batch order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def train(align_dir, exp_dir, cfg: TrainConfig) -> Path:
    if cfg.granularity not in GRANULARITIES:
        raise UserError(f"--granularity must be one of {', '.join(GRANULARITIES)}")
    out = Path(exp_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = read_align_dir(align_dir, cfg.max_utts)
    info_p = Path(align_dir) / "info.json"
    info = json.loads(info_p.read_text()) if info_p.is_file() else {}
    mel_cfg = MelConfig(**info.get("mel", {}))
    vocab = tuple(sorted({p for u in utts for p in u.ph.phones}))
    mcfg = ModelConfig(vocab=vocab, granularity=cfg.granularity, num_mels=mel_cfg.num_mels, dim=cfg.dim,
                       z_dim=cfg.z_dim)
    torch.manual_seed(cfg.seed)
    model = TTSModel(mcfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    meta = {"mel": mel_cfg.to_dict(), "aligner": copy_aligner(align_dir), "voice": info.get("voice", "en-us"),
            "train": asdict(cfg), "align_dir": str(align_dir)}
    start = 0
    done = sorted(out.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if done:
        ck = torch.load(done[-1], map_location="cpu", weights_only=False)
        extendable = ("epochs", "predictor_epochs")
        same = {k: v for k, v in asdict(cfg).items() if k not in extendable}
        theirs = {k: v for k, v in (ck.get("train") or {}).items() if k not in extendable}
        if ck["config"] != mcfg.to_dict() or theirs != same:
            diff = sorted(k for k in same if theirs.get(k) != same[k]) or ["model configuration"]
            raise UserError(f"{done[-1]} was trained with another configuration ({', '.join(diff)}); "
                            "use a new directory")
        model.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"])
        start = ck["epoch"]
        log.info("resuming from %s (epoch %d)", done[-1], start)
    else:
        allm = torch.cat([u.mel for u in utts])
        model.set_normalization(allm.mean(0), allm.std(0))
        f0 = np.concatenate([u.f0 for u in utts if u.f0 is not None] or [np.zeros(1)])
        if (f0 > 0).sum() > 1:
            model.set_pitch_normalization(np.log2(f0[f0 > 0]).mean(), np.log2(f0[f0 > 0]).std())
        else:
            log.warning("%s has no F0 (f0.pt): the pitch predictor is not trained", align_dir)
    log.info("%d utterances, %d phonemes in the vocabulary, %d parameters, granularity %s",
             len(utts), len(vocab), param_count(model), cfg.granularity)
    items = [utt_item(model, u.ph, u.durations, u.mel, u.f0) for u in utts]
    if any("pitch" not in it for it in items):
        items = [{k: v for k, v in it.items() if k not in ("pitch", "voiced")} for it in items]
    for epoch in range(start, cfg.epochs):
        model.train()
        beta = cfg.kl_weight * min(1.0, (epoch + 1) / max(1.0, 0.3 * cfg.epochs))
        lr = cfg.lr * (0.5 * (1 + np.cos(np.pi * epoch / cfg.epochs)) * 0.9 + 0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        sums: Dict[str, float] = {}
        n = 0
        t0 = time.time()
        bl = _batches([u.mel.shape[0] for u in utts], cfg.batch_size, random.Random(f"{cfg.seed}-{epoch}"))
        for idx in progress(bl, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch"):
            batch = make_batch([items[i] for i in idx])
            res = model(batch, beta=beta)
            opt.zero_grad()
            res["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            for k, v in res.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
            n += len(idx)
        losses = {k: v / max(n, 1) for k, v in sums.items()}
        log.info("epoch %d/%d: %s (%.1f s)", epoch + 1, cfg.epochs,
                 " ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items())), time.time() - t0)
        save_checkpoint(out / f"epoch-{epoch + 1}.pt", model, meta,
                        {"optimizer": opt.state_dict(), "epoch": epoch + 1, "rng": torch.get_rng_state(),
                         "losses": losses})
        with open(out / "train.log.jsonl", "a", encoding="utf-8") as f:  # after the checkpoint: no duplicates
            f.write(json.dumps({"epoch": epoch + 1, "lr": lr, "beta": beta, **losses}) + "\n")
        for old in out.glob("epoch-*.pt"):
            if int(old.stem.split("-")[1]) < epoch:  # keep the last two
                old.unlink()
    model.eval()
    extra = {"epoch": cfg.epochs}
    if cfg.predictor_epochs > 0 and cfg.granularity != "none":
        extra["predictor_refit"] = fit_predictor(model, items, cfg)
    save_checkpoint(out / "final.pt", model, meta, extra)
    with atomic_open(out / "model.json", "w") as f:
        json.dump({"config": mcfg.to_dict(), "train": asdict(cfg), "parameters": param_count(model)}, f, indent=1)
    return out / "final.pt"


def _predictor_loss(model: TTSModel, batch: Dict) -> torch.Tensor:
    """Masked MSE between the text-side predictor and the posterior means (no dropout)."""
    pmask = batch["phones"] != 0
    with torch.no_grad():
        enc = model.encoder(batch["phones"], batch["emphasis"], pmask)
        mu, _ = model.posterior(batch)
        emask = model.embedding_mask(batch).float()
    pred = model.predict_embedding(enc, batch)
    return (((pred - mu) ** 2).mean(-1) * emask).sum() / emask.sum()


def fit_predictor(model: TTSModel, items: List[dict], cfg: TrainConfig, dev_share: float = 0.1) -> Dict:
    """Second phase: with the autoencoder converged and frozen (eval mode), train only the
    text-side predictor on the posterior means for ``cfg.predictor_epochs`` epochs (fresh Adam,
    cosine decay from ``cfg.lr``); ``dev_share`` of the utterances is held out and the predictor
    of the epoch with the lowest held-out loss is kept. Returns the losses (also logged)."""
    rng = random.Random(f"{cfg.seed}-predictor")
    order = list(range(len(items)))
    rng.shuffle(order)
    n_dev = max(1, int(dev_share * len(items))) if len(items) > 1 else 0
    dev, tr = order[:n_dev], order[n_dev:] or order
    params = list(model.pred_gru.parameters()) + list(model.pred_out.parameters())
    keep = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    model.eval()

    def dev_loss() -> float:
        with torch.no_grad():
            tot = [(float(_predictor_loss(model, make_batch([items[i] for i in dev[k: k + cfg.batch_size]]))),
                    len(dev[k: k + cfg.batch_size])) for k in range(0, len(dev), cfg.batch_size)]
        return sum(a * b for a, b in tot) / max(1, sum(b for _, b in tot))

    best = (dev_loss() if dev else float("inf"), 0, {k: v.clone() for k, v in model.state_dict().items()
                                                      if k.startswith("pred_")})
    history = [{"epoch": 0, "dev": best[0]}]
    sub = [items[i] for i in tr]
    lengths = [it["mel"].shape[0] for it in sub]
    try:
        for epoch in range(cfg.predictor_epochs):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (0.5 * (1 + np.cos(np.pi * epoch / cfg.predictor_epochs)) * 0.9 + 0.1)
            total, n = 0.0, 0
            bl = _batches(lengths, cfg.batch_size, random.Random(f"{cfg.seed}-p{epoch}"))
            for idx in progress(bl, desc=f"predictor {epoch + 1}/{cfg.predictor_epochs}", unit="batch"):
                loss = _predictor_loss(model, make_batch([sub[i] for i in idx]))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                total, n = total + float(loss) * len(idx), n + len(idx)
            d = dev_loss() if dev else total / max(n, 1)
            history.append({"epoch": epoch + 1, "train": total / max(n, 1), "dev": d})
            log.info("predictor epoch %d/%d: train %.4f held-out %.4f", epoch + 1, cfg.predictor_epochs,
                     total / max(n, 1), d)
            if d < best[0]:
                best = (d, epoch + 1, {k: v.clone() for k, v in model.state_dict().items() if k.startswith("pred_")})
    finally:
        for p in frozen:
            p.requires_grad_(True)
    model.load_state_dict({**model.state_dict(), **best[2]})
    log.info("predictor refit: held-out loss %.4f (jointly trained) -> %.4f (epoch %d kept; 0: the joint one)",
             history[0]["dev"], best[0], best[1])
    return {"kept_epoch": best[1], "history": history}
