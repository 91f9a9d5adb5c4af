"""Classical linear acoustic echo cancellation: the front end of the ``aec`` variant.

* :func:`nlms`: sample-by-sample normalized LMS (reference implementation, slow in Python);
* :class:`PBFDAF`: the partitioned-block frequency-domain adaptive filter (MDF, as in Speex
  and WebRTC's AEC), streaming: feed blocks of ``block`` samples, get the error (= echo
  removed) signal back; :func:`pbfdaf` runs it over whole signals;
* :func:`erle_db`: echo return loss enhancement, 10 log10(P(mic) / P(residual));
* :func:`pbfdaf_macs_per_sample`: its cost, counted for :func:`sltk.kws.models.complexity`.
"""

from __future__ import annotations

import math

import numpy as np


def nlms(mic: np.ndarray, ref: np.ndarray, taps: int = 256, mu: float = 0.5, eps: float = 1e-6) -> np.ndarray:
    """Time-domain NLMS: returns e[n] = mic[n] - w^T [ref[n], ..., ref[n-taps+1]], w adapted
    by ``mu * e x / (x^T x + eps)``."""
    mic = np.asarray(mic, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if len(ref) < len(mic):
        ref = np.pad(ref, (0, len(mic) - len(ref)))
    xp = np.concatenate([np.zeros(taps - 1), ref])
    w = np.zeros(taps)
    e = np.empty(len(mic))
    for n in range(len(mic)):
        x = xp[n: n + taps][::-1]
        e[n] = mic[n] - w @ x
        w += (mu * e[n] / (x @ x + eps)) * x
    return e


class PBFDAF:
    """Partitioned-block frequency-domain adaptive filter (MDF) with a filter of
    ``block * partitions`` taps, per-bin power normalisation and the gradient constraint.

    ``process(mic_block, ref_block)`` takes exactly ``block`` samples of each and returns
    the ``block`` samples of mic minus the echo estimate.
    """

    def __init__(self, block: int = 256, partitions: int = 8, mu: float = 0.3, beta: float = 0.9,
                 eps: float = 1e-3):
        self.B, self.P, self.mu, self.beta, self.eps = block, partitions, mu, beta, eps
        nb = block + 1
        self.W = np.zeros((partitions, nb), dtype=np.complex128)   # filter partitions
        self.X = np.zeros((partitions, nb), dtype=np.complex128)   # spectra of past ref blocks
        self.prev_ref = np.zeros(block)
        self.power = None  # smoothed per-bin power of the reference (set by the first block)
        self.resets = 0    # times the divergence guard cleared the filter

    def process(self, mic_block: np.ndarray, ref_block: np.ndarray) -> np.ndarray:
        B = self.B
        x2 = np.concatenate([self.prev_ref, np.asarray(ref_block, dtype=np.float64)])
        self.prev_ref = x2[B:].copy()
        self.X = np.roll(self.X, 1, axis=0)
        self.X[0] = np.fft.rfft(x2)
        mic = np.asarray(mic_block, dtype=np.float64)
        y = np.fft.irfft((self.W * self.X).sum(0), 2 * B)[B:]
        # Divergence guard: an echo estimate far louder than the microphone (which holds the
        # echo) means the filter has diverged; clear it and pass the microphone through.
        if float(y @ y) > 4.0 * float(mic @ mic) + 1e-6 * B:
            self.W[:] = 0.0
            self.resets += 1
            y = np.zeros(B)
        e = mic - y
        p0 = np.abs(self.X[0]) ** 2
        self.power = p0 if self.power is None else self.beta * self.power + (1 - self.beta) * p0
        E = np.fft.rfft(np.concatenate([np.zeros(B), e]))
        # The update of all P partitions together is normalised by P times the per-bin power
        # (the step of a block NLMS over the whole filter: stable for mu < 2); a floor
        # relative to the mean power keeps silent bins from blowing up the step.
        norm = self.P * (self.power + self.eps * np.mean(self.power)) + 1e-10
        G = np.conj(self.X) * (E / norm)[None, :]
        g = np.fft.irfft(G, 2 * B, axis=1)
        g[:, B:] = 0.0  # gradient constraint: a linear (not circular) convolution
        self.W += self.mu * np.fft.rfft(g, axis=1)
        return e


def pbfdaf(mic: np.ndarray, ref: np.ndarray, block: int = 256, partitions: int = 8, mu: float = 0.3) -> np.ndarray:
    """Run :class:`PBFDAF` over whole signals; returns the echo-cancelled mic (same length)."""
    mic = np.asarray(mic, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    n = len(mic)
    nblocks = -(-n // block)
    m = np.pad(mic, (0, nblocks * block - n))
    r = np.pad(ref[:n], (0, nblocks * block - min(len(ref), n)))
    f = PBFDAF(block, partitions, mu)
    out = np.concatenate([f.process(m[i * block:(i + 1) * block], r[i * block:(i + 1) * block])
                          for i in range(nblocks)]) if nblocks else np.zeros(0)
    return out[:n].astype(np.float32)


def erle_db(mic: np.ndarray, residual: np.ndarray) -> float:
    """Echo return loss enhancement in dB (mic holding echo only)."""
    p_in = float(np.mean(np.asarray(mic, dtype=np.float64) ** 2))
    p_out = float(np.mean(np.asarray(residual, dtype=np.float64) ** 2))
    return 10.0 * math.log10((p_in + 1e-20) / (p_out + 1e-20))


def fft_macs(n: int) -> float:
    """Real multiply-accumulates of one real FFT of size ``n`` (split-radix estimate:
    about n/2 log2(n) complex butterflies of 2 real MACs... counted as 2 n log2 n / 2)."""
    return n * math.log2(n)


def pbfdaf_macs_per_sample(block: int = 256, partitions: int = 8) -> float:
    """MACs per input sample: 3 FFTs (ref, error, output) + 2P for the constrained gradient,
    P complex products for the echo estimate and P for the gradient (4 real MACs each),
    the per-bin power and the normalisation."""
    nb = block + 1
    n_fft = 2 * block
    per_block = (3 + 2 * partitions) * fft_macs(n_fft) + 2 * partitions * 4 * nb + 3 * nb + 2 * partitions * nb
    return per_block / block
