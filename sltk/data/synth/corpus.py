"""Synthetic speech corpora: plan (speakers, texts, augmentation), synthesize, write.

Layout of a corpus directory ``<out>``::

    <out>/wav/<utt>.wav                      16 kHz 16-bit mono
    <out>/{train,dev,test,test_heldout_synth}/
        wav.scp text utt2spk spk2utt spk2gender utt2voice utt2accent utt2synth
        utt2intent utt2slots utt2dur [utt2rare]
    <out>/manifests/<set>_recordings.jsonl.gz, <set>_supervisions.jsonl.gz
    <out>/corpus.json                        what was made, from what, with which options
    <out>/rare_words.txt                     the invented words (one per line)

Sets: ``train`` and ``dev`` share speakers; ``test`` uses voices (synthesizer voice +
espeak variant) never heard in train/dev, of the same synthesizers; ``test_heldout_synth``
uses only a synthesizer that no other set uses (``--heldout-synth``). ``utt2rare`` lists,
for the utterances that have any, the invented or held-out words they contain.

Sizes (``--size``; ``--num-utts`` overrides the number of utterances):

=======  ==========  ==============  =============  ================  ============
size     utterances  train speakers  test speakers  held-out-synth    rare words
                                                    speakers
=======  ==========  ==============  =============  ================  ============
tiny     40          4               2              2                 10
small    2000        40              8              6                 100
full     20000       200             24             12                500
=======  ==========  ==============  =============  ================  ============

Utterances are split 80/10/10 between train, dev and test, minus ``--heldout-frac``
(10%) for ``test_heldout_synth``, i.e. 70/10/10/10 by default.

Determinism: the plan (speakers, texts, augmentation) depends only on the options, the
seed and the installed data; each utterance's audio depends only on its plan entry, so
the same command gives byte-identical wavs for any ``--nj``. Rerunning a command resumes:
a wav that exists and is valid 16 kHz 16-bit mono is kept. A directory made with other
options is refused (``corpus.json``'s config must match).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import re
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import soundfile as sf

from sltk.data.kaldi import DataDir, format_time
from sltk.data.synth import acoustics
from sltk.data.synth.text import Lexicon, TextGenerator, TextItem, invent_words
from sltk.data.synth.voices import (BACKENDS, PITCHES, RATES, SYNTHESIZERS, Speaker, SynthesisError, Voice,
                                    get_backend, synthesize)
from sltk.data.text_norm import normalize_text
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open, atomic_path
from sltk.utils.progress import progress

log = logging.getLogger("sltk")

SETS = ("train", "dev", "test", "test_heldout_synth")


@dataclass(frozen=True)
class SizeSpec:
    num_utts: int
    train_speakers: int
    test_speakers: int
    heldout_speakers: int
    rare_words: int


SIZES: Dict[str, SizeSpec] = {
    "tiny": SizeSpec(40, 4, 2, 2, 10),
    "small": SizeSpec(2000, 40, 8, 6, 100),
    "full": SizeSpec(20000, 200, 24, 12, 500),
}


@dataclass
class CorpusConfig:
    """Everything that decides a corpus's content (``--nj`` does not)."""

    size: str = "small"
    num_utts: Optional[int] = None
    seed: int = 0
    synths: Optional[List[str]] = None          # None: every installed one but the held-out one
    heldout_synth: Optional[str] = "festival"   # None: no test_heldout_synth set
    holdout_words: List[str] = field(default_factory=list)
    holdout_sets: List[str] = field(default_factory=lambda: ["test", "test_heldout_synth"])
    holdout_rate: float = 0.2
    num_rare_words: Optional[int] = None
    rare_rate: float = 0.1
    plain_frac: float = 0.2
    dev_frac: float = 0.1
    test_frac: float = 0.1
    heldout_frac: float = 0.1
    test_voice_frac: float = 0.25
    noise_prob: float = 0.0
    reverb_prob: float = 0.0
    snr_range: Tuple[float, float] = (5.0, 30.0)
    tempo_range: Tuple[float, float] = (1.0, 1.0)
    pitch_range: float = 0.0
    utt_tag: str = ""                           # in every utterance id: corpora that are combined stay distinct

    @property
    def spec(self) -> SizeSpec:
        return SIZES[self.size]

    def validate(self) -> None:
        """Raise :class:`UserError` for an impossible or unknown setting."""
        if self.size not in SIZES:
            raise UserError(f"unknown size '{self.size}' (valid: {', '.join(SIZES)})")
        if self.num_utts is not None and self.num_utts < 1:
            raise UserError(f"--num-utts must be >= 1, got {self.num_utts}")
        for name in (self.synths or []) + ([self.heldout_synth] if self.heldout_synth else []):
            if name not in SYNTHESIZERS:
                raise UserError(f"unknown synthesizer '{name}' (known: {', '.join(SYNTHESIZERS)})")
        if self.synths is not None:
            if not self.synths:
                raise UserError("--synths names no synthesizer")
            if self.heldout_synth in self.synths:
                raise UserError(f"synthesizer '{self.heldout_synth}' cannot be both in --synths and "
                                "the --heldout-synth")
            for name in self.synths:
                b = get_backend(name)
                if not b.available():
                    raise UserError(f"synthesizer '{name}' is not available: {b.why_unavailable()}")
        if self.heldout_synth and not get_backend(self.heldout_synth).available():
            raise UserError(f"held-out synthesizer '{self.heldout_synth}' is not available: "
                            f"{get_backend(self.heldout_synth).why_unavailable()} "
                            "(choose another with --heldout-synth, or 'none')")
        for s in self.holdout_sets:
            if s not in SETS:
                raise UserError(f"unknown set '{s}' in --holdout-sets (valid: {', '.join(SETS)})")
        for name in ("holdout_rate", "rare_rate", "plain_frac", "dev_frac", "test_frac", "heldout_frac",
                     "test_voice_frac", "noise_prob", "reverb_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1], got {v}")
        if self.dev_frac + self.test_frac + self.heldout_frac >= 1.0:
            raise UserError("--dev-frac + --test-frac + --heldout-frac must leave utterances for train")
        if self.snr_range[0] > self.snr_range[1] or self.tempo_range[0] > self.tempo_range[1]:
            raise UserError("a range must be given as LOW,HIGH with LOW <= HIGH")
        if self.tempo_range[0] <= 0:
            raise UserError("--tempo-range must be positive")
        if not re.fullmatch(r"[a-z0-9]*", self.utt_tag):
            raise UserError(f"--utt-tag must be lower-case letters and digits, got '{self.utt_tag}'")

    def training_synths(self) -> List[str]:
        if self.synths is not None:
            return list(self.synths)
        return [n for n in SYNTHESIZERS if n != self.heldout_synth and get_backend(n).available()]

    def to_json(self) -> dict:
        d = asdict(self)
        d["snr_range"], d["tempo_range"] = list(self.snr_range), list(self.tempo_range)
        if not d["utt_tag"]:
            del d["utt_tag"]  # corpora made before the option existed keep their fingerprint
        return d


