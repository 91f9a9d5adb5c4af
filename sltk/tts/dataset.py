"""Alignment directories: what ``synth-prosody align`` writes and ``train``/``eval`` read.

An alignment directory holds, for the utterances of a data directory that could be
phonemized and aligned:

==============  ===================================================================
phones.txt      ``utt p p | p p p | ...``: units (words, pauses) separated by ``|``, an
                emphasis-marked word's first phoneme prefixed with ``*``
durations.txt   ``utt d d d ...``: frames per phoneme (they sum to the utterance's frames)
feats.pt        {utt: (frames, num_mels) float16 log-mel}
f0.pt           {utt: (frames,) float32 F0 in Hz, 0 where unvoiced} (:func:`sltk.tts.pitch.track_f0`)
aligner.json    the Gaussian aligner (:class:`sltk.tts.align.GaussianAligner`)
wav.scp, text   copied from the data directory (utt2prosody too when it has one)
info.json       mel configuration, counts, the aligner's training log-likelihoods
==============  ===================================================================
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from sltk.audio.io import AudioError, read_audio
from sltk.tts.align import GaussianAligner
from sltk.tts.features import MelConfig, log_mel
from sltk.tts.phonemize import G2PError, Phonemized, phonemize
from sltk.tts.pitch import track_f0
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path, read_table, write_table
from sltk.utils.progress import progress

log = logging.getLogger("sltk")


@dataclass
class AlignedUtt:
    utt: str
    ph: Phonemized
    durations: np.ndarray       # (N,)
    mel: torch.Tensor           # (T, num_mels) float32
    wav: str = ""
    text: str = ""
    f0: Optional[np.ndarray] = None   # (T,) Hz, 0 where unvoiced


def phone_log_f0(f0: np.ndarray, durations: np.ndarray) -> tuple:
    """Per-phoneme mean log2-F0 over its voiced frames, and whether it has any: ((N,), (N,))."""
    f0 = np.asarray(f0, dtype=np.float64)
    out, voiced = np.zeros(len(durations)), np.zeros(len(durations))
    start = 0
    for i, d in enumerate(np.asarray(durations)):
        seg = f0[start:start + int(d)]
        start += int(d)
        v = seg[seg > 0]
        if len(v):
            out[i], voiced[i] = float(np.mean(np.log2(v))), 1.0
    return out, voiced


def _table(path: Path, what: str) -> Dict[str, str]:
    if not path.is_file():
        raise UserError(f"{path} does not exist ({what})")
    return dict(read_table(path))


def align_data_dir(data_dir, out_dir, aligner_path: Optional[str] = None, iterations: int = 8,
                   voice: str = "en-us", cfg: MelConfig = MelConfig()):
    """Phonemize, compute log-mels, train (or load) the aligner, align. Returns (done, total)."""
    d, out = Path(data_dir), Path(out_dir)
    wavs = _table(d / "wav.scp", "the data directory's recordings")
    texts = _table(d / "text", "the transcripts")
    if not wavs:
        raise UserError(f"{d / 'wav.scp'} is empty")
    missing = sorted(set(wavs) - set(texts))
    if missing:
        raise UserError(f"{d / 'text'} lacks {len(missing)} of the {len(wavs)} utterances (first: {missing[0]})")
    if aligner_path is not None and not Path(aligner_path).is_file():
        raise UserError(f"aligner {aligner_path} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    phs, mels, f0s = {}, {}, {}
    for utt in progress(sorted(wavs), desc="phonemize+mel", unit="utt"):
        try:
            ph = phonemize(texts[utt], voice)
            x, _ = read_audio(wavs[utt], expected_sample_rate=cfg.sample_rate)
        except (G2PError, AudioError) as e:
            log.warning("%s: skipped: %s", utt, e)
            continue
        m = log_mel(x, cfg)
        if m.shape[0] < len(ph.phones):
            log.warning("%s: skipped: %d frames for %d phonemes", utt, m.shape[0], len(ph.phones))
            continue
        phs[utt], mels[utt] = ph, m
        f0s[utt] = torch.from_numpy(track_f0(x, cfg.sample_rate, cfg.hop)[: m.shape[0]].astype(np.float32))
    if not phs:
        raise UserError(f"no utterance of {d} could be phonemized and read")
    utts = sorted(phs)
    history = []
    if aligner_path:
        try:
            aligner = GaussianAligner.from_dict(json.loads(Path(aligner_path).read_text()))
        except (ValueError, KeyError) as e:
            raise UserError(f"{aligner_path} is not an aligner file: {e}") from None
    else:
        aligner = GaussianAligner(cfg.num_mels)
        history = aligner.train([mels[u] for u in utts], [phs[u].phones for u in utts], iterations)
    durs = {}
    for u in progress(utts, desc="align", unit="utt"):
        durs[u] = aligner.align(mels[u], phs[u].phones)
    write_table(out / "phones.txt", [(u, phs[u].to_line()) for u in utts])
    write_table(out / "durations.txt", [(u, " ".join(map(str, durs[u].tolist()))) for u in utts])
    with atomic_path(out / "feats.pt") as tmp:
        torch.save({u: mels[u].half() for u in utts}, tmp)
    with atomic_path(out / "f0.pt") as tmp:
        torch.save({u: f0s[u] for u in utts}, tmp)
    with atomic_open(out / "aligner.json", "w") as f:
        json.dump(aligner.to_dict(), f)
    for name in ("wav.scp", "text", "utt2prosody"):
        if (d / name).is_file():
            tab = dict(read_table(d / name))
            write_table(out / name, [(u, tab[u]) for u in utts if u in tab])
    with atomic_open(out / "info.json", "w") as f:
        json.dump({"mel": cfg.to_dict(), "voice": voice, "utterances": len(utts), "of": len(wavs),
                   "frames": int(sum(m.shape[0] for m in mels.values())), "aligner_loglik": history,
                   "aligner_from": aligner_path or "trained here"}, f, indent=1)
    return len(utts), len(wavs)


def read_align_dir(align_dir, max_utts: int = 0) -> List[AlignedUtt]:
    """The utterances of an alignment directory (see the module doc)."""
    a = Path(align_dir)
    if not a.is_dir():
        raise UserError(f"alignment directory {a} does not exist (run synth-prosody align)")
    phones = _table(a / "phones.txt", "run synth-prosody align")
    durs = _table(a / "durations.txt", "run synth-prosody align")
    if not (a / "feats.pt").is_file():
        raise UserError(f"{a / 'feats.pt'} does not exist (run synth-prosody align)")
    try:
        feats = torch.load(a / "feats.pt", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read {a / 'feats.pt'}: {e}") from None
    f0s = torch.load(a / "f0.pt", weights_only=False) if (a / "f0.pt").is_file() else {}
    wavs = dict(read_table(a / "wav.scp")) if (a / "wav.scp").is_file() else {}
    texts = dict(read_table(a / "text")) if (a / "text").is_file() else {}
    out = []
    for u in sorted(phones):
        if u not in durs or u not in feats:
            raise UserError(f"{a}: utterance {u} lacks durations or features")
        ph = Phonemized.from_line(phones[u])
        d = np.array([int(x) for x in durs[u].split()], dtype=np.int64)
        mel = feats[u].float()
        if len(d) != len(ph.phones) or int(d.sum()) != mel.shape[0]:
            raise UserError(f"{a}: durations of {u} do not match its phonemes or frames")
        f0 = f0s[u].numpy() if u in f0s else None
        if f0 is not None and len(f0) != mel.shape[0]:
            f0 = np.pad(f0, (0, max(0, mel.shape[0] - len(f0))))[: mel.shape[0]]
        out.append(AlignedUtt(u, ph, d, mel, wavs.get(u, ""), texts.get(u, ""), f0))
        if max_utts and len(out) >= max_utts:
            break
    if not out:
        raise UserError(f"{a / 'phones.txt'} is empty")
    return out


def copy_aligner(align_dir) -> dict:
    p = Path(align_dir) / "aligner.json"
    if not p.is_file():
        raise UserError(f"{p} does not exist")
    return json.loads(p.read_text())


