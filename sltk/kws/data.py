"""Simulated data for keyword spotting and device-directed speech detection under playback.

Every utterance has two labels: *keyword present* (the wake word "computer" is spoken) and
*device-directed* (the talker addresses the device). Kinds of near-end speech:

=============  =====================================================  ===  ==
kind           example                                                kw   dd
=============  =====================================================  ===  ==
wake_command   "computer, set a timer for ten minutes"                1    1
command        "turn the volume down" (a follow-up without wake word)  0    1
mention        "my computer crashed again this morning"               1    0
confusable     "the commuter train was late" (commuter, compute, ...)  0    0
chatter        everyday or TV-like sentences (fortunes, templates)     0    0
=============  =====================================================  ===  ==

Playback (the loudspeaker's *reference* signal r) is synthesized speech of another voice
or synthetic music (:func:`synth_music`). The microphone signal is

    y = s + a * h * g(r delayed) + n

with g a loudspeaker non-linearity (:func:`loudspeaker`), a delay of 0-100 ms, h a room
impulse response from the loudspeaker to the microphone (pyroomacoustics, or decaying
noise when it is missing), a scaled to a signal-to-echo ratio drawn from [-10, 10] dB and
n coloured noise. A share of utterances is *clean*: no playback, r = 0.

:func:`simulate` writes a Kaldi-style data directory: ``wav.scp`` (microphone),
``ref.scp`` (reference), ``text``, ``utt2kw``, ``utt2dd``, ``utt2ser`` (dB or ``clean``),
``utt2kind``, ``utt2spk``, ``spk2utt`` and ``utt2dur``. Each utterance's content depends
only on (seed, index); existing valid wavs are kept (resume); ``nj`` processes synthesize.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, lfilter

from sltk.data.synth import acoustics
from sltk.data.synth.voices import BACKENDS, SynthesisError, Speaker, available_synthesizers, synthesize
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path, write_table
from sltk.utils.progress import progress

log = logging.getLogger("sltk")

SR = acoustics.SAMPLE_RATE
KEYWORD = "computer"
CONFUSABLES = ("commuter", "compute", "competitor", "computing", "commute", "compete", "compote",
               "computation", "compuserve", "compositor", "composure", "commuters")
KINDS = {"wake_command": (1, 1), "command": (0, 1), "mention": (1, 0), "confusable": (0, 0), "chatter": (0, 0)}
DEFAULT_KIND_WEIGHTS = {"wake_command": 0.35, "command": 0.15, "mention": 0.1, "confusable": 0.2, "chatter": 0.2}

_COMMANDS = [
    "set a timer for {num} minutes", "turn {onoff} the {room} lights", "play some {genre} music",
    "what is the weather in {city}", "call {name}", "turn the volume {updown}", "stop the music",
    "add {item} to my shopping list", "what time is it", "remind me to call {name} at {num}",
    "skip this song", "pause", "set an alarm for {num} o'clock", "how far is {city}",
    "dim the {room} lights to {num} percent", "read my messages", "what's on my calendar today",
]
_MENTIONS = [
    "my computer crashed again this morning", "I left the computer on in the {room}",
    "{name} bought a new computer last week", "the computer in the office is really slow",
    "we should ask {name} to fix the computer", "that old computer still works fine",
    "the computer says no", "I spent all day at the computer",
]
_CONFUSABLE = [
    "the {w} train was late again", "{name} had to {w} the totals by hand", "our {w} lowered prices",
    "I read about the {w} in the paper", "the {w} was stuck in traffic near {city}",
    "she likes to {w} with {name}", "it takes a while to {w} that", "{w} is not my thing",
]
_CHATTER = [
    "did you see the game last night", "I think {name} is coming over at {num}",
    "we need to leave for {city} soon", "the {room} is a mess", "I'm going to make some tea",
    "and in other news the markets rose today", "tonight on the show we talk to {name}",
    "temperatures in {city} will reach {num} degrees", "can you pass me the salt",
    "let me tell you about my trip to {city}",
]
_FILL = {
    "num": ["two", "five", "seven", "ten", "fifteen", "twenty", "thirty", "eight"],
    "onoff": ["on", "off"], "updown": ["up", "down"],
    "room": ["kitchen", "bedroom", "living room", "hallway", "garage", "office"],
    "genre": ["jazz", "rock", "classical", "country", "pop"],
    "city": ["Boston", "Paris", "Denver", "Madrid", "Tokyo", "Seattle", "Lisbon"],
    "name": ["Anna", "Peter", "Maria", "John", "Sophie", "David", "Lucy", "Omar"],
    "item": ["milk", "eggs", "bread", "coffee", "apples"],
}


def _fill(template: str, rng: random.Random, **extra) -> str:
    out = template
    for key, vals in {**_FILL, **{k: [v] for k, v in extra.items()}}.items():
        while "{" + key + "}" in out:
            out = out.replace("{" + key + "}", rng.choice(vals), 1)
    return out


def make_text(kind: str, rng: random.Random, sentences: Sequence[str] = ()) -> str:
    """The spoken text of one near-end utterance of ``kind`` (see the module doc)."""
    if kind == "wake_command":
        return f"{KEYWORD}, " + _fill(rng.choice(_COMMANDS), rng)
    if kind == "command":
        return _fill(rng.choice(_COMMANDS), rng)
    if kind == "mention":
        return _fill(rng.choice(_MENTIONS), rng)
    if kind == "confusable":
        return _fill(rng.choice(_CONFUSABLE), rng, w=rng.choice(CONFUSABLES))
    if kind == "chatter":
        if sentences and rng.random() < 0.5:
            return rng.choice(sentences)
        return _fill(rng.choice(_CHATTER), rng)
    raise ValueError(f"unknown kind {kind!r}")


# ----------------------------------------------------------------------------- signals

def loudspeaker(x: np.ndarray, kind: str = "tanh", drive: float = 2.0) -> np.ndarray:
    """A memoryless loudspeaker non-linearity: ``tanh`` soft clipping (``tanh(d x)/d``),
    ``poly`` (x + 0.2 x^2 - 0.1 x^3, an asymmetric cubic) or ``none``."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "none":
        return x.copy()
    if kind == "tanh":
        return np.tanh(drive * x) / drive
    if kind == "poly":
        return x + 0.2 * x ** 2 - 0.1 * x ** 3
    raise ValueError(f"unknown non-linearity {kind!r}")