@dataclass
class Utterance:
    id: str
    set: str
    speaker: Speaker
    item: TextItem
    aug: dict


@dataclass
class Plan:
    utterances: List[Utterance]
    speakers: Dict[str, List[Speaker]]
    rare_words: List[str]
    holdout_words: List[str]
    sources: Dict[str, str]
    voices: Dict[str, List[str]]  # available voice ids per synthesizer


def read_word_list(path: PathLike) -> List[str]:
    """Words or phrases, one per line; blank lines and ``#`` comments skipped."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"word list {p} does not exist")
    words = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"word list {p} is not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not normalize_text(line):
            raise UserError(f"{p}:{n}: '{line}' has no letters or digits")
        words.append(line)
    if not words:
        raise UserError(f"word list {p} holds no words")
    return words


def _split_counts(cfg: CorpusConfig, n: int) -> Dict[str, int]:
    held_frac = cfg.heldout_frac if cfg.heldout_synth else 0.0
    counts = {}
    for name, frac in (("dev", cfg.dev_frac), ("test", cfg.test_frac), ("test_heldout_synth", held_frac)):
        c = int(round(n * frac))
        if frac > 0 and c == 0 and n >= 4:
            c = 1
        counts[name] = c
    counts["train"] = n - sum(counts.values())
    if counts["train"] < 1:
        raise UserError(f"{n} utterances are too few to split into train, dev and test sets")
    return {s: counts[s] for s in SETS}


def _draw_speakers(pools: Dict[str, List[Voice]], n: int, rng: random.Random) -> List[Speaker]:
    """Up to ``n`` distinct speakers, round-robin over synthesizers, cycling through each
    one's voices (shuffled) so that voices are covered before any repeats."""
    order = {s: rng.sample(v, len(v)) for s, v in pools.items() if v}
    synths = [s for s in SYNTHESIZERS if s in order]
    cursor = {s: 0 for s in synths}
    out: List[Speaker] = []
    ids = set()
    exhausted = set()
    k = 0
    while len(out) < n and len(exhausted) < len(synths):
        s = synths[k % len(synths)]
        k += 1
        if s in exhausted:
            continue
        voices = order[s]
        spk = None
        for _ in range(len(voices) * len(RATES) * len(PITCHES) * 2):
            v = voices[cursor[s] % len(voices)]
            cursor[s] += 1
            first = cursor[s] <= len(voices)  # first pass: each voice at its natural setting
            cand = Speaker(v, 1.0, 0) if first else Speaker(v, rng.choice(RATES), rng.choice(PITCHES))
            if cand.id not in ids:
                spk = cand
                break
        if spk is None:
            exhausted.add(s)
            continue
        ids.add(spk.id)
        out.append(spk)
    return out


