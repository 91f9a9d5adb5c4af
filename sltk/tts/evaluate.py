"""Objective evaluation of synthesized speech against recordings, and the RESULTS table.

For every utterance of an alignment directory (test recordings with their phonemes and
aligned durations), the model synthesizes the text with its own predicted durations and
an embedding from a *source*: ``oracle`` (the posterior mean of the recording, i.e.
reconstruction), ``predicted`` (the text-side predictor) or ``none`` (a model without
embeddings). The recording and the synthesis are compared on:

- **MCD** (dB): mel-cepstral distortion over coefficients 1-12 of the DCT of the log-mel
  amplitude (``log_mel / 2``), along a DTW path between the two (their lengths differ).
  It is computed on sltk's log-mel, not on SPTK mel-cepstra, so it is comparable between
  systems here, not with published numbers;
- **log-F0 RMSE** (cents), **log-F0 correlation** and **voicing error** (%) at phoneme
  level: the model's predicted phoneme pitch (its FastSpeech2-like pitch predictor: mean
  log2-F0 of each phoneme's voiced frames, and voicing) against the same quantities of the
  recording (F0 tracked by :func:`sltk.tts.pitch.track_f0`, pooled over its aligned
  phonemes), on phonemes voiced in both; the voicing error is the share of phonemes whose
  voicing differs. (The F0 of the vocoded synthesis itself is plotted but not scored:
  the tracker is unreliable on Griffin-Lim audio of smoothed mels.) For the ``copy`` row
  these come from tracking the vocoded recording;
- **duration error**: mean absolute difference (ms) between each phoneme's predicted
  duration and its aligned duration in the recording, and the relative error of the
  utterance's length (%).

- **CER** (%, optional): the character error rate of sltk's own ASR (a transducer of
  ``train-transducer``, its ``lang`` directory and the ``features.json`` of the features it
  was trained on; :class:`AsrJudge`, greedy search) on the vocoded synthesis against the
  transcript, with spaces counted as characters.

``copy`` rows (the recording's own log-mel through the vocoder) show what the vocoder alone
costs. :func:`results_table` turns metrics of each granularity into the RESULTS.md table
with the share of the none-to-oracle gap that predicted embeddings close.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch

from sltk.audio.features import dct_matrix
from sltk.audio.io import read_audio
from sltk.tts.dataset import AlignedUtt, phone_log_f0
from sltk.tts.features import MelConfig
from sltk.tts.model import TTSModel, make_batch
from sltk.tts.pitch import track_f0
from sltk.tts.train import utt_item
from sltk.tts.vocoder import Vocoder
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_path
from sltk.utils.progress import progress

log = logging.getLogger("sltk")

METRICS = ("mcd_db", "f0_rmse_cents", "f0_corr", "vuv_err_pct", "dur_mae_ms", "len_err_pct", "cer_pct")
GROSS_CENTS = 1000.0  # F0 pairs further apart than this (about an octave) are tracking errors


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The minimum-cost monotonic path (K, 2) of frame pairs between a (T1, D) and b (T2, D)
    (Euclidean frame distances; steps (1,0), (0,1), (1,1)); starts at (0, 0), ends at the last
    frames."""
    c = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    T1, T2 = c.shape
    D = np.empty((T1, T2))
    D[0] = np.cumsum(c[0])
    for i in range(1, T1):
        diag = np.concatenate([[np.inf], D[i - 1, :-1]])
        tmp = c[i] + np.minimum(D[i - 1], diag)
        # D[i, j] = min_k<=j tmp[k] + sum_{k<l<=j} c[i, l]
        S = np.cumsum(c[i])
        D[i] = S + np.minimum.accumulate(tmp - S)
    i, j = T1 - 1, T2 - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            k = int(np.argmin([D[i - 1, j - 1], D[i - 1, j], D[i, j - 1]]))
            i, j = (i - 1, j - 1) if k == 0 else ((i - 1, j) if k == 1 else (i, j - 1))
        path.append((i, j))
    return np.array(path[::-1])


def mel_cepstra(mel: np.ndarray, num: int = 13) -> np.ndarray:
    """Cepstra of the log-mel amplitude in the usual scaling (log A(w) = c0 + 2 sum c_k cos kw):
    the orthonormal DCT-II of ``mel / 2`` divided by sqrt(2 * num_mels)."""
    m = np.asarray(mel, dtype=np.float64) / 2.0  # log power -> log amplitude
    return m @ dct_matrix(num, m.shape[1]).numpy().astype(np.float64) / math.sqrt(2.0 * m.shape[1])


