"""Kaldi-compatible acoustic features: log-mel filterbank (fbank) and MFCC, in plain torch.

The computation follows Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats`` (and
``torchaudio.compliance.kaldi``, whose option names and defaults :class:`FeatureOptions`
mirrors), frame by frame:

1. framing: ``frame_length`` ms windows every ``frame_shift`` ms. With ``snip_edges`` only
   whole windows inside the signal (``1 + (N - L) // S`` frames); without it
   ``(N + S // 2) // S`` frames, the signal reflected at both ends (the lhotse convention,
   so that the number of frames is the duration divided by the shift, rounded);
2. ``dither`` (Gaussian noise of that standard deviation), DC removal (the frame mean),
   the raw log energy (for ``use_energy`` with ``raw_energy``), pre-emphasis
   ``x[i] -= c * x[i-1]`` (``x[0] -= c * x[0]``), the window (``povey``: a Hann window to
   the power 0.85), zero-padding to a power of two;
3. the power spectrum of a real FFT, triangular mel filters (Kaldi's mel scale
   ``1127 ln(1 + f / 700)``, ``num_mel_bins`` filters between ``low_freq`` and ``high_freq``,
   ``high_freq <= 0`` meaning that much below Nyquist), the log floored at float32 epsilon;
4. MFCC: a DCT-II (orthonormal) of the log mel energies, the first ``num_ceps`` kept,
   sinusoidal liftering ``1 + Q/2 sin(pi i / Q)``; C0 replaced by the log energy with
   ``use_energy``.

All frames are processed at once (strided views, one batched FFT, one matrix product), and
the window, mel banks and DCT are built once per option set and cached, so a computer costs
a few milliseconds per minute of audio. Nothing here needs torchaudio.

Use :class:`FeatureComputer` (or :func:`fbank` / :func:`mfcc`, drop-in replacements for
``torchaudio.compliance.kaldi.fbank`` / ``.mfcc``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman")
FEATURE_TYPES = ("fbank", "mfcc")

# Kaldi floors logarithms at the float epsilon (std::numeric_limits<float>::epsilon()).
_EPS = float(torch.finfo(torch.float32).eps)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FeatureOptions:
    """Feature options. Names (and, except where noted, defaults) are those of
    ``torchaudio.compliance.kaldi.fbank``/``mfcc``; times are in milliseconds."""

    feature_type: str = _opt("fbank", "fbank (log-mel filterbank) or mfcc (cepstra)")
    sample_frequency: float = _opt(16000.0, "expected sample rate of the audio (Hz)")
    frame_length: float = _opt(25.0, "frame length (ms)")
    frame_shift: float = _opt(10.0, "frame shift (ms)")
    num_mel_bins: int = _opt(80, "number of triangular mel filters (torchaudio's default is 23)")
    num_ceps: int = _opt(13, "MFCC: number of cepstra kept")
    cepstral_lifter: float = _opt(22.0, "MFCC: liftering coefficient (0: none)")
    low_freq: float = _opt(20.0, "low cutoff of the mel filters (Hz)")
    high_freq: float = _opt(0.0, "high cutoff of the mel filters (Hz); <= 0 means Nyquist + this")
    dither: float = _opt(0.0, "standard deviation of the Gaussian dither (0: none, reproducible)")
    preemphasis_coefficient: float = _opt(0.97, "pre-emphasis coefficient")
    remove_dc_offset: bool = _opt(True, "subtract each frame's mean")
    round_to_power_of_two: bool = _opt(True, "zero-pad frames to a power of two before the FFT")
    window_type: str = _opt("povey", "window: " + ", ".join(WINDOW_TYPES))
    blackman_coeff: float = _opt(0.42, "coefficient of the blackman window")
    snip_edges: bool = _opt(False, "only frames that fit in the signal (Kaldi's default is true; "
                                   "false gives duration/shift frames as lhotse expects)")
    energy_floor: float = _opt(1.0, "floor of the log energy (use_energy)")
    raw_energy: bool = _opt(True, "log energy before pre-emphasis and windowing")
    use_energy: bool = _opt(False, "add the log energy (fbank: an extra first column; mfcc: as C0)")
    use_log_fbank: bool = _opt(True, "Fbank: log of the mel energies")
    use_power: bool = _opt(True, "power spectrum (else magnitude)")
    htk_compat: bool = _opt(False, "energy as the last column (HTK order)")
    subtract_mean: bool = _opt(False, "subtract the per-utterance mean of each feature")
    vtln_warp: float = _opt(1.0, "VTLN warp factor (1: none)")
    vtln_low: float = _opt(100.0, "VTLN lower cutoff (Hz)")
    vtln_high: float = _opt(-500.0, "VTLN upper cutoff (Hz; negative: below Nyquist)")
    min_duration: float = _opt(0.0, "signals shorter than this (s) give no frames")
    waveform_scale: float = _opt(32768.0, "multiply samples in [-1, 1] by this first: 32768 "
                                          "matches Kaldi, which reads 16-bit integers; 1 matches lhotse")

    def __post_init__(self):
        if self.feature_type not in FEATURE_TYPES:
            raise ValueError(f"feature_type must be one of {', '.join(FEATURE_TYPES)}, got {self.feature_type!r}")
        if self.window_type not in WINDOW_TYPES:
            raise ValueError(f"window_type must be one of {', '.join(WINDOW_TYPES)}, got {self.window_type!r}")
        if self.sample_frequency <= 0 or self.frame_length <= 0 or self.frame_shift <= 0:
            raise ValueError("sample_frequency, frame_length and frame_shift must be positive")
        if self.window_size < 2 or self.window_shift < 1:
            raise ValueError(f"a frame of {self.frame_length} ms at {self.sample_frequency} Hz is too short")
        if self.num_mel_bins < 3:
            raise ValueError("num_mel_bins must be at least 3")
        if self.feature_type == "mfcc" and not (1 <= self.num_ceps <= self.num_mel_bins):
            raise ValueError(f"num_ceps must be in [1, num_mel_bins={self.num_mel_bins}], got {self.num_ceps}")

    # ------------------------------------------------------------------ derived sizes
    @property
    def window_size(self) -> int:
        """Samples per frame (the same float expression Kaldi and torchaudio truncate)."""
        return int(self.sample_frequency * self.frame_length * 0.001)

    @property
    def window_shift(self) -> int:
        return int(self.sample_frequency * self.frame_shift * 0.001)

    @property
    def padded_window_size(self) -> int:
        n = self.window_size
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    @property
    def dim(self) -> int:
        """Columns of the feature matrix."""
        if self.feature_type == "mfcc":
            return self.num_ceps
        return self.num_mel_bins + int(self.use_energy)

    @property
    def frame_shift_s(self) -> float:
        return self.frame_shift / 1000.0

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.min_duration * self.sample_frequency:
            return 0
        L, S = self.window_size, self.window_shift
        if self.snip_edges:
            return 0 if num_samples < L else 1 + (num_samples - L) // S
        return (num_samples + S // 2) // S

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FeatureOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown feature option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def kaldi_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of ``torchaudio.compliance.kaldi.fbank``/``mfcc`` that
        compute the same features (given a waveform already multiplied by waveform_scale)."""
        d = self.to_dict()
        for k in ("feature_type", "waveform_scale"):
            d.pop(k)
        if self.feature_type == "fbank":
            d.pop("num_ceps")
            d.pop("cepstral_lifter")
        else:
            d.pop("use_log_fbank")
            d.pop("use_power")
        return d


