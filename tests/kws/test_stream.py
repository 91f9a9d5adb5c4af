"""Streaming detection finds two keywords at known times in a long recording."""

import numpy as np
import torch

from sltk.kws.stream import StreamingDetector, detect

SR = 16000


class ToneModel(torch.nn.Module):
    """A stand-in detector that fires on a 1 kHz tone: its keyword logit is the mean over
    the last 5 frames (a causal window kept in its streaming state) of the log-mel energy
    near 1 kHz minus the mean of the other bins."""

    variant = "mic"
    streams = 1
    config = {"num_mel_bins": 40}

    def __init__(self):
        super().__init__()
        self.bins = [12, 13, 14]  # mel bins around 1 kHz for 40 bins up to 8 kHz

    def step(self, x, state):
        f = x[0, 0]  # (T, F)
        others = [i for i in range(f.shape[1]) if i not in self.bins]
        d = f[:, self.bins].mean(1) - f[:, others].mean(1)
        hist = d if state is None else torch.cat([state, d])
        T = len(d)
        win = torch.stack([hist[max(0, len(hist) - T + t - 4): len(hist) - T + t + 1].mean() for t in range(T)])
        logits = torch.stack([win - 4.0, torch.full_like(win, -10.0)], 1)[None]
        return logits, hist[-4:]


def _recording():
    rng = np.random.default_rng(0)
    n = 10 * SR
    mic = 0.01 * rng.standard_normal(n)
    t = np.arange(int(0.6 * SR)) / SR
    for start in (2.0, 6.5):
        i = int(start * SR)
        mic[i: i + len(t)] += 0.3 * np.sin(2 * np.pi * 1000 * t)
    ref = 0.2 * rng.standard_normal(n)  # ignored by the mic model
    return mic.astype(np.float32), ref.astype(np.float32)


def test_detect_finds_both_keywords():
    mic, ref = _recording()
    for chunk_s in (0.037, 0.25):
        events = list(detect(ToneModel(), mic, ref, chunk_s=chunk_s, thresholds=(0.5, 0.5), min_gap_s=0.3))
        kws = [e for e in events if e[2] == "kw"]
        assert len(kws) == 2, events
        for (start, end, kind, score), true_start in zip(kws, (2.0, 6.5)):
            assert abs(start - true_start) < 0.1 and abs(end - (true_start + 0.6)) < 0.15
            assert score > 0.9
        assert not [e for e in events if e[2] == "dd"]


def test_streaming_frames_match_whole_signal():
    mic, ref = _recording()
    a = StreamingDetector(ToneModel())
    p1 = np.concatenate([a.accept(mic[i:i + 1234], ref[i:i + 1234])[0] for i in range(0, len(mic), 1234)])
    b = StreamingDetector(ToneModel())
    p2 = b.accept(mic, ref)[0]
    assert p1.shape == p2.shape == (1 + (len(mic) - 400) // 160, 2)
    np.testing.assert_allclose(p1, p2, atol=1e-5)