def simulate_echo(ref: np.ndarray, rir: np.ndarray, delay_samples: int, nonlinearity: str = "none") -> np.ndarray:
    """The echo at the microphone: ``(rir * g(ref delayed by delay_samples))[:len(ref)]``."""
    ref = np.asarray(ref, dtype=np.float64)
    g = loudspeaker(ref, nonlinearity)
    d = np.concatenate([np.zeros(int(delay_samples)), g])[: len(ref)]
    if len(d) == 0:
        return d
    return fftconvolve(d, np.asarray(rir, dtype=np.float64))[: len(ref)]


def echo_rir(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A loudspeaker-to-microphone impulse response: pyroomacoustics' image method in a
    random shoebox room with the loudspeaker 5-40 cm from the microphone, or (without
    pyroomacoustics) a direct path plus exponentially decaying noise (RT60 0.15-0.6 s)."""
    room = acoustics.draw_room(rng)
    rt60 = room["rt60"]
    d = float(rng.uniform(0.05, 0.4))
    az = float(rng.uniform(0, 2 * np.pi))
    mic = room["mic"]
    src = [min(max(mic[0] + d * np.cos(az), 0.2), room["dims"][0] - 0.2),
           min(max(mic[1] + d * np.sin(az), 0.2), room["dims"][1] - 0.2), mic[2]]
    noise = rng.standard_normal(int(rt60 * sr))
    try:
        rir = acoustics.room_impulse_response({**room, "source": src}, sr)
    except ImportError:
        t = np.arange(len(noise)) / sr
        rir = noise * np.exp(-6.9 * t / rt60) * 0.3
        rir[0] = 1.0
    return (rir / (np.max(np.abs(rir)) or 1.0)).astype(np.float64)


def synth_music(n: int, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """``n`` samples of synthetic music: notes of a random scale as sums of harmonics with
    attack/decay envelopes, plus kick (decaying low sine) and hi-hat (high-passed noise
    bursts) on a beat grid. Peak 0.9."""
    bpm = float(rng.uniform(70, 150))
    beat = int(sr * 60 / bpm)
    root = float(rng.uniform(110, 260))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    nharm = int(rng.integers(2, 7))
    y = np.zeros(n + 4 * beat)
    t_beat = np.arange(beat * 2) / sr
    pos = 0
    while pos < n:
        dur = beat * int(rng.choice([1, 1, 2]))
        f0 = root * 2 ** (rng.choice(scale) / 12.0) * float(rng.choice([1, 2]))
        t = np.arange(dur) / sr
        env = np.minimum(t / 0.01, 1.0) * np.exp(-t * float(rng.uniform(2, 8)))
        note = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, nharm + 1) if f0 * k < sr / 2)
        y[pos: pos + dur] += 0.5 * env * note
        pos += dur
    b_hp, a_hp = butter(4, 6000 / (sr / 2), "high")
    hat = lfilter(b_hp, a_hp, rng.standard_normal(len(t_beat))) * np.exp(-t_beat * 60)
    kick = np.sin(2 * np.pi * 55 * t_beat * (1 + np.exp(-t_beat * 30))) * np.exp(-t_beat * 12)
    for i, p in enumerate(range(0, n, beat)):
        y[p: p + len(t_beat)] += (kick if i % 2 == 0 else 0.5 * hat)[: len(y) - p]
    y = y[:n]
    peak = np.max(np.abs(y)) if n else 0.0
    return (0.9 * y / peak if peak > 0 else y).astype(np.float64)


def power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2)) if len(x) else 0.0


# ----------------------------------------------------------------------------- the plan

@dataclass
class SimConfig:
    """Everything that decides a simulated data set's content (``nj`` does not)."""
    num_utts: int = 1000
    seed: int = 0
    synths: Tuple[str, ...] = ()          # empty: every available backend
    clean_frac: float = 0.25              # share of utterances without playback
    music_frac: float = 0.5               # share of playback that is music (else speech)
    ser_range: Tuple[float, float] = (-10.0, 10.0)
    snr_range: Tuple[float, float] = (15.0, 35.0)
    max_delay_ms: float = 100.0
    kind_weights: Dict[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))
    utt_tag: str = ""                     # in every utterance id (e.g. train/test)

    def to_json(self) -> dict:
        d = asdict(self)
        d["synths"] = list(self.synths)
        d["ser_range"] = list(self.ser_range)
        d["snr_range"] = list(self.snr_range)
        return d


