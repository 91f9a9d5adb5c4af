"""F0 tracking by normalised autocorrelation, frame-synchronous with :mod:`sltk.tts.features`.

For each 10 ms frame (centred as the mel frames are), a 40 ms Hann-windowed segment's
autocorrelation is normalised by its value at lag 0 and by the window's own autocorrelation;
the highest peak between the lags of ``fmax`` and ``fmin`` gives the period (refined by
parabolic interpolation). A frame is voiced when that peak exceeds ``threshold`` and the
frame is no more than ``silence_db`` below the loudest frame. Unvoiced frames get F0 0.
Short voiced runs are dropped and a median filter removes isolated octave jumps
(:func:`smooth_f0`).
"""

from __future__ import annotations

import numpy as np


def track_f0(x: np.ndarray, sr: int = 16000, hop: int = 160, fmin: float = 60.0, fmax: float = 400.0,
             win_s: float = 0.04, threshold: float = 0.45, silence_db: float = 35.0) -> np.ndarray:
    """F0 in Hz per frame (``round(len(x) / hop)`` frames), 0 where unvoiced."""
    x = np.asarray(x, dtype=np.float64)
    n_frames = (len(x) + hop // 2) // hop
    if n_frames == 0:
        return np.zeros(0)
    win = int(win_s * sr)
    pad = np.pad(x, (win, win))
    centers = np.arange(n_frames) * hop + hop // 2 + win
    idx = centers[:, None] - win // 2 + np.arange(win)[None, :]
    frames = pad[idx]
    frames = frames - frames.mean(1, keepdims=True)
    w = np.hanning(win)
    frames = frames * w
    nfft = 1 << (2 * win - 1).bit_length()
    spec = np.fft.rfft(frames, nfft)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft)[:, :win]
    wac = np.fft.irfft(np.abs(np.fft.rfft(w, nfft)) ** 2, nfft)[:win]
    energy = ac[:, 0]
    nac = ac / np.maximum(energy[:, None], 1e-12) / np.maximum(wac / wac[0], 1e-3)[None, :]
    lo, hi = int(sr / fmax), min(int(sr / fmin) + 1, win - 1)
    seg = nac[:, lo:hi]
    # the first local maximum within 10% of the best one (not a multiple of the period)
    best = seg.max(1, keepdims=True)
    is_max = np.zeros_like(seg, dtype=bool)
    is_max[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    cand = is_max & (seg >= 0.9 * best)
    k = np.where(cand.any(1), cand.argmax(1), seg.argmax(1))
    peak = seg[np.arange(n_frames), k]
    lag = (k + lo).astype(np.float64)
    # parabolic refinement
    inner = (k > 0) & (k < seg.shape[1] - 1)
    a = seg[np.arange(n_frames), np.clip(k - 1, 0, seg.shape[1] - 1)]
    b = seg[np.arange(n_frames), np.clip(k + 1, 0, seg.shape[1] - 1)]
    den = a - 2 * peak + b
    shift = np.where(inner & (np.abs(den) > 1e-12), 0.5 * (a - b) / np.where(den == 0, 1, den), 0.0)
    lag = lag + np.clip(shift, -1, 1)
    db = 10 * np.log10(np.maximum(energy, 1e-20))
    loud = db > db.max() - silence_db
    voiced = (peak > threshold) & loud
    return smooth_f0(np.where(voiced, sr / lag, 0.0))


def smooth_f0(f0: np.ndarray, min_run: int = 3, half: int = 2) -> np.ndarray:
    """Drop voiced runs shorter than ``min_run`` frames, then replace each voiced value by the
    median of the voiced values within ``half`` frames (removes isolated octave jumps)."""
    f = np.asarray(f0, dtype=np.float64).copy()
    v = f > 0
    i = 0
    while i < len(f):
        if v[i]:
            j = i
            while j < len(f) and v[j]:
                j += 1
            if j - i < min_run:
                f[i:j] = 0.0
            i = j
        else:
            i += 1
    out = f.copy()
    for t in np.nonzero(f > 0)[0]:
        w = f[max(0, t - half): t + half + 1]
        out[t] = np.median(w[w > 0])
    return out