def mcd_path(ref_mel: np.ndarray, hyp_mel: np.ndarray) -> Tuple[float, np.ndarray]:
    """Mel-cepstral distortion (dB, c0 excluded) of ``hyp_mel`` against ``ref_mel`` along
    their DTW path over the cepstra, and that path (pairs of frame indices)."""
    ca, cb = mel_cepstra(ref_mel), mel_cepstra(hyp_mel)
    path = dtw_path(ca[:, 1:], cb[:, 1:])
    d = ca[path[:, 0], 1:] - cb[path[:, 1], 1:]
    return float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * (d * d).sum(1)))), path


def compare(rec_mel: np.ndarray, syn_mel: np.ndarray, rec_f0: np.ndarray, syn_f0: np.ndarray) -> Dict[str, float]:
    """MCD, log-F0 RMSE and correlation of one synthesis against its recording."""
    mcd, path = mcd_path(rec_mel, syn_mel)
    fa = rec_f0[np.clip(path[:, 0], 0, len(rec_f0) - 1)]
    fb = syn_f0[np.clip(path[:, 1], 0, len(syn_f0) - 1)]
    both = (fa > 0) & (fb > 0)
    out = {"mcd_db": mcd, "f0_rmse_cents": float("nan"), "f0_corr": float("nan"), "voiced_pairs": int(both.sum()),
           "f0_gross_pct": float("nan")}
    if both.sum() >= 3:
        cents = 1200 * np.abs(np.log2(np.where(both, fa, 1)) - np.log2(np.where(both, fb, 1)))
        gross = both & (cents > GROSS_CENTS)
        out["f0_gross_pct"] = float(100 * gross.sum() / both.sum())
        both = both & ~gross
    if both.sum() >= 3:
        la, lb = np.log2(fa[both]), np.log2(fb[both])
        out["f0_rmse_cents"] = float(1200 * np.sqrt(np.mean((la - lb) ** 2)))
        if la.std() > 0 and lb.std() > 0:
            out["f0_corr"] = float(np.corrcoef(la, lb)[0, 1])
    return out


class AsrJudge:
    """Transcribes 16 kHz samples with an sltk transducer (greedy search)."""

    def __init__(self, model_path, lang_dir, features_json):
        from sltk.asr.checkpoint import load_model
        from sltk.asr.decode import DecodeOptions, Decoder
        from sltk.audio.features import FeatureComputer, FeatureOptions
        from sltk.decode.lang import load_lang

        for p, what in ((model_path, "ASR model"), (features_json, "ASR features.json")):
            if not Path(p).is_file():
                raise UserError(f"{what} {p} does not exist")
        try:
            opts = json.loads(Path(features_json).read_text())
            opts = {k: v for k, v in opts.items() if k in FeatureOptions.__dataclass_fields__}
            self.feats = FeatureComputer(FeatureOptions.from_dict(opts))
        except (ValueError, TypeError) as e:
            raise UserError(f"{features_json} is not a compute-features features.json: {e}") from None
        self.model = load_model(model_path).eval()
        self.decoder = Decoder(self.model, "greedy", load_lang(lang_dir), DecodeOptions(), torch.device("cpu"))

    def __call__(self, samples: np.ndarray) -> str:
        f = self.feats(np.asarray(samples, dtype=np.float32))
        texts, _, _ = self.decoder(f[None], torch.tensor([f.shape[0]]))
        return texts[0]


def transcript(text: str) -> str:
    """The words of a written text (marks and punctuation removed), upper case."""
    return " ".join(re.findall(r"[A-Z']+", text.upper().replace("-", " ")))


def char_errors(ref: str, hyp: str):
    """(errors, reference characters) of ``hyp`` against ``ref``; spaces count as characters."""
    from sltk.decode.scoring import compute_wer

    chars = lambda s: " ".join("_" if c == " " else c for c in " ".join(s.split()))  # noqa: E731
    res = compute_wer({"u": chars(ref)}, {"u": chars(hyp)})
    return res.total.errors, res.total.ref_words


def phone_pitch_errors(rec_p: np.ndarray, rec_v: np.ndarray, p: np.ndarray, v: np.ndarray) -> Dict[str, float]:
    """Phoneme-level log2-F0 RMSE (cents), correlation, and voicing error (%)."""
    rec_v, v = np.asarray(rec_v) > 0, np.asarray(v) > 0
    both = rec_v & v
    out = {"f0_rmse_cents": float("nan"), "f0_corr": float("nan"),
           "vuv_err_pct": float(100 * np.mean(rec_v != v)) if len(v) else float("nan")}
    if both.sum() >= 1:
        d = np.asarray(rec_p)[both] - np.asarray(p)[both]
        out["f0_rmse_cents"] = float(1200 * np.sqrt(np.mean(d * d)))
    if both.sum() >= 3 and np.std(np.asarray(rec_p)[both]) > 0 and np.std(np.asarray(p)[both]) > 0:
        out["f0_corr"] = float(np.corrcoef(np.asarray(rec_p)[both], np.asarray(p)[both])[0, 1])
    return out