@dataclass
class UttPlan:
    utt: str
    spk: Speaker
    kind: str
    text: str
    kw: int
    dd: int
    playback: str               # none, speech, music
    ser_db: Optional[float]
    pb_spk: Optional[Speaker]
    pb_text: str
    seed: int                   # for every draw made while rendering
    max_delay_ms: float = 100.0
    snr_range: Tuple[float, float] = (15.0, 35.0)


def speakers_for(synths: Sequence[str]) -> List[Speaker]:
    """Every (voice, rate, pitch) of the given backends (all available ones when empty)."""
    avail = available_synthesizers()
    names = list(synths) or avail
    missing = [s for s in names if s not in avail]
    if missing:
        why = "; ".join(f"{s}: {BACKENDS[s].why_unavailable()}" if s in BACKENDS else f"{s}: unknown synthesizer"
                        for s in missing)
        raise UserError(f"synthesizer(s) not available: {why}")
    out = []
    for s in names:
        for v in BACKENDS[s].voices():
            out += [Speaker(v, r, p) for r in (0.9, 1.0, 1.1) for p in (-2, 0, 2)]
    if not out:
        raise UserError("no voices: install espeak-ng (apt-get install espeak-ng) or another synthesizer")
    return out


def make_plan(cfg: SimConfig, sentences: Optional[Sequence[str]] = None) -> List[UttPlan]:
    """The content of every utterance, drawn from ``cfg.seed``."""
    spks = speakers_for(cfg.synths)
    if sentences is None:
        try:
            from sltk.data.synth.text import read_fortune_sentences
            sentences = [s for s in read_fortune_sentences() if 3 <= len(s.split()) <= 14]
        except Exception:  # noqa: BLE001 - fortunes are optional
            sentences = []
    kinds = sorted(cfg.kind_weights)
    w = np.array([cfg.kind_weights[k] for k in kinds], dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise UserError("kind weights must be non-negative with a positive sum")
    plans = []
    for i in range(cfg.num_utts):
        rng = random.Random(f"{cfg.seed}-{i}")
        spk = rng.choice(spks)
        kind = kinds[int(np.searchsorted(np.cumsum(w) / w.sum(), rng.random(), side="right"))]
        kind = kind if kind in KINDS else "chatter"
        kw, dd = KINDS[kind]
        text = make_text(kind, rng, sentences)
        if rng.random() < cfg.clean_frac:
            playback, ser, pb_spk, pb_text = "none", None, None, ""
        else:
            ser = round(rng.uniform(*cfg.ser_range), 1)
            playback = "music" if rng.random() < cfg.music_frac else "speech"
            pb_spk = rng.choice([s for s in spks if s.voice != spk.voice] or spks)
            pb_text = " ".join(make_text("chatter", rng, sentences) for _ in range(3)) if playback == "speech" else ""
        tag = f"{cfg.utt_tag}-" if cfg.utt_tag else ""
        utt = f"{spk.id}-{tag}{i:06d}"
        plans.append(UttPlan(utt, spk, kind, text, kw, dd, playback, ser, pb_spk, pb_text,
                             zlib.crc32(f"{cfg.seed}-{i}".encode()), cfg.max_delay_ms, tuple(cfg.snr_range)))
    return plans


# ----------------------------------------------------------------------------- rendering

def _render_speech(text: str, spk: Speaker) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="sltk-kws-") as d:
        a = synthesize(text, spk, Path(d))
    y = acoustics.process(a.samples, a.sample_rate, None, tempo=1.0 if a.rate_done else spk.rate,
                          semitones=0.0 if a.pitch_done else float(spk.pitch))
    return y.astype(np.float64) / 32768.0