# ---------------------------------------------------------------------- building blocks
def mel_scale(freq: Union[float, torch.Tensor]):
    """Kaldi's mel scale, 1127 ln(1 + f / 700), of a float or a tensor (in its dtype)."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def inverse_mel_scale(mel: Union[float, torch.Tensor]):
    if isinstance(mel, torch.Tensor):
        return 700.0 * ((mel / 1127.0).exp() - 1.0)
    return 700.0 * (math.exp(mel / 1127.0) - 1.0)


def vtln_warp_freq(vtln_low: float, vtln_high: float, low_freq: float, high_freq: float,
                   warp: float, freq: torch.Tensor) -> torch.Tensor:
    """Kaldi's piecewise-linear VTLN frequency warping F(f): F(low)=low, F(high)=high,
    F(f) = f / warp between two inflection points chosen so that no bin is ever empty."""
    lo = vtln_low * max(1.0, warp)   # lower inflection point
    hi = vtln_high * min(1.0, warp)  # upper inflection point
    scale = 1.0 / warp
    slope_left = (scale * lo - low_freq) / (lo - low_freq)
    slope_right = (high_freq - scale * hi) / (high_freq - hi)
    out = torch.where(freq < lo, low_freq + slope_left * (freq - low_freq),
                      torch.where(freq < hi, scale * freq, high_freq + slope_right * (freq - high_freq)))
    return torch.where((freq < low_freq) | (freq > high_freq), freq, out)


def mel_banks(num_bins: int, padded_window_size: int, sample_frequency: float, low_freq: float,
              high_freq: float, vtln_low: float = 100.0, vtln_high: float = -500.0,
              vtln_warp: float = 1.0) -> torch.Tensor:
    """Triangular mel filters as Kaldi's MelBanks: (num_bins, padded_window_size // 2 + 1),
    the last (Nyquist) column zero as in Kaldi.

    Computed in float32 on purpose: Kaldi (and torchaudio) do, and the narrow low-frequency
    filters of an 80-bin bank span one or two FFT bins, so their weights, and the log
    energies, visibly depend on that rounding (~1e-4)."""
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"bad low_freq {low_freq} / high_freq {high_freq} for Nyquist {nyquist}")
    if vtln_high < 0.0:
        vtln_high += nyquist
    if vtln_warp != 1.0 and not (low_freq < vtln_low < high_freq and 0.0 < vtln_high < high_freq
                                 and vtln_low < vtln_high):
        raise ValueError(f"bad vtln_low {vtln_low} / vtln_high {vtln_high} for low_freq {low_freq}, "
                         f"high_freq {high_freq}")
    f32 = torch.float32
    num_fft_bins = padded_window_size // 2
    mel_lo, mel_hi = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_hi - mel_lo) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=f32)[:, None]
    left, center, right = (mel_lo + (b + k) * delta for k in (0.0, 1.0, 2.0))
    if vtln_warp != 1.0:
        def warp(m):
            return mel_scale(vtln_warp_freq(vtln_low, vtln_high, low_freq, high_freq, vtln_warp,
                                            inverse_mel_scale(m)))
        left, center, right = warp(left), warp(center), warp(right)
    mel = mel_scale(sample_frequency / padded_window_size * torch.arange(num_fft_bins, dtype=f32))[None, :]
    # Kaldi: a bin's weight is non-zero strictly between the left and right edges.
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = torch.where((mel > left) & (mel < right), torch.where(mel <= center, rising, falling),
                          torch.zeros(()))
    return torch.cat([weights, torch.zeros((num_bins, 1))], dim=1)


def window_function(window_type: str, size: int, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi's analysis windows (symmetric: n / (size - 1))."""
    n = np.arange(size, dtype=np.float64)
    a = 2.0 * math.pi / (size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * n)
    if window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * n)) ** 0.85
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    if window_type == "rectangular":
        return np.ones(size)
    if window_type == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * n) + (0.5 - blackman_coeff) * np.cos(2 * a * n)
    raise ValueError(f"unknown window type {window_type!r}")