def plan_corpus(cfg: CorpusConfig, lexicon: Optional[Lexicon] = None) -> Plan:
    """Decide every utterance: its set, speaker, text and augmentation."""
    cfg.validate()
    spec = cfg.spec
    n_utts = cfg.num_utts or spec.num_utts
    counts = _split_counts(cfg, n_utts)
    lex = lexicon or Lexicon.load()

    # Voices: per training synthesizer, a share held out for test.
    rng_v = random.Random(f"{cfg.seed}-voices")
    train_synths = cfg.training_synths()
    if not train_synths:
        raise UserError("no synthesizer is available for training (install espeak-ng)")
    all_voices = {s: sorted(get_backend(s).voices(), key=lambda v: v.id) for s in train_synths}
    seen, unseen = {}, {}
    for s, vs in all_voices.items():
        shuffled = rng_v.sample(vs, len(vs))
        n_test = max(1, round(cfg.test_voice_frac * len(vs))) if len(vs) >= 2 and cfg.test_voice_frac > 0 else 0
        unseen[s], seen[s] = shuffled[:n_test], shuffled[n_test:]
    if counts["test"] and not any(unseen.values()):
        raise UserError("no synthesizer has two voices, so no voice can be held out for the test set "
                        f"(synthesizers: {', '.join(train_synths)})")
    held_pool = {}
    if cfg.heldout_synth:
        held_pool = {cfg.heldout_synth: sorted(get_backend(cfg.heldout_synth).voices(), key=lambda v: v.id)}

    rng_s = random.Random(f"{cfg.seed}-speakers")
    n_train_spk = max(1, min(spec.train_speakers, counts["train"]))
    speakers = {
        "train": _draw_speakers(seen, n_train_spk, rng_s),
        "test": _draw_speakers(unseen, min(spec.test_speakers, counts["test"]), rng_s),
        "test_heldout_synth": _draw_speakers(held_pool, min(spec.heldout_speakers, counts["test_heldout_synth"]),
                                             rng_s),
    }
    speakers["dev"] = speakers["train"]
    for s in SETS:
        if counts[s] and not speakers[s]:
            raise UserError(f"no speaker could be made for the {s} set")

    # Rare (invented) words, never a dictionary word, a name, or a held-out word.
    exclude = set(lex.dictionary)
    for group in (lex.first_names, lex.last_names, lex.cities, lex.artists):
        for name in group:
            exclude.update(w.lower() for w in name.split())
    for h in cfg.holdout_words:
        exclude.update(normalize_text(h).lower().split())
    n_rare = spec.rare_words if cfg.num_rare_words is None else cfg.num_rare_words
    rare = invent_words(n_rare, random.Random(f"{cfg.seed}-rare"), exclude) if n_rare else []

    gen = TextGenerator(lex, rare, cfg.rare_rate, cfg.plain_frac, holdout=cfg.holdout_words)
    rng_t = random.Random(f"{cfg.seed}-text")
    utts: List[Utterance] = []
    k = 0
    for set_name in SETS:
        spks = speakers[set_name]
        for j in range(counts[set_name]):
            spk = spks[j % len(spks)]
            if cfg.holdout_words and set_name in cfg.holdout_sets:
                mode = "force" if rng_t.random() < cfg.holdout_rate else "allow"
            else:
                mode = "forbid"
            item = gen.generate(rng_t, holdout=mode)
            utt_id = f"{spk.id}-{cfg.utt_tag}-{k:06d}" if cfg.utt_tag else f"{spk.id}-{k:06d}"
            rng_a = np.random.default_rng([cfg.seed, zlib.crc32(utt_id.encode())])
            aug = acoustics.draw_augmentation(rng_a, cfg.noise_prob, cfg.reverb_prob, cfg.snr_range,
                                              cfg.tempo_range, cfg.pitch_range)
            utts.append(Utterance(utt_id, set_name, spk, item, aug))
            k += 1
    voices = {s: [v.id for v in vs] for s, vs in {**all_voices, **held_pool}.items()}
    return Plan(utts, speakers, rare, list(cfg.holdout_words), dict(lex.sources), voices)


