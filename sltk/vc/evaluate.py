"""Judges training and the five-system evaluation on the parallel ``eval`` set.

:func:`train_judges` trains the accent-ID and speaker-ID models (:mod:`sltk.vc.judges`) on
the held-apart ``judge`` set (80% to train, 20% to report their accuracy), and stores the
mean speaker embedding of every speaker (the centroids speaker similarity is measured to).

:func:`evaluate` converts every ``eval`` utterance to another accent (``targets="one"``: the
next accent in a rotation by sentence, ``"all"``: every other accent) with each system of
:data:`sltk.vc.system.SYSTEMS`, and measures on the output log-mel:

- ``accent_post``: the accent-ID posterior of the target accent (and ``accent_acc``, the
  share classified as the target accent);
- ``spk_cos``: cosine of the speaker-ID embedding to the source speaker's centroid;
- ``mcd_db``: mel-cepstral distance to the parallel rendering of the same sentence by the
  same voice in the target accent, along a DTW path (:func:`sltk.tts.evaluate.mcd_path`);
- ``dur_ratio``: output frames / reference frames, and ``dur_err_pct``: mean |log ratio|
  as a percentage;
- ``cer_pct`` (with an ASR model): CER of sltk's ASR (:class:`sltk.tts.evaluate.AsrJudge`)
  on the Griffin-Lim waveform against the text (each row's hypothesis in ``results.jsonl``).

For the first ``num_wavs`` pairs it also writes every system's waveform (``wav/``) and one
picture of their log-mels, one above the other with the ASR hypotheses (``plot/``).

The judges read the converted log-mel directly (no vocoder in between), the same way for
every system, so the vocoder's own artefacts do not enter the comparison; the ``target``
row (the parallel reference itself) shows the ceiling.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from sltk.audio.io import read_audio
from sltk.tts.evaluate import char_errors, mcd_path, transcript
from sltk.tts.features import MelConfig, log_mel
from sltk.tts.vocoder import get_vocoder
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path
from sltk.utils.progress import progress
from sltk.vc.data import read_set
from sltk.vc.judges import MelClassifier, load_classifier, save_dict, train_classifier
from sltk.vc.system import SYSTEMS, AccentConverter

log = logging.getLogger("sltk")
JUDGES_KIND = "convert-accent-judges"
ROWS = SYSTEMS + ("target",)
METRICS = ("accent_post", "accent_acc", "spk_cos", "mcd_db", "dur_ratio", "dur_err_pct", "cer_pct")


def _save(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train_judges(judge_dir, out_dir, epochs: int = 10, hidden: int = 64, seed: int = 0) -> Dict[str, float]:
    """Train both judges; ``out_dir/judges.pt``; returns their held-out accuracies."""
    utts = read_set(judge_dir)
    accents = sorted({u.accent for u in utts})
    speakers = sorted({u.speaker for u in utts})
    if len(accents) < 2 or len(speakers) < 2:
        raise UserError(f"{judge_dir} needs at least two accents and two speakers to train the judges")
    cfg = MelConfig()
    mels = [log_mel(read_audio(u.wav, expected_sample_rate=cfg.sample_rate)[0], cfg)
            for u in progress(utts, desc="judge features", unit="utt")]
    allm = torch.cat(mels)
    mean, std = allm.mean(0), allm.std(0).clamp_min(1e-2)
    xs = [(m - mean) / std for m in mels]
    order = list(range(len(utts)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, len(order) // 5)
    dev, tr = order[:n_dev], order[n_dev:]
    out: Dict[str, float] = {}
    models = {}
    for name, labels in (("accent", accents), ("speaker", speakers)):
        y = [labels.index(u.accent if name == "accent" else u.speaker) for u in utts]
        torch.manual_seed(seed)
        m = MelClassifier(len(labels), cfg.num_mels, hidden)
        train_classifier(m, [xs[i] for i in tr], [y[i] for i in tr], epochs, seed=seed, crop=150,
                         desc=f"{name}-ID")
        with torch.no_grad():
            acc = np.mean([int(m(xs[i][None], torch.tensor([xs[i].shape[0]])).argmax(1)) == y[i] for i in dev])
        out[f"{name}_acc"] = float(acc)
        log.info("%s-ID accuracy on %d held-out judge utterances: %.1f%%", name, len(dev), 100 * acc)
        models[name] = m
    with torch.no_grad():
        emb = defaultdict(list)
        for u, x in zip(utts, xs):
            emb[u.speaker].append(models["speaker"].embed(x[None], torch.tensor([x.shape[0]]))[0])
        centroids = {s: torch.stack(v).mean(0) for s, v in emb.items()}
    o = Path(out_dir)
    o.mkdir(parents=True, exist_ok=True)
    _save(o / "judges.pt", {"kind": JUDGES_KIND, "accents": accents, "speakers": speakers,
                            "norm": {"mean": mean, "std": std}, "accent": save_dict(models["accent"]),
                            "speaker": save_dict(models["speaker"]), "centroids": centroids,
                            "accuracy": out, "mel": cfg.to_dict()})
    with atomic_open(o / "judges.json", "w") as f:
        json.dump({"accuracy": out, "accents": accents, "speakers": speakers, "utterances": len(utts)}, f, indent=1)
    return out


class Judges:
    def __init__(self, path):
        p = Path(path)
        if not p.is_file():
            raise UserError(f"judges {p} do not exist (train them with `convert-accent train-judges`)")
        ck = torch.load(p, map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or ck.get("kind") != JUDGES_KIND:
            raise UserError(f"{p} is not a convert-accent judges file")
        self.accents, self.speakers = ck["accents"], ck["speakers"]
        self.mean, self.std = ck["norm"]["mean"], ck["norm"]["std"]
        self.accent = load_classifier(ck["accent"])
        self.speaker = load_classifier(ck["speaker"])
        self.centroids = ck["centroids"]

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, target: str, speaker: str) -> Dict[str, float]:
        x = ((mel - self.mean) / self.std)[None]
        lens = torch.tensor([mel.shape[0]])
        post = torch.softmax(self.accent(x, lens), 1)[0]
        t = self.accents.index(target)
        e = self.speaker.embed(x, lens)[0]
        cos = float(F.cosine_similarity(e, self.centroids[speaker], dim=0)) if speaker in self.centroids else math.nan
        return {"accent_post": float(post[t]), "accent_acc": float(int(post.argmax()) == t), "spk_cos": cos}


def mcd(ref: torch.Tensor, hyp: torch.Tensor) -> float:
    return mcd_path(ref.numpy(), hyp.numpy())[0]


def evaluate(model_path, judges_path, eval_dir, out_dir, targets: str = "one", max_utts: int = 0,
             asr: Optional[object] = None, num_wavs: int = 4, use_text: bool = True,
             latent_scale: float = 1.0, warp: str = "relative") -> Dict[str, Dict[str, float]]:
    """``use_text``: analyse each source with its transcript (aligned phonemization), else
    without (phones recognised, target phones from the phone-to-phone mapper).
    ``latent_scale``, ``warp``: :class:`AccentConverter`'s, for every converting system."""
    conv = AccentConverter.load(model_path)
    conv.latent_scale = latent_scale
    conv.warp = warp
    judges = Judges(judges_path)
    utts = read_set(eval_dir)
    for u in utts:
        conv.check_accent(u.accent)
        if u.accent not in judges.accents:
            raise UserError(f"the judges do not know the accent {u.accent!r} of {u.utt}")
        conv.check_speaker(u.speaker)
        if u.sent < 0:
            raise UserError(f"{u.utt} has no sentence id ({Path(eval_dir) / 'utt2sent'} is needed)")
    ref = {(u.sent, u.accent, u.speaker): u for u in utts}
    accents = sorted({u.accent for u in utts})
    pairs = []
    for u in utts:
        others = [a for a in accents if a != u.accent]
        if targets == "all":
            chosen = others
        else:
            chosen = [others[(u.sent + hash_speaker(u.speaker)) % len(others)]]
        for t in chosen:
            if (u.sent, t, u.speaker) in ref:
                pairs.append((u, t))
    if max_utts:
        pairs = pairs[:max_utts]
    if not pairs:
        raise UserError(f"{eval_dir} has no parallel pair (the same sentence by the same voice in two accents)")
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    vocoder = get_vocoder("griffin-lim", conv.mel_cfg)
    rows: List[dict] = []
    mel_cache: Dict[str, torch.Tensor] = {}

    def mel_of(u):
        if u.utt not in mel_cache:
            mel_cache[u.utt] = log_mel(read_audio(u.wav, expected_sample_rate=conv.mel_cfg.sample_rate)[0],
                                       conv.mel_cfg)
        return mel_cache[u.utt]

    for k, (u, t) in enumerate(progress(pairs, desc="evaluate", unit="pair")):
        r = ref[(u.sent, t, u.speaker)]
        samples = read_audio(u.wav, expected_sample_rate=conv.mel_cfg.sample_rate)[0]
        a = conv.analyse(samples, u.accent, u.speaker, u.text if use_text else None)
        ref_mel = mel_of(r)
        shown: Dict[str, tuple] = {}
        for sysname in ROWS:
            y = ref_mel if sysname == "target" else conv.convert(a, t, sysname)
            m = judges(y, t, u.speaker)
            m["mcd_db"] = mcd(ref_mel, y) if sysname != "target" else 0.0
            m["dur_ratio"] = y.shape[0] / ref_mel.shape[0]
            m["dur_err_pct"] = 100.0 * abs(math.log(m["dur_ratio"]))
            wav = None
            if asr is not None or k < num_wavs:
                wav = vocoder(y)
            if asr is not None:
                hyp = asr(wav)
                e, n = char_errors(transcript(u.text), hyp)
                m["char_errors"], m["ref_chars"], m["asr_hyp"] = e, n, hyp
            if k < num_wavs:
                shown[sysname] = (y.numpy(), m.get("asr_hyp"))
                with atomic_path(out / "wav" / f"{u.utt}-to-{t}-{sysname.replace('+', '_')}.wav") as tmp:
                    sf.write(str(tmp), wav, conv.mel_cfg.sample_rate, subtype="PCM_16", format="WAV")
            rows.append({"utt": u.utt, "source_accent": u.accent, "target_accent": t, "speaker": u.speaker,
                         "system": sysname, **m})
        if shown:
            plot_pair(out / "plot" / f"{u.utt}-to-{t}.png", f"{u.utt} ({u.accent}) to {t}: {u.text}", shown)
    summary = {s: summarise([r for r in rows if r["system"] == s]) for s in ROWS}
    with atomic_open(out / "results.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with atomic_open(out / "metrics.json", "w") as f:
        json.dump({"systems": summary, "pairs": len(pairs), "model": str(model_path), "judges": str(judges_path),
                   "eval_dir": str(eval_dir), "targets": targets, "latent_scale": latent_scale, "warp": warp,
                   "sources_analysed": "with their text" if use_text else "without text (recognised phones)"},
                  f, indent=1)
    with atomic_open(out / "results.md", "w") as f:
        f.write("\n".join(results_table(summary)) + "\n")
    return summary


def plot_pair(path: Path, title: str, panels: Dict[str, tuple]) -> None:
    """One log-mel panel per system (``{system: (mel (T, num_mels), ASR hypothesis or None)}``),
    on a common time axis and colour scale, the hypothesis in each panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    T = max(m.shape[0] for m, _ in panels.values())
    lo = min(float(m.min()) for m, _ in panels.values())
    hi = max(float(m.max()) for m, _ in panels.values())
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.7 * len(panels)), sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    for ax, (name, (mel, hyp)) in zip(axes, panels.items()):
        ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
        ax.set_xlim(0, T)
        ax.set_title(f"{name}" + (f"  |  ASR: {hyp}" if hyp is not None else ""), fontsize=8, loc="left")
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    axes[-1].set_xlabel("frame")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def hash_speaker(s: str) -> int:
    return sum(ord(c) for c in s)


def summarise(rows: List[dict]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for k in METRICS:
        if k == "cer_pct":
            n = sum(r.get("ref_chars", 0) for r in rows)
            out[k] = 100.0 * sum(r.get("char_errors", 0) for r in rows) / n if n else math.nan
            continue
        v = [r[k] for r in rows if k in r and not math.isnan(r[k])]
        out[k] = float(np.mean(v)) if v else math.nan
    out["pairs"] = len(rows)
    return out


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def results_table(summary: Dict[str, Dict[str, float]]) -> List[str]:
    names = {"source": "source unchanged", "plain": "plain flow VC (accent label swapped)", "remap": "remap",
             "remap+warp": "remap + warp", "remap+warp+attend": "remap + warp + attend",
             "target": "(parallel target rendering)"}
    lines = ["| system | target-accent posterior | accent-ID = target | speaker cosine | MCD to target (dB) | "
             "duration / target | duration error (%) | CER (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for s, m in summary.items():
        lines.append(f"| {names.get(s, s)} | {_fmt(m['accent_post'])} | {_fmt(m['accent_acc'], 2)} | "
                     f"{_fmt(m['spk_cos'])} | {_fmt(m['mcd_db'], 2)} | {_fmt(m['dur_ratio'], 2)} | "
                     f"{_fmt(m['dur_err_pct'], 1)} | {_fmt(m['cer_pct'], 1)} |")
    return lines