def dct_matrix(num_ceps: int, num_mel_bins: int) -> torch.Tensor:
    """Orthonormal DCT-II as Kaldi's ComputeDctMatrix, transposed: (num_mel_bins, num_ceps).
    float32 arithmetic, as Kaldi's (the cosines of large arguments round differently)."""
    n = torch.arange(num_mel_bins, dtype=torch.float32)[:, None]
    k = torch.arange(num_ceps, dtype=torch.float32)[None, :]
    m = torch.cos(math.pi / num_mel_bins * (n + 0.5) * k) * math.sqrt(2.0 / num_mel_bins)
    m[:, 0] = math.sqrt(1.0 / num_mel_bins)
    return m


def lifter_coeffs(num_ceps: int, cepstral_lifter: float) -> torch.Tensor:
    i = torch.arange(num_ceps, dtype=torch.float32)
    return 1.0 + 0.5 * cepstral_lifter * torch.sin(math.pi * i / cepstral_lifter)


def frame_signal(x: torch.Tensor, size: int, shift: int, snip_edges: bool) -> torch.Tensor:
    """(num_frames, size) view (or copy, when padding) of the 1-D signal ``x``."""
    n = x.numel()
    if snip_edges:
        num = 0 if n < size else 1 + (n - size) // shift
    else:
        num = (n + shift // 2) // shift
        if num > 0:
            # Frame f starts at f * shift - (size - shift) // 2; samples outside [0, n) are
            # reflected as Kaldi does (index -1 -> 0, -2 -> 1, n -> n - 1, ...).
            left = (size - shift) // 2
            right = max(0, (num - 1) * shift + size - left - n)
            if left <= n and right <= n:
                x = torch.cat([x[:left].flip(0), x, x[n - right:].flip(0)])
            else:  # a signal shorter than the padding: reflect back and forth
                idx = torch.remainder(torch.arange(-left, n + right), 2 * n)
                x = x[torch.where(idx >= n, 2 * n - 1 - idx, idx)]
    if num <= 0:
        return x.new_zeros((0, size))
    return x.as_strided((num, size), (shift * x.stride(0), x.stride(0)))


# ---------------------------------------------------------------------- the computer
class FeatureComputer:
    """Computes one kind of features for many signals; window, filters and DCT are built once.

    >>> comp = FeatureComputer(FeatureOptions(num_mel_bins=80))
    >>> feats = comp(samples)        # samples: 1-D float array/tensor in [-1, 1]
    """

    def __init__(self, opts: Optional[FeatureOptions] = None, dtype: torch.dtype = torch.float32):
        self.opts = opts = opts or FeatureOptions()
        self.dtype = dtype
        self.window = torch.from_numpy(window_function(opts.window_type, opts.window_size,
                                                       opts.blackman_coeff)).to(dtype)
        banks = mel_banks(opts.num_mel_bins, opts.padded_window_size, opts.sample_frequency,
                          opts.low_freq, opts.high_freq, opts.vtln_low, opts.vtln_high, opts.vtln_warp)
        self.banks_t = banks.t().contiguous().to(dtype)  # (fft bins, mel bins)
        # Each filter covers a few FFT bins: multiply by blocks of 8 filters, each restricted
        # to the FFT bins its filters cover (about 1/7 of the work of the dense product).
        self._blocks = []
        for b0 in range(0, opts.num_mel_bins, 8):
            cols = self.banks_t[:, b0:b0 + 8]
            rows = (cols != 0).any(1).nonzero().flatten()
            if len(rows):
                s, e = int(rows[0]), int(rows[-1]) + 1
                self._blocks.append((s, e, b0, b0 + cols.shape[1], cols[s:e].contiguous()))
        self._dense_blocks = len(self._blocks) == (opts.num_mel_bins + 7) // 8
        if opts.feature_type == "mfcc":
            dct = dct_matrix(opts.num_ceps, opts.num_mel_bins)
            if opts.cepstral_lifter != 0.0:
                dct = dct * lifter_coeffs(opts.num_ceps, opts.cepstral_lifter)[None, :]
            self.dct = dct.to(dtype)
        self._log_energy_floor = math.log(opts.energy_floor) if opts.energy_floor > 0 else None

    @property
    def dim(self) -> int:
        return self.opts.dim

    def _log_energy(self, frames: torch.Tensor) -> torch.Tensor:
        e = frames.pow(2).sum(1).clamp_min(_EPS).log()
        if self._log_energy_floor is not None:
            e = e.clamp_min(self._log_energy_floor)
        return e

    def __call__(self, samples: Union[np.ndarray, torch.Tensor], scale: Optional[float] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Features of a 1-D signal (or (1, N)), multiplied by ``scale`` first (default:
        ``opts.waveform_scale``). Returns a (num_frames, dim) tensor (num_frames may be 0)."""
        o = self.opts
        x = torch.as_tensor(samples)
        if x.dim() == 2:
            if x.shape[0] != 1:
                raise ValueError(f"expected one channel, got a {tuple(x.shape)} signal")
            x = x[0]
        if x.dim() != 1:
            raise ValueError(f"expected a 1-D signal, got shape {tuple(x.shape)}")
        x = x.to(self.dtype)
        scale = o.waveform_scale if scale is None else scale
        if scale != 1.0:
            x = x * scale
        if x.numel() < o.min_duration * o.sample_frequency:
            return x.new_zeros((0, self.dim))
        frames = frame_signal(x, o.window_size, o.window_shift, o.snip_edges)
        if frames.shape[0] == 0:
            return x.new_zeros((0, self.dim))
        if o.dither != 0.0:
            frames = frames + o.dither * torch.randn(frames.shape, generator=generator, dtype=frames.dtype)
        num, L = frames.shape
        # DC removal, pre-emphasis and the window, written straight into the zero-padded FFT
        # buffer. Pre-emphasis is linear, so pre-emphasising the raw frame and then
        # subtracting (1 - c) * mean equals pre-emphasising the DC-free frame.
        buf = torch.zeros((num, o.padded_window_size), dtype=frames.dtype)
        body = buf[:, :L]
        c = o.preemphasis_coefficient
        if c != 0.0:
            torch.sub(frames[:, 1:], frames[:, :-1], alpha=c, out=body[:, 1:])
            torch.mul(frames[:, 0], 1.0 - c, out=body[:, 0])
        else:
            body.copy_(frames)
        energy = None
        if o.remove_dc_offset:
            mean = frames.mean(1, keepdim=True)
            body.sub_(mean * (1.0 - c))
            if o.use_energy and o.raw_energy:
                energy = self._log_energy(frames - mean)
        elif o.use_energy and o.raw_energy:
            energy = self._log_energy(frames)
        body.mul_(self.window)
        if o.use_energy and not o.raw_energy:
            energy = self._log_energy(body)
        spec = torch.fft.rfft(buf).abs()
        if o.use_power:
            spec = spec.pow_(2)
        mel = (torch.empty if self._dense_blocks else torch.zeros)((num, o.num_mel_bins), dtype=spec.dtype)
        for s, e, b0, b1, w in self._blocks:
            torch.mm(spec[:, s:e], w, out=mel[:, b0:b1])
        if o.feature_type == "mfcc":
            feats = mel.clamp_min(_EPS).log().matmul(self.dct)
            if o.use_energy:
                feats[:, 0] = energy
            if o.htk_compat:  # C0 (or energy) last; C0 scaled by sqrt(2) as HTK does
                c0 = feats[:, :1] if o.use_energy else feats[:, :1] * math.sqrt(2.0)
                feats = torch.cat([feats[:, 1:], c0], dim=1)
        else:
            feats = mel.clamp_min(_EPS).log() if o.use_log_fbank else mel
            if o.use_energy:
                e = energy.unsqueeze(1)
                feats = torch.cat([feats, e] if o.htk_compat else [e, feats], dim=1)
        if o.subtract_mean:
            feats = feats - feats.mean(0, keepdim=True)
        return feats

    def numpy(self, samples, scale: Optional[float] = None) -> np.ndarray:
        """As ``__call__`` but returns a float32 numpy array."""
        return self(samples, scale).numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=16)
def _cached_computer(opts: FeatureOptions) -> FeatureComputer:
    return FeatureComputer(opts)


def _compute(feature_type: str, waveform: torch.Tensor, channel: int, kwargs: Dict[str, Any]) -> torch.Tensor:
    if waveform.dim() == 2:
        waveform = waveform[max(channel, 0)]
    opts = FeatureOptions(feature_type=feature_type, waveform_scale=1.0, **kwargs)
    return _cached_computer(opts)(waveform, scale=1.0)


def fbank(waveform: torch.Tensor, channel: int = -1, num_mel_bins: int = 23, snip_edges: bool = True,
          **kwargs) -> torch.Tensor:
    """Drop-in for ``torchaudio.compliance.kaldi.fbank`` (same options and defaults;
    ``waveform`` is (channels, samples) or (samples,), used as given)."""
    return _compute("fbank", waveform, channel, dict(num_mel_bins=num_mel_bins, snip_edges=snip_edges, **kwargs))


def mfcc(waveform: torch.Tensor, channel: int = -1, num_mel_bins: int = 23, snip_edges: bool = True,
         **kwargs) -> torch.Tensor:
    """Drop-in for ``torchaudio.compliance.kaldi.mfcc`` (same options and defaults)."""
    return _compute("mfcc", waveform, channel, dict(num_mel_bins=num_mel_bins, snip_edges=snip_edges, **kwargs))