def _mean(rows: List[Dict[str, float]]) -> Dict[str, float]:
    out = {}
    for k in METRICS:
        if k == "cer_pct":
            errs = sum(r.get("char_errors", 0) for r in rows)
            n = sum(r.get("ref_chars", 0) for r in rows)
            out[k] = float(100.0 * errs / n) if n else float("nan")
            continue
        v = [r[k] for r in rows if k in r and not math.isnan(r[k])]
        out[k] = float(np.mean(v)) if v else float("nan")
    out["utterances"] = len(rows)
    return out


def _plot(path: Path, title: str, rec_mel, syn: Dict[str, np.ndarray], rec_f0, syn_f0: Dict[str, np.ndarray],
          paths: Dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 1 + len(syn)
    fig, ax = plt.subplots(n + 1, 1, figsize=(9, 2.0 * (n + 1)), constrained_layout=True)
    ax[0].imshow(rec_mel.T, origin="lower", aspect="auto", cmap="magma")
    ax[0].set_title(f"{title}: recording")
    for k, (name, m) in enumerate(syn.items(), 1):
        ax[k].imshow(m.T, origin="lower", aspect="auto", cmap="magma")
        ax[k].set_title(name)
    t = np.arange(len(rec_f0)) * 0.01
    ax[n].plot(t, np.where(rec_f0 > 0, rec_f0, np.nan), "k", lw=2, label="recording")
    for name, f in syn_f0.items():
        p = paths[name]  # warp the synthesis' F0 onto the recording's time axis
        warped = np.full(len(rec_f0), np.nan)
        for i, j in p:
            if j < len(f) and f[j] > 0:
                warped[i] = f[j]
        ax[n].plot(t, warped, lw=1, label=name)
    ax[n].set_xlabel("time (s) of the recording")
    ax[n].set_ylabel("F0 (Hz)")
    ax[n].legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def evaluate(model: TTSModel, ck: dict, utts: Sequence[AlignedUtt], vocoder: Vocoder, out_dir,
             sources: Sequence[str], num_plots: int = 3, num_wavs: int = 3,
             judge: Optional[Callable[[np.ndarray], str]] = None) -> Dict:
    """Metrics per source (and ``copy``) over ``utts``; plots and sample wavs in ``out_dir``."""
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    mcfg = MelConfig(**ck["mel"])
    rows: Dict[str, List[Dict[str, float]]] = {s: [] for s in [*sources, "copy"]}
    per_utt = []
    for n, u in enumerate(progress(list(utts), desc="eval", unit="utt")):
        if u.wav:
            rec, _ = read_audio(u.wav, expected_sample_rate=mcfg.sample_rate)
        else:
            rec = vocoder(u.mel)
        rec_f0 = track_f0(rec, mcfg.sample_rate, mcfg.hop)[: u.mel.shape[0]]
        rec_p, rec_v = phone_log_f0(rec_f0, u.durations)
        rec_mel = u.mel.numpy()
        item = utt_item(model, u.ph, u.durations, u.mel)
        syn, syn_f0, paths = {}, {}, {}
        rec_ms = u.durations * mcfg.frame_shift_ms
        for s in [*sources, "copy"]:
            if s == "copy":
                mel, dur = u.mel, torch.as_tensor(u.durations)
            else:
                res = model.infer(make_batch([item]), source={"oracle": "oracle", "predicted": "predict",
                                                              "none": "zero", "zero": "zero"}[s])
                mel, dur = res["mel"][0, : int(res["mel_lens"][0])], res["durations"][0, : len(u.durations)]
            wav = vocoder(mel)
            f0 = track_f0(wav, mcfg.sample_rate, mcfg.hop)[: mel.shape[0]]
            r = {k: v for k, v in compare(rec_mel, mel.numpy(), rec_f0, f0).items() if k == "mcd_db"}
            if s == "copy":
                pp, pv = phone_log_f0(f0, u.durations)
            else:
                pp, pv = res["log2_f0"][0, : len(u.durations)].numpy(), res["voiced"][0, : len(u.durations)].numpy()
            r.update(phone_pitch_errors(rec_p, rec_v, pp, pv))
            d_ms = dur.numpy() * mcfg.frame_shift_ms
            r["dur_mae_ms"] = float(np.mean(np.abs(d_ms - rec_ms)))
            r["len_err_pct"] = float(100 * abs(d_ms.sum() - rec_ms.sum()) / rec_ms.sum())
            if judge is not None and u.text:
                hyp = judge(wav)
                r["char_errors"], r["ref_chars"] = char_errors(transcript(u.text), hyp)
                r["hyp"] = hyp
            rows[s].append(r)
            per_utt.append({"utt": u.utt, "source": s, **r})
            syn[s], syn_f0[s] = mel.numpy(), f0
            paths[s] = dtw_path(mel_cepstra(rec_mel)[:, 1:], mel_cepstra(mel.numpy())[:, 1:])
            if n < num_wavs:
                with atomic_path(out / "wav" / f"{u.utt}_{s}.wav") as tmp:
                    sf.write(str(tmp), wav, mcfg.sample_rate, subtype="PCM_16", format="WAV")
        if n < num_plots:
            _plot(out / f"contours_{u.utt}.png", u.utt, rec_mel, syn, rec_f0, syn_f0, paths)
    res = {s: _mean(r) for s, r in rows.items()}
    with atomic_path(out / "per_utt.jsonl") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in per_utt:
                f.write(json.dumps(r) + "\n")
    return res


def subset_metrics(per_utt: Sequence[Dict], keep: Callable[[str], bool]) -> Dict[str, Dict[str, float]]:
    """The per-source means of :func:`evaluate` (as in metrics.json) over the rows of its
    ``per_utt.jsonl`` whose utterance satisfies ``keep``."""
    rows: Dict[str, List[Dict]] = {}
    for r in per_utt:
        if keep(r["utt"]):
            rows.setdefault(r["source"], []).append(r)
    return {s: _mean(v) for s, v in rows.items()}


PROSODY_SUBSETS = (
    ("focus word marked in the text", lambda p: p.get("focus", -1) >= 0 and bool(p.get("marked"))),
    ("focus word not marked in the text", lambda p: p.get("focus", -1) >= 0 and not p.get("marked")),
    ("no focus word", lambda p: p.get("focus", -1) < 0),
)


def gap_closed(none: float, oracle: float, predicted: float) -> Optional[float]:
    """Share (%) of the none-to-oracle difference that ``predicted`` recovers:
    100 * (none - predicted) / (none - oracle); None when the gap is (about) zero."""
    gap = none - oracle
    if any(map(lambda v: v is None or math.isnan(v), (none, oracle, predicted))) or abs(gap) < 1e-9:
        return None
    return 100.0 * (none - predicted) / gap


def results_table(metrics: Dict[str, Dict]) -> List[str]:
    """Markdown lines: one row per granularity and source, then the gap closed per metric.
    ``metrics`` maps granularity -> the dict :func:`evaluate` returned."""
    names = {"mcd_db": "MCD (dB)", "f0_rmse_cents": "logF0 RMSE (cents)", "f0_corr": "logF0 corr",
             "vuv_err_pct": "voicing err (%)", "f0_gross_pct": "F0 gross err (%)",
             "dur_mae_ms": "dur MAE (ms)", "len_err_pct": "length err (%)", "cer_pct": "CER (%)"}
    def finite(v):
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    cols = [m for m in METRICS if any(finite(r.get(m)) for g in metrics.values() for r in g.values()
                                      if isinstance(r, dict))]
    head = "| granularity | embedding | " + " | ".join(names[m] for m in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]

    def fmt(v):
        return "n/a" if not finite(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

    order = [g for g in ("none", "utterance", "word", "phoneme") if g in metrics]
    copy = None
    for g in order:
        for s in ("none", "oracle", "predicted"):
            if s in metrics[g]:
                lines.append(f"| {g} | {s} | " + " | ".join(fmt(metrics[g][s][m]) for m in cols) + " |")
        copy = copy or metrics[g].get("copy")
    if copy:
        lines.append("| (recording through the vocoder) | - | " + " | ".join(fmt(copy[m]) for m in cols) + " |")
    if "none" in metrics:
        base = metrics["none"].get("none", {})
        lines += ["", "Share of the none -> oracle gap closed by predicted embeddings (%):", "",
                  "| granularity | " + " | ".join(names[m] for m in cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for g in order:
            if g == "none" or "oracle" not in metrics[g]:
                continue
            vals = [gap_closed(base.get(m, float("nan")), metrics[g]["oracle"][m], metrics[g]["predicted"][m])
                    for m in cols]
            lines.append(f"| {g} | " + " | ".join(fmt(v) for v in vals) + " |")
    return lines