# ----------------------------------------------------------------------------- synthesis


def valid_wav(path: Path) -> int:
    """The number of samples of a valid 16 kHz 16-bit mono wav at ``path``, else 0."""
    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - missing or corrupt: not valid
        return 0
    if info.samplerate != acoustics.SAMPLE_RATE or info.channels != 1 or info.subtype != "PCM_16":
        return 0
    return info.frames


Job = Tuple[str, str, str, Speaker, dict]  # utt id, wav path, spoken text, speaker, augmentation


def synthesize_job(job: Job) -> Tuple[str, int, Optional[str], bool]:
    """Make one wav (atomically). Returns (utt id, samples, error or None, was already there)."""
    utt, path, text, spk, aug = job
    wav = Path(path)
    n = valid_wav(wav)
    if n:
        return utt, n, None, True
    try:
        with tempfile.TemporaryDirectory(prefix="sltk-synth-") as d:
            audio = synthesize(text, spk, Path(d))
        y = acoustics.process(audio.samples, audio.sample_rate, aug,
                              tempo=1.0 if audio.rate_done else spk.rate,
                              semitones=0.0 if audio.pitch_done else float(spk.pitch))
        if y.size == 0:
            raise SynthesisError("no audio left after processing")
        with atomic_path(wav) as tmp:
            sf.write(str(tmp), y, acoustics.SAMPLE_RATE, subtype="PCM_16", format="WAV")
        return utt, int(y.size), None, False
    except (SynthesisError, RuntimeError, OSError, ValueError) as e:
        return utt, 0, f"{type(e).__name__}: {e}", False


def _run_jobs(jobs: List[Job], nj: int) -> Iterator[Tuple[str, int, Optional[str], bool]]:
    if nj <= 1 or len(jobs) <= 1:
        yield from map(synthesize_job, jobs)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(nj, len(jobs))) as pool:
        yield from pool.imap_unordered(synthesize_job, jobs, chunksize=1)


@dataclass
class Result:
    done: int
    total: int
    failed: int
    skipped: int
    seconds: float
    out_dir: Path
    sets: Dict[str, int]


def _check_or_write_config(out: Path, cfg: CorpusConfig, plan: Plan) -> None:
    fingerprint = {"config": cfg.to_json(), "voices": plan.voices, "text_sources": plan.sources}
    path = out / "corpus.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old is not None:
            for key in ("config", "voices", "text_sources"):
                a, b = old.get(key), fingerprint[key]
                if a != b:
                    detail = ""
                    if isinstance(a, dict) and isinstance(b, dict):
                        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                        detail = f" ({', '.join(diff)})" if diff else ""
                    raise UserError(f"{out} was made with other {key.replace('_', ' ')}{detail} than now; "
                                    "use a new output directory or remove it")
    info = {**fingerprint, "status": "in progress"}
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1, sort_keys=True)


def make_corpus(cfg: CorpusConfig, out_dir: PathLike, nj: int = 1, lexicon: Optional[Lexicon] = None) -> Result:
    """Plan, synthesize (resuming) and write the data directories and manifests."""
    start = time.time()
    out = Path(out_dir)
    plan = plan_corpus(cfg, lexicon)
    log.info("text sources: %s", "; ".join(f"{k}: {v}" for k, v in plan.sources.items()))
    for s in SETS:
        n = sum(u.set == s for u in plan.utterances)
        if n:
            log.info("%s: %d utterances, %d speakers (%s)", s, n, len(plan.speakers[s]),
                     ", ".join(sorted({sp.synth for sp in plan.speakers[s]})))
    out.mkdir(parents=True, exist_ok=True)
    _check_or_write_config(out, cfg, plan)
    wav_dir = out / "wav"
    wav_dir.mkdir(exist_ok=True)
    for stale in wav_dir.glob(".*.tmp"):  # left by a killed run
        stale.unlink()

    jobs = [(u.id, str(wav_dir / f"{u.id}.wav"), u.item.spoken, u.speaker, u.aug) for u in plan.utterances]
    frames: Dict[str, int] = {}
    failed = skipped = 0
    for utt, n, err, was_there in progress(_run_jobs(jobs, nj), total=len(jobs), desc="synthesize", unit="utt"):
        if err:
            failed += 1
            log.warning("%s: %s", utt, err)
            continue
        frames[utt] = n
        skipped += was_there

    sets = write_sets(out, plan, frames)
    write_info(out, cfg, plan, sets, frames)
    return Result(len(frames), len(jobs), failed, skipped, time.time() - start, out, sets)


