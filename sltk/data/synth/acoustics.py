"""Post-processing of synthesized speech: 16 kHz, rate/pitch, noise, reverberation, level.

:func:`draw_augmentation` draws every random choice for one utterance from a numpy
generator seeded by (corpus seed, utterance id), and :func:`process` applies them with no
randomness of its own, so an utterance's audio depends only on the seed and its id:

1. resample to 16 kHz (``scipy.signal.resample_poly``);
2. the speaker's rate and pitch where the synthesizer could not apply them, and the
   utterance's own tempo/pitch variation, with sox's ``tempo`` and ``pitch`` effects
   (WSOLA: tempo without pitch change and pitch without tempo change);
3. trim silence to 0.15 s at each end;
4. reverberation with a shoebox-room impulse response (pyroomacoustics image-source
   method, RT60 from 0.15 to 0.6 s), aligned on the direct path so the words keep their
   times;
5. coloured noise (spectrum 1/f^beta: white 0, pink 1, brown 2) at an SNR in dB;
6. peak normalization to 0.9 and 16-bit PCM.
"""

from __future__ import annotations

import subprocess
from math import gcd
from typing import Optional

import numpy as np
from scipy.signal import fftconvolve, resample_poly

SAMPLE_RATE = 16000


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling by a rational factor."""
    if sr_in == sr_out:
        return x.astype(np.float32)
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def sox_tempo_pitch(x: np.ndarray, sr: int, tempo: float = 1.0, semitones: float = 0.0) -> np.ndarray:
    """Change tempo (factor > 1 is faster) and pitch (semitones) independently with sox."""
    if abs(tempo - 1.0) < 1e-6 and abs(semitones) < 1e-6:
        return x
    effects = []
    if abs(semitones) >= 1e-6:
        effects += ["pitch", f"{100 * semitones:.1f}"]
    if abs(tempo - 1.0) >= 1e-6:
        effects += ["tempo", "-s", f"{tempo:.4f}"]
    fmt = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sr)]
    res = subprocess.run(["sox", "-q", "-V1", *fmt, "-", *fmt, "-", *effects],
                         input=np.ascontiguousarray(x, dtype="<f4").tobytes(), capture_output=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"sox {' '.join(effects)} failed: {res.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)


def trim_silence(x: np.ndarray, sr: int = SAMPLE_RATE, margin_s: float = 0.15,
                 threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``threshold_db`` below the peak (frames of
    10 ms), keeping ``margin_s`` of it at each end."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x
    hop = sr // 100
    n = len(x) // hop
    if n == 0:
        return x
    frames = x[: n * hop].reshape(n, hop)
    level = np.sqrt(np.mean(frames ** 2, axis=1) + 1e-20) / peak
    active = np.nonzero(20 * np.log10(level) > threshold_db)[0]
    if active.size == 0:
        return x
    margin = int(margin_s * sr)
    start = max(0, active[0] * hop - margin)
    end = min(len(x), (active[-1] + 1) * hop + margin)
    return x[start:end]


def colored_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS noise with power spectrum 1/f^beta."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-beta / 2.0)
    spec[0] = 0.0
    noise = np.fft.irfft(spec, n)
    rms = np.sqrt(np.mean(noise ** 2))
    return (noise / rms if rms > 0 else noise).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Add coloured noise so that speech power / noise power = ``snr_db``."""
    p = float(np.mean(x.astype(np.float64) ** 2))
    if p == 0.0 or len(x) < 2:
        return x
    noise = colored_noise(len(x), beta, rng)
    return (x + noise * np.sqrt(p / 10 ** (snr_db / 10.0))).astype(np.float32)


def room_impulse_response(room: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The impulse response of a shoebox room (``dims``, ``rt60``, ``source``, ``mic`` in m, s)."""
    import pyroomacoustics as pra

    dims = room["dims"]
    absorption, max_order = pra.inverse_sabine(room["rt60"], dims)
    r = pra.ShoeBox(dims, fs=sr, materials=pra.Material(absorption), max_order=min(max_order, 40))
    r.add_source(room["source"])
    r.add_microphone(room["mic"])
    r.compute_rir()
    return np.asarray(r.rir[0][0], dtype=np.float64)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir``, aligned on its direct path and cut to the input's length."""
    d = int(np.argmax(np.abs(rir)))
    y = fftconvolve(x.astype(np.float64), rir)[d: d + len(x)]
    return (y / (np.abs(rir[d]) or 1.0)).astype(np.float32)


def draw_room(rng: np.random.Generator) -> dict:
    dims = [float(rng.uniform(3.0, 8.0)), float(rng.uniform(3.0, 6.0)), float(rng.uniform(2.4, 3.5))]

    def point(z_lo: float, z_hi: float) -> list:
        return [float(rng.uniform(0.5, dims[0] - 0.5)), float(rng.uniform(0.5, dims[1] - 0.5)),
                float(rng.uniform(z_lo, z_hi))]

    return {"dims": dims, "rt60": float(rng.uniform(0.15, 0.6)), "source": point(1.2, 1.9), "mic": point(0.7, 1.5)}


def draw_augmentation(rng: np.random.Generator, noise_prob: float = 0.0, reverb_prob: float = 0.0,
                      snr_range=(5.0, 30.0), tempo_range=(1.0, 1.0), pitch_range: float = 0.0) -> dict:
    """Every random choice for one utterance, as a JSON-able dict (see :func:`process`).

    All values are drawn whether used or not, so changing one probability does not
    change the other draws."""
    u_noise, u_reverb = rng.random(), rng.random()
    aug = {
        "snr_db": float(rng.uniform(*snr_range)),
        "noise_beta": float(rng.choice([0.0, 1.0, 2.0])),
        "noise_seed": int(rng.integers(0, 2 ** 31 - 1)),
        "room": draw_room(rng),
        "tempo": float(rng.uniform(*tempo_range)) if tempo_range[1] > tempo_range[0] else float(tempo_range[0]),
        "pitch": float(rng.uniform(-pitch_range, pitch_range)) if pitch_range > 0 else 0.0,
    }
    aug["noise"] = bool(u_noise < noise_prob)
    aug["reverb"] = bool(u_reverb < reverb_prob)
    if not aug["noise"]:
        del aug["snr_db"], aug["noise_beta"], aug["noise_seed"]
    if not aug["reverb"]:
        del aug["room"]
    return aug


def process(x: np.ndarray, sr: int, aug: Optional[dict] = None, tempo: float = 1.0,
            semitones: float = 0.0) -> np.ndarray:
    """Synthesizer output -> 16 kHz int16 (see the module doc). ``tempo``/``semitones``:
    the speaker's residual rate and pitch; ``aug`` from :func:`draw_augmentation`."""
    aug = aug or {}
    y = resample(np.asarray(x, dtype=np.float32), sr, SAMPLE_RATE)
    y = sox_tempo_pitch(y, SAMPLE_RATE, tempo * aug.get("tempo", 1.0), semitones + aug.get("pitch", 0.0))
    y = trim_silence(y, SAMPLE_RATE)
    if aug.get("reverb"):
        y = reverberate(y, room_impulse_response(aug["room"], SAMPLE_RATE))
    if aug.get("noise"):
        y = add_noise(y, aug["snr_db"], aug["noise_beta"], np.random.default_rng(aug["noise_seed"]))
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y = y * (0.9 / peak)
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