def render(p: UttPlan) -> Tuple[np.ndarray, np.ndarray, dict]:
    """(mic, reference, info) of one planned utterance, float in [-1, 1]."""
    rng = np.random.default_rng(p.seed)
    s = _render_speech(p.text, p.spk)
    lead, tail = int(rng.uniform(0.3, 1.0) * SR), int(rng.uniform(0.2, 0.5) * SR)
    room = acoustics.draw_room(rng)
    if rng.random() < 0.5:
        try:
            s = acoustics.reverberate(s, acoustics.room_impulse_response(room, SR)).astype(np.float64)
        except ImportError:
            pass
    p_s = power(s)
    n = lead + len(s) + tail
    near = np.zeros(n)
    near[lead: lead + len(s)] = s
    info = {"speech_start": lead / SR, "speech_end": (lead + len(s)) / SR}
    ref = np.zeros(n)
    mic = near.copy()
    if p.playback != "none":
        if p.playback == "music":
            ref = synth_music(n, rng)
        else:
            pb = _render_speech(p.pb_text, p.pb_spk)
            pb = np.tile(pb, -(-n // max(len(pb), 1)))[:n] if len(pb) else np.zeros(n)
            off = int(rng.integers(0, max(1, len(pb) - n + 1)))
            ref = pb[off: off + n] * 0.9 / (np.max(np.abs(pb)) or 1.0)
        ref = ref * float(rng.uniform(0.3, 1.0))
        delay = int(rng.uniform(0, p.max_delay_ms) * SR / 1000)
        nl = str(rng.choice(["tanh", "poly", "none"]))
        echo = simulate_echo(ref, echo_rir(rng), delay, nl)
        p_e = power(echo[lead: lead + len(s)]) or power(echo)
        if p_e > 0:
            echo *= np.sqrt(p_s / (p_e * 10 ** (p.ser_db / 10)))
        mic = mic + echo
        info.update({"delay_ms": 1000 * delay / SR, "nonlinearity": nl})
    snr = float(rng.uniform(*p.snr_range))
    mic = mic + acoustics.colored_noise(n, float(rng.choice([0.0, 1.0, 2.0])), rng) * np.sqrt(p_s / 10 ** (snr / 10))
    peak = max(np.max(np.abs(mic)), 1e-9)
    if peak > 0.95:
        mic *= 0.95 / peak
    info["snr_db"] = snr
    return mic.astype(np.float32), ref.astype(np.float32), info


def valid_wav(path: Path) -> int:
    """Samples of a valid 16 kHz 16-bit mono wav at ``path``, else 0."""
    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001
        return 0
    if info.samplerate != SR or info.channels != 1 or info.subtype != "PCM_16":
        return 0
    return info.frames


def write_wav(path: Path, x: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(x, -1.0, 32767 / 32768), SR, subtype="PCM_16", format="WAV")


def _job(args) -> Tuple[str, int, Optional[str], bool]:
    p, out = args
    mic_path, ref_path = out / "wav" / f"{p.utt}.wav", out / "ref" / f"{p.utt}.wav"
    n = valid_wav(mic_path)
    if n and valid_wav(ref_path) == n:
        return p.utt, n, None, True
    try:
        mic, ref, _ = render(p)
        write_wav(ref_path, ref)
        write_wav(mic_path, mic)
        return p.utt, len(mic), None, False
    except (SynthesisError, RuntimeError, OSError, ValueError) as e:
        return p.utt, 0, f"{type(e).__name__}: {e}", False


def _run(jobs, nj: int) -> Iterator:
    if nj <= 1 or len(jobs) <= 1:
        yield from map(_job, jobs)
        return
    with multiprocessing.get_context("fork").Pool(min(nj, len(jobs))) as pool:
        yield from pool.imap_unordered(_job, jobs, chunksize=1)


def simulate(cfg: SimConfig, out_dir, nj: int = 1, sentences: Optional[Sequence[str]] = None) -> Tuple[int, int, int]:
    """Simulate ``cfg.num_utts`` utterances into the data directory ``out_dir``.
    Returns (done, total, failed); failed utterances are left out of the tables."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conf_path = out / "simulate.json"
    if conf_path.is_file():
        old = json.loads(conf_path.read_text(encoding="utf-8")).get("config")
        if old != cfg.to_json():
            raise UserError(f"{out} was simulated with another configuration ({conf_path}); "
                            "use a new output directory or remove it")
    with atomic_open(conf_path, "w", encoding="utf-8") as f:
        json.dump({"config": cfg.to_json()}, f, indent=1, sort_keys=True)
    plans = make_plan(cfg, sentences)
    (out / "wav").mkdir(exist_ok=True)
    (out / "ref").mkdir(exist_ok=True)
    by_utt = {p.utt: p for p in plans}
    ok: Dict[str, int] = {}
    failed = 0
    for utt, n, err, _ in progress(_run([(p, out) for p in plans], nj), total=len(plans), desc="simulate", unit="utt"):
        if err:
            failed += 1
            log.warning("%s: %s", utt, err)
        else:
            ok[utt] = n
    good = [by_utt[u] for u in sorted(ok)]
    write_table(out / "wav.scp", [(p.utt, str((out / "wav" / f"{p.utt}.wav").resolve())) for p in good])
    write_table(out / "ref.scp", [(p.utt, str((out / "ref" / f"{p.utt}.wav").resolve())) for p in good])
    write_table(out / "text", [(p.utt, p.text) for p in good])
    write_table(out / "utt2kw", [(p.utt, str(p.kw)) for p in good])
    write_table(out / "utt2dd", [(p.utt, str(p.dd)) for p in good])
    write_table(out / "utt2ser", [(p.utt, "clean" if p.ser_db is None else f"{p.ser_db:.1f}") for p in good])
    write_table(out / "utt2kind", [(p.utt, p.kind) for p in good])
    write_table(out / "utt2playback", [(p.utt, p.playback) for p in good])
    write_table(out / "utt2spk", [(p.utt, p.spk.id) for p in good])
    write_table(out / "utt2dur", [(p.utt, f"{ok[p.utt] / SR:.3f}") for p in good])
    spk2utt: Dict[str, List[str]] = {}
    for p in good:
        spk2utt.setdefault(p.spk.id, []).append(p.utt)
    write_table(out / "spk2utt", [(s, " ".join(us)) for s, us in spk2utt.items()])
    return len(good), len(plans), failed
