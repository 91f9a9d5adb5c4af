"""The multi-accent corpus: espeak-ng accents crossed with voices, synthesized offline.

A *voice* (the speaker) is an espeak-ng variant at a pitch and rate (``m3_p0_r100``); every
voice speaks in every accent of the corpus, so speaker and accent are separate factors.
Three sets, with disjoint sentences:

- ``train``: non-parallel: each accent reads its own sentences (no sentence is read in two
  accents), for the flow, its aligner, duration and phoneme-to-phoneme models;
- ``judge``: held apart (other sentences) for the accent-ID and speaker-ID judges;
- ``eval``: parallel: every sentence in every accent by every voice, so a conversion from
  accent A to B has the same sentence by the same voice in accent B as its reference.
  Training never sees these sentences.

Each set is a Kaldi data directory: ``wav.scp`` (16 kHz 16-bit wavs in ``wav/``), ``text``,
``utt2spk``/``spk2utt`` (speaker = voice), ``utt2accent``, ``utt2sent`` (the sentence id
that pairs parallel renderings), ``utt2dur`` and ``phones`` (the accent's phonemization,
:meth:`sltk.tts.phonemize.Phonemized.to_line`). Audio goes through sltk's synthesis
(:func:`sltk.data.synth.voices.synthesize`, :func:`sltk.data.synth.acoustics.process`);
every utterance depends only on its plan entry, and valid wavs already there are kept, so
a rerun resumes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import soundfile as sf

from sltk.data.synth import acoustics
from sltk.data.synth.corpus import valid_wav
from sltk.data.synth.voices import Speaker, SynthesisError, Voice, synthesize
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path, read_table, write_table
from sltk.utils.progress import progress
from sltk.vc.accents import ACCENTS, check_accents, phonemize_accent

log = logging.getLogger("sltk")

SETS = ("train", "judge", "eval")

# Sentences rich in the sounds the accents differ on: post-vocalic r (car, park), t between
# vowels (water, better), the bath/trap vowels (dance, last), the lot/thought vowels, oa/ow.
_WORDS = {
    "name": ["martha", "gordon", "carter", "laura", "walter", "rosa", "peter", "harry", "dora", "bart"],
    "place": ["the harbour", "the market", "the garden", "the car park", "the water tower", "the farm",
              "the old castle", "the north road", "the river bank", "the bus stop"],
    "thing": ["the water bottle", "a better car", "the paper", "the butter", "a warm scarf", "the letter",
              "the guitar", "a hot coffee", "the yellow boat", "the bath towel"],
    "verb": ["parked", "started", "bought", "ordered", "carried", "forgot", "sorted", "wanted", "dropped",
             "fetched"],
    "time": ["after dark", "on thursday", "at four", "tomorrow morning", "last summer", "every year",
             "before dinner", "in the afternoon", "later", "right now"],
    "adj": ["dark", "short", "hot", "large", "sharp", "quiet", "pretty", "bitter", "broad", "narrow"],
}
_TEMPLATES = [
    "{name} {verb} {thing} near {place} {time}",
    "we {verb} {thing} at {place}",
    "the {adj} weather at {place} was better {time}",
    "{name} thought the {adj} path to {place} was far",
    "can you ask {name} to bring {thing} {time}",
    "our car is parked at {place} and it is {adj}",
    "{name} and {name} danced at {place} {time}",
    "the water at {place} is {adj} {time}",
    "i left {thing} at {place}, ask {name}",
    "nobody {verb} the {adj} boat {time}",
]


def sentence(index: int, seed: int) -> str:
    """Sentence ``index`` of the corpus with ``seed`` (deterministic)."""
    rng = random.Random(f"vc-{seed}-{index}")
    t = rng.choice(_TEMPLATES)
    out = t
    while "{" in out:
        a = out.index("{")
        b = out.index("}", a)
        out = out[:a] + rng.choice(_WORDS[out[a + 1:b]]) + out[b + 1:]
    return out[0].upper() + out[1:] + "."


def sentences(n: int, seed: int, start: int = 0, exclude=()) -> List[Tuple[int, str]]:
    """``n`` distinct sentences (id, text) from index ``start`` on, none in ``exclude``."""
    seen = set(exclude)
    out: List[Tuple[int, str]] = []
    i = start
    while len(out) < n:
        s = sentence(i, seed)
        if s not in seen:
            seen.add(s)
            out.append((i, s))
        i += 1
        if i - start > 200 * n + 1000:
            raise UserError(f"cannot draw {n} distinct sentences (the grammar is too small)")
    return out


@dataclass(frozen=True)
class VoiceSpec:
    variant: str    # espeak-ng variant (m3, f2)
    pitch: int      # semitones
    rate: float     # relative speed

    @property
    def id(self) -> str:
        p = f"n{-self.pitch}" if self.pitch < 0 else str(self.pitch)
        return f"{self.variant}_p{p}_r{round(self.rate * 100)}"

    @classmethod
    def parse(cls, s: str) -> "VoiceSpec":
        """``m3`` or ``m3:2:1.1`` (variant:pitch:rate)."""
        parts = s.split(":")
        try:
            if not parts[0] or len(parts) > 3:
                raise ValueError
            return cls(parts[0], int(parts[1]) if len(parts) > 1 else 0, float(parts[2]) if len(parts) > 2 else 1.0)
        except ValueError:
            raise UserError(f"bad voice {s!r}: expected VARIANT[:PITCH[:RATE]], e.g. m3 or f2:2:1.1") from None


@dataclass
class DataConfig:
    accents: Tuple[str, ...] = ("en-us", "en-gb-x-rp", "en-gb-scotland", "en-029")
    voices: Tuple[str, ...] = ("m1", "m3:-1:1.05", "f2", "f4:1:0.95")
    train_per_voice: int = 30      # sentences per (accent, voice) in train
    judge_per_voice: int = 8       # ... in judge
    eval_sentences: int = 6        # parallel sentences (each in every accent by every voice)
    seed: int = 0

    def validate(self) -> None:
        check_accents(self.accents)
        if len(self.accents) < 2:
            raise UserError("give at least two accents (conversion is between accents)")
        if len(set(self.accents)) != len(self.accents):
            raise UserError(f"accents repeated in {','.join(self.accents)}")
        specs = [VoiceSpec.parse(v) for v in self.voices]
        if not specs:
            raise UserError("give at least one voice")
        if len({s.id for s in specs}) != len(specs):
            raise UserError(f"voices repeated in {','.join(self.voices)}")
        for n, what in ((self.train_per_voice, "train-per-voice"), (self.judge_per_voice, "judge-per-voice"),
                        (self.eval_sentences, "eval-sentences")):
            if n < 1:
                raise UserError(f"--{what} must be at least 1")

    def to_json(self) -> dict:
        d = asdict(self)
        d["accents"], d["voices"] = list(self.accents), list(self.voices)
        return d


@dataclass
class Item:
    set: str
    utt: str
    accent: str
    voice: VoiceSpec
    sent: int
    text: str


def accent_tag(accent: str) -> str:
    return accent.replace("-", "")


def plan(cfg: DataConfig) -> List[Item]:
    """Every utterance of the corpus (deterministic from the configuration)."""
    cfg.validate()
    voices = [VoiceSpec.parse(v) for v in cfg.voices]
    A, V = len(cfg.accents), len(voices)
    n_train = A * V * cfg.train_per_voice
    n_judge = A * V * cfg.judge_per_voice
    # eval first (the fewest), then judge, then train, from separate index ranges, all distinct
    ev = sentences(cfg.eval_sentences, cfg.seed, 0)
    ju = sentences(n_judge, cfg.seed, 1_000_000, exclude=[s for _, s in ev])
    tr = sentences(n_train, cfg.seed, 2_000_000, exclude=[s for _, s in ev + ju])
    items: List[Item] = []
    for name, pool, per in (("train", tr, cfg.train_per_voice), ("judge", ju, cfg.judge_per_voice)):
        k = 0
        for a in cfg.accents:          # each (accent, voice) its own sentences: non-parallel
            for v in voices:
                for sid, text in pool[k:k + per]:
                    items.append(Item(name, f"{v.id}-{accent_tag(a)}-{name}{sid:07d}", a, v, sid, text))
                k += per
    for sid, text in ev:
        for a in cfg.accents:
            for v in voices:
                items.append(Item("eval", f"{v.id}-{accent_tag(a)}-eval{sid:07d}", a, v, sid, text))
    return items


def _synth_job(args) -> Tuple[str, int, Optional[str]]:
    item, path = args
    path = Path(path)
    n = valid_wav(path)
    if n:
        return item.utt, n, None
    v = item.voice
    spk = Speaker(Voice("espeak", ACCENTS[item.accent], v.variant, item.accent, v.variant[0],
                        accent_tag(item.accent)), v.rate, v.pitch)
    try:
        audio = synthesize(item.text, spk)
        y = acoustics.process(audio.samples, audio.sample_rate,
                              tempo=1.0 if audio.rate_done else spk.rate,
                              semitones=0.0 if audio.pitch_done else spk.pitch)
    except (SynthesisError, RuntimeError) as e:
        return item.utt, 0, str(e)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), y, acoustics.SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return item.utt, len(y), None


def make_data(cfg: DataConfig, out_dir, nj: int = 1) -> Tuple[int, int, int]:
    """Synthesize the corpus into ``out_dir`` (see the module doc). Returns (done, total,
    failed). A directory made with another configuration is refused."""
    cfg.validate()
    out = Path(out_dir)
    info = out / "corpus.json"
    if info.is_file():
        old = json.loads(info.read_text())
        if old.get("config") != cfg.to_json():
            raise UserError(f"{out} holds a corpus made with other options ({info}); use a new directory")
    items = plan(cfg)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    jobs = [(it, str((out / "wav" / f"{it.utt}.wav").resolve())) for it in items]
    lens: Dict[str, int] = {}
    failed = 0
    with multiprocessing.get_context("fork").Pool(nj) if nj > 1 else _Serial() as pool:
        for utt, n, err in progress(pool.imap(_synth_job, jobs, chunksize=4), total=len(jobs),
                                    desc="synthesize", unit="utt"):
            if err:
                failed += 1
                log.warning("%s: %s", utt, err)
            else:
                lens[utt] = n
    phon_cache: Dict[Tuple[str, str], str] = {}
    for name in SETS:
        its = [(it, p) for it, p in jobs if it.set == name and it.utt in lens]
        d = out / name
        d.mkdir(parents=True, exist_ok=True)

        def ph(it):
            key = (it.text, it.accent)
            if key not in phon_cache:
                phon_cache[key] = phonemize_accent(it.text, it.accent).to_line()
            return phon_cache[key]

        write_table(d / "wav.scp", [(it.utt, p) for it, p in its])
        write_table(d / "text", [(it.utt, it.text) for it, _ in its])
        write_table(d / "utt2spk", [(it.utt, it.voice.id) for it, _ in its])
        spk2utt: Dict[str, List[str]] = {}
        for it, _ in sorted(its, key=lambda x: x[0].utt.encode()):
            spk2utt.setdefault(it.voice.id, []).append(it.utt)
        write_table(d / "spk2utt", [(s, " ".join(u)) for s, u in spk2utt.items()])
        write_table(d / "utt2accent", [(it.utt, it.accent) for it, _ in its])
        write_table(d / "utt2sent", [(it.utt, str(it.sent)) for it, _ in its])
        write_table(d / "utt2dur", [(it.utt, f"{lens[it.utt] / acoustics.SAMPLE_RATE:.3f}") for it, _ in its])
        write_table(d / "phones", [(it.utt, ph(it)) for it, _ in its])
    with atomic_open(info, "w") as f:
        json.dump({"config": cfg.to_json(), "sets": {s: sum(1 for it in items if it.set == s and it.utt in lens)
                                                     for s in SETS}}, f, indent=1)
    return len(lens), len(items), failed


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    @staticmethod
    def imap(fn, xs, chunksize=1):
        return map(fn, xs)


@dataclass
class Utt:
    utt: str
    wav: str
    text: str
    speaker: str
    accent: str
    sent: int
    phones: str = ""               # Phonemized.to_line of its accent


def read_set(data_dir) -> List[Utt]:
    """The utterances of a data directory written by :func:`make_data` (``text``,
    ``utt2spk``, ``utt2accent`` needed; ``utt2sent`` and ``phones`` optional)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"data directory {d} does not exist")
    tabs = {}
    for name in ("wav.scp", "text", "utt2spk", "utt2accent", "utt2sent", "phones"):
        p = d / name
        if not p.is_file():
            if name in ("utt2sent", "phones"):
                tabs[name] = {}
                continue
            raise UserError(f"data directory {d} has no {name}")
        tabs[name] = dict(read_table(p))
    wav = tabs["wav.scp"]
    if not wav:
        raise UserError(f"{d / 'wav.scp'} is empty")
    for name in ("text", "utt2spk", "utt2accent"):
        miss = sorted(set(wav) - set(tabs[name]))
        if miss:
            raise UserError(f"{d / name} lacks {len(miss)} of the {len(wav)} utterances of wav.scp (first: {miss[0]})")
    out = []
    for u in sorted(wav, key=str.encode):
        try:
            sent = int(tabs["utt2sent"].get(u, "-1"))
        except ValueError:
            raise UserError(f"{d / 'utt2sent'}: sentence id of {u} is not an integer") from None
        out.append(Utt(u, wav[u], tabs["text"][u], tabs["utt2spk"][u], tabs["utt2accent"][u], sent,
                       tabs["phones"].get(u, "")))
    return out