def write_sets(out: Path, plan: Plan, frames: Dict[str, int]) -> Dict[str, int]:
    """Write the Kaldi data directories and lhotse manifests of the synthesized utterances."""
    from lhotse import AudioSource, Recording, RecordingSet

    from sltk.data.lhotse_io import to_lhotse, write_manifests

    sets = {}
    for set_name in SETS:
        utts = [u for u in plan.utterances if u.set == set_name and u.id in frames]
        if not utts:
            continue
        d = DataDir()
        d.text = {}
        d.spk2gender = {}
        tables: Dict[str, Dict[str, str]] = {k: {} for k in ("utt2voice", "utt2accent", "utt2synth", "utt2intent",
                                                              "utt2slots", "utt2dur", "utt2rare")}
        recs = []
        for u in utts:
            wav = str(out / "wav" / f"{u.id}.wav")
            d.wav_scp[u.id] = wav
            d.utt2spk[u.id] = u.speaker.id
            d.text[u.id] = u.item.text
            d.spk2gender[u.speaker.id] = u.speaker.voice.gender
            v = u.speaker.voice
            tables["utt2voice"][u.id] = v.id
            tables["utt2accent"][u.id] = v.accent
            tables["utt2synth"][u.id] = v.synth
            tables["utt2intent"][u.id] = u.item.intent
            tables["utt2slots"][u.id] = u.item.slots_json
            tables["utt2dur"][u.id] = format_time(frames[u.id] / acoustics.SAMPLE_RATE)
            if u.item.rare:
                tables["utt2rare"][u.id] = " ".join(u.item.rare)
            n = frames[u.id]
            recs.append(Recording(id=u.id, sources=[AudioSource(type="file", channels=[0], source=wav)],
                                  sampling_rate=acoustics.SAMPLE_RATE, num_samples=n,
                                  duration=n / acoustics.SAMPLE_RATE))
        if any(g not in ("m", "f") for g in d.spk2gender.values()):
            d.spk2gender = None  # Kaldi's spk2gender knows only m and f
        d.extra = {k: v for k, v in tables.items() if v}
        set_dir = out / set_name
        if (set_dir / "utt2rare").exists() and "utt2rare" not in d.extra:
            (set_dir / "utt2rare").unlink()
        d.write(set_dir)
        rec_set, sup_set = to_lhotse(d, recordings=RecordingSet.from_recordings(recs))
        write_manifests(rec_set, sup_set, out / "manifests", prefix=f"{set_name}_")
        sets[set_name] = len(utts)
    return sets


def write_info(out: Path, cfg: CorpusConfig, plan: Plan, sets: Dict[str, int], frames: Dict[str, int]) -> None:
    synths = sorted({u.speaker.synth for u in plan.utterances})
    hours = {s: round(sum(frames[u.id] for u in plan.utterances if u.set == s and u.id in frames)
                      / acoustics.SAMPLE_RATE / 3600, 4) for s in sets}
    info = {
        "config": cfg.to_json(),
        "voices": plan.voices,
        "text_sources": plan.sources,
        "status": "complete" if len(frames) == len(plan.utterances) else "incomplete",
        "sets": {s: {"utterances": n, "hours": hours[s],
                     "speakers": sorted({sp.id for sp in plan.speakers[s]}),
                     "voices": sorted({sp.voice.id for sp in plan.speakers[s]})} for s, n in sets.items()},
        "synthesizer_versions": {s: BACKENDS[s].version() for s in synths},
        "rare_words": plan.rare_words,
        "holdout_words": plan.holdout_words,
    }
    with atomic_open(out / "corpus.json", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    with atomic_open(out / "rare_words.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{normalize_text(w)}\n" for w in plan.rare_words)
