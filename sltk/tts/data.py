"""A prosody corpus synthesized with espeak-ng SSML: prosody that varies by word and is only
partly predictable from the text.

Each utterance is a sentence from a small grammar (statements and questions; a question
ends with ``?`` and espeak-ng gives it a rising contour), read by one of a few espeak-ng
voices at an utterance-level rate and pitch drawn per utterance. Most utterances have one
*focus word* whose prosody is changed with SSML ``<prosody>``: higher pitch and slower
(``high``), or lower pitch and slower (``low``), by amounts drawn per utterance. The text
marks the focus word with asterisks (``turn *off* the lights``) in only ``--mark-frac`` of
the utterances: elsewhere the focus cannot be predicted from the text.

:func:`make_corpus` writes a Kaldi data directory: ``wav.scp`` (16 kHz 16-bit wavs in
``wav/``), ``text`` (the written text, with marks), ``utt2spk``, ``spk2utt``, ``utt2dur``
and ``utt2prosody`` (JSON: focus word index, kind, pitch and rate change, marked,
question, utterance rate and pitch). Every utterance depends only on (seed, index); valid
wavs already there are kept, so a rerun resumes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import soundfile as sf

from sltk.data.synth import acoustics
from sltk.data.synth.corpus import valid_wav
from sltk.data.synth.voices import SynthesisError, _read_wav, _run
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_path, write_table
from sltk.utils.progress import progress

log = logging.getLogger("sltk")

DEFAULT_VOICES = ("en-us+m3",)
FUNCTION_WORDS = {"the", "a", "an", "to", "of", "in", "on", "at", "for", "is", "are", "was", "you", "your",
                  "my", "it", "and", "did", "do", "does", "can", "we", "i", "me", "this", "that", "with", "will",
                  "be", "from", "our", "their", "they", "he", "she", "has", "have", "by", "all", "up"}

_FILL = {
    "name": ["anna", "peter", "maria", "john", "sophie", "david", "lucy", "omar", "helen", "martin"],
    "city": ["boston", "paris", "denver", "madrid", "london", "seattle", "lisbon", "dublin", "berlin"],
    "room": ["kitchen", "bedroom", "garden", "hallway", "garage", "office", "cellar"],
    "thing": ["lamp", "window", "letter", "ticket", "bicycle", "painting", "jacket", "kettle", "piano", "camera"],
    "color": ["red", "green", "blue", "yellow", "black", "silver", "golden", "purple"],
    "day": ["monday", "tuesday", "friday", "sunday", "tonight", "tomorrow", "yesterday"],
    "verb": ["found", "painted", "sold", "moved", "fixed", "borrowed", "cleaned", "opened"],
    "num": ["two", "three", "five", "seven", "nine", "twelve", "twenty"],
    "adj": ["old", "small", "heavy", "broken", "famous", "quiet", "strange", "lovely"],
}
# (statement, question) pairs; a question is used for half of the utterances that have one
_TEMPLATES = [
    ("{name} {verb} the {color} {thing} in the {room}", "did {name} find the {color} {thing} in the {room}"),
    ("we are flying to {city} on {day}", "are we flying to {city} on {day}"),
    ("the {adj} {thing} is in the {room}", "is the {adj} {thing} in the {room}"),
    ("{name} will meet us in {city} {day}", "will {name} meet us in {city} {day}"),
    ("i bought {num} {color} {thing}s for {name}", "did you buy {num} {color} {thing}s for {name}"),
    ("the {room} light is still on", "is the {room} light still on"),
    ("{name} lives in a {adj} house near {city}", "does {name} live in a {adj} house near {city}"),
    ("you left the {thing} in the {room} on {day}", "did you leave the {thing} in the {room} on {day}"),
    ("my {adj} {thing} arrived from {city}", "has your {adj} {thing} arrived from {city}"),
    ("{name} {verb} {num} {thing}s last week", "has {name} {verb} the {thing}s yet"),
    ("the train to {city} leaves at {num}", "does the train to {city} leave at {num}"),
    ("she painted the {room} {color} on {day}", "did she paint the {room} {color} on {day}"),
]


@dataclass
class ProsodyConfig:
    num_utts: int = 200
    seed: int = 0
    voices: Tuple[str, ...] = DEFAULT_VOICES
    focus_frac: float = 0.85       # utterances with a focus word
    mark_frac: float = 0.5         # focus words marked in the text
    question_frac: float = 0.35
    utt_tag: str = ""


@dataclass
class Item:
    utt: str
    voice: str
    words: List[str]
    question: bool
    focus: int                     # word index, -1 for none
    kind: str                      # high | low | none
    pitch_pct: int
    rate_pct: int
    marked: bool
    utt_rate: int                  # espeak-ng -s (words per minute)
    utt_pitch: int                 # espeak-ng -p (0..99)

    @property
    def written(self) -> str:
        ws = [f"*{w}*" if (i == self.focus and self.marked) else w for i, w in enumerate(self.words)]
        return " ".join(ws) + ("?" if self.question else ".")

    @property
    def ssml(self) -> str:
        ws = []
        for i, w in enumerate(self.words):
            if i == self.focus:
                sign = "+" if self.pitch_pct >= 0 else ""
                ws.append(f'<prosody pitch="{sign}{self.pitch_pct}%" rate="{self.rate_pct}%">{w}</prosody>')
            else:
                ws.append(w)
        return "<speak>" + " ".join(ws) + ("?" if self.question else ".") + "</speak>"

    def prosody_json(self) -> str:
        return json.dumps({"focus": self.focus, "kind": self.kind, "pitch_pct": self.pitch_pct,
                           "rate_pct": self.rate_pct, "marked": self.marked, "question": self.question,
                           "utt_rate": self.utt_rate, "utt_pitch": self.utt_pitch}, sort_keys=True,
                          separators=(",", ":"))


def _fill(t: str, rng: random.Random) -> str:
    out = t
    for k, vals in _FILL.items():
        while "{" + k + "}" in out:
            out = out.replace("{" + k + "}", rng.choice(vals), 1)
    return out


def draw_item(cfg: ProsodyConfig, index: int) -> Item:
    rng = random.Random(f"{cfg.seed}-{index}")
    voice = cfg.voices[index % len(cfg.voices)]
    st, q = rng.choice(_TEMPLATES)
    question = rng.random() < cfg.question_frac
    words = _fill(q if question else st, rng).split()
    content = [i for i, w in enumerate(words) if w not in FUNCTION_WORDS]
    focus, kind, pitch, rate = -1, "none", 0, 100
    if content and rng.random() < cfg.focus_frac:
        focus = rng.choice(content)
        if rng.random() < 0.7:
            kind, pitch, rate = "high", rng.randint(30, 80), rng.randint(55, 80)
        else:
            kind, pitch, rate = "low", -rng.randint(25, 45), rng.randint(60, 85)
    marked = focus >= 0 and rng.random() < cfg.mark_frac
    tag = voice.replace("-", "").replace("+", "_")
    utt = f"{tag}-{cfg.utt_tag}{index:05d}" if cfg.utt_tag else f"{tag}-{index:05d}"
    return Item(utt, voice, words, question, focus, kind, pitch, rate, marked,
                utt_rate=rng.randint(150, 195), utt_pitch=rng.randint(35, 65))


def synthesize_item(item: Item) -> np.ndarray:
    """The 16 kHz samples of one item (espeak-ng SSML, resampled, silence trimmed)."""
    with tempfile.TemporaryDirectory(prefix="sltk-tts-") as d:
        xml, wav = Path(d) / "in.xml", Path(d) / "out.wav"
        xml.write_text(item.ssml + "\n", encoding="utf-8")
        _run(["espeak-ng", "-m", "-v", item.voice, "-s", str(item.utt_rate), "-p", str(item.utt_pitch),
              "-f", str(xml), "-w", str(wav)], f"espeak-ng ({item.voice})")
        x, sr = _read_wav(wav, f"espeak-ng ({item.voice})")
    y = acoustics.trim_silence(acoustics.resample(x, sr), margin_s=0.1)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak == 0.0:
        raise SynthesisError(f"espeak-ng ({item.voice}) produced silence")
    return (0.9 * y / peak).astype(np.float32)


def _job(args) -> Tuple[str, int, Optional[str]]:
    item, path = args
    n = valid_wav(Path(path))
    if n:
        return item.utt, n, None
    try:
        y = synthesize_item(item)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), y, acoustics.SAMPLE_RATE, subtype="PCM_16", format="WAV")
        return item.utt, int(y.size), None
    except (SynthesisError, OSError, RuntimeError, ValueError) as e:
        return item.utt, 0, f"{type(e).__name__}: {e}"


def check_voices(voices) -> None:
    res = _run(["espeak-ng", "--voices=en"], "espeak-ng --voices")
    langs = set(res.stdout.decode(errors="replace").split())
    for v in voices:
        if v.split("+")[0] not in langs:
            raise UserError(f"espeak-ng has no voice {v.split('+')[0]!r} (see espeak-ng --voices=en)")


def make_corpus(cfg: ProsodyConfig, out_dir, nj: int = 1) -> Tuple[int, int, int]:
    """Synthesize the corpus into ``out_dir``; returns (done, total, failed)."""
    import shutil

    if shutil.which("espeak-ng") is None:
        raise UserError("espeak-ng is not on PATH (Debian package espeak-ng)")
    check_voices(cfg.voices)
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    items = [draw_item(cfg, i) for i in range(cfg.num_utts)]
    jobs = [(it, str(out / "wav" / f"{it.utt}.wav")) for it in items]
    results = {}
    if nj > 1:
        with multiprocessing.get_context("fork").Pool(nj) as pool:
            it = pool.imap_unordered(_job, jobs, chunksize=4)
            for utt, n, err in progress(it, total=len(jobs), desc="synthesize", unit="utt"):
                results[utt] = (n, err)
    else:
        for j in progress(jobs, desc="synthesize", unit="utt"):
            utt, n, err = _job(j)
            results[utt] = (n, err)
    good = [it for it in items if results[it.utt][0] > 0]
    for it in items:
        if results[it.utt][1]:
            log.warning("%s: %s", it.utt, results[it.utt][1])
    sr = acoustics.SAMPLE_RATE
    write_table(out / "wav.scp", [(it.utt, str((out / "wav" / f"{it.utt}.wav").resolve())) for it in good])
    write_table(out / "text", [(it.utt, it.written) for it in good])
    write_table(out / "utt2spk", [(it.utt, it.utt.split("-")[0]) for it in good])
    spk2utt = {}
    for it in sorted(good, key=lambda x: x.utt):
        spk2utt.setdefault(it.utt.split("-")[0], []).append(it.utt)
    write_table(out / "spk2utt", [(s, " ".join(u)) for s, u in spk2utt.items()])
    write_table(out / "utt2dur", [(it.utt, f"{results[it.utt][0] / sr:.3f}") for it in good])
    write_table(out / "utt2prosody", [(it.utt, it.prosody_json()) for it in good])
    return len(good), len(items), len(items) - len(good)
