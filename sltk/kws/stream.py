"""Streaming detection on long microphone + reference recordings.

:class:`StreamingDetector` takes chunks of any size of both signals, runs the AEC front end
block by block (``aec`` variant), computes only whole feature frames (the rest waits for
the next chunk), and calls the model's causal :meth:`~sltk.kws.models.KWSModel.step`, so
its frame scores equal the offline ones. :class:`EventTracker` turns frame probabilities
into events: an event starts when the probability reaches the threshold, ends after
``min_gap_s`` below it, and reports its peak probability (a running max).
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch

from sltk.kws import aec as aec_mod
from sltk.kws.models import AEC_BLOCK, AEC_MU, AEC_PARTITIONS, OUTPUTS, SR, Features

Event = Tuple[float, float, str, float]  # start s, end s, kind, peak score


class EventTracker:
    """Threshold + hangover + running max over frame probabilities of one output."""

    def __init__(self, kind: str, threshold: float, frame_shift_s: float, frame_len_s: float, min_gap_s: float = 0.5):
        self.kind, self.threshold = kind, threshold
        self.shift, self.flen = frame_shift_s, frame_len_s
        self.gap = max(1, int(round(min_gap_s / frame_shift_s)))
        self.start: Optional[int] = None
        self.last = -1
        self.peak = 0.0

    def _close(self) -> Event:
        ev = (self.start * self.shift, self.last * self.shift + self.flen, self.kind, self.peak)
        self.start, self.peak = None, 0.0
        return ev

    def update(self, first_frame: int, probs: np.ndarray) -> List[Event]:
        out = []
        for i, p in enumerate(probs, first_frame):
            if p >= self.threshold:
                if self.start is None:
                    self.start = i
                    self.peak = 0.0
                self.last = i
                self.peak = max(self.peak, float(p))
            elif self.start is not None and i - self.last >= self.gap:
                out.append(self._close())
        return out

    def flush(self) -> List[Event]:
        return [self._close()] if self.start is not None else []


class StreamingDetector:
    """Chunk-by-chunk scoring of a model (a :class:`~sltk.kws.models.KWSModel`, or any
    object with ``variant``, ``config['num_mel_bins']``, ``streams`` and ``step``)."""

    def __init__(self, model, thresholds=(0.5, 0.5), min_gap_s: float = 0.5):
        self.model = model
        self.feats = Features(model.config["num_mel_bins"])
        o = self.feats.opts
        self.win, self.shift = o.window_size, o.window_shift
        self.streams = model.streams
        self.bufs = [np.zeros(0, np.float32) for _ in range(self.streams)]
        self.aec = aec_mod.PBFDAF(AEC_BLOCK, AEC_PARTITIONS, AEC_MU) if model.variant == "aec" else None
        self.pend_mic = np.zeros(0, np.float32)
        self.pend_ref = np.zeros(0, np.float32)
        self.state = None
        self.frame = 0
        self.trackers = [EventTracker(k, t, self.shift / SR, self.win / SR, min_gap_s)
                         for k, t in zip(OUTPUTS, thresholds)]

    def _frames(self) -> Optional[torch.Tensor]:
        n_avail = len(self.bufs[0])
        if n_avail < self.win:
            return None
        n = 1 + (n_avail - self.win) // self.shift
        end = (n - 1) * self.shift + self.win
        x = torch.stack([self.feats(b[:end]) for b in self.bufs])
        self.bufs = [b[n * self.shift:] for b in self.bufs]
        return x

    @torch.no_grad()
    def accept(self, mic: np.ndarray, ref: Optional[np.ndarray] = None) -> Tuple[np.ndarray, List[Event]]:
        """Feed a chunk; returns (probabilities (new frames, 2), events that ended)."""
        mic = np.asarray(mic, np.float32)
        ref = np.zeros_like(mic) if ref is None else np.asarray(ref, np.float32)
        if len(ref) != len(mic):
            raise ValueError("mic and reference chunks must have the same length")
        if self.aec is not None:
            self.pend_mic = np.concatenate([self.pend_mic, mic])
            self.pend_ref = np.concatenate([self.pend_ref, ref])
            nb = len(self.pend_mic) // AEC_BLOCK
            outs = [self.aec.process(self.pend_mic[i * AEC_BLOCK:(i + 1) * AEC_BLOCK],
                                     self.pend_ref[i * AEC_BLOCK:(i + 1) * AEC_BLOCK]) for i in range(nb)]
            self.pend_mic, self.pend_ref = self.pend_mic[nb * AEC_BLOCK:], self.pend_ref[nb * AEC_BLOCK:]
            mic = np.concatenate(outs).astype(np.float32) if outs else np.zeros(0, np.float32)
            ref = np.zeros(0, np.float32)
        new = [mic, ref][: self.streams]
        self.bufs = [np.concatenate([b, x]) for b, x in zip(self.bufs, new)]
        x = self._frames()
        if x is None:
            return np.zeros((0, len(OUTPUTS))), []
        logits, self.state = self.model.step(x[None], self.state)
        probs = torch.sigmoid(logits[0]).numpy()
        events = []
        for j, tr in enumerate(self.trackers):
            events += tr.update(self.frame, probs[:, j])
        self.frame += len(probs)
        return probs, events

    def flush(self) -> List[Event]:
        return [e for tr in self.trackers for e in tr.flush()]


def detect(model, mic: np.ndarray, ref: Optional[np.ndarray], chunk_s: float = 0.1,
           thresholds=(0.5, 0.5), min_gap_s: float = 0.5) -> Iterator[Event]:
    """Stream a recording through a :class:`StreamingDetector` in chunks of ``chunk_s``;
    yields events as soon as they end (sorted by start within each chunk)."""
    det = StreamingDetector(model, thresholds, min_gap_s)
    step = max(1, int(chunk_s * SR))
    ref = np.zeros_like(mic) if ref is None else ref
    for i in range(0, len(mic), step):
        _, evs = det.accept(mic[i: i + step], ref[i: i + step])
        yield from sorted(evs)
    yield from sorted(det.flush())
