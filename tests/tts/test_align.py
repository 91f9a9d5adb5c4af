"""Monotonic alignment search and the flat-start Gaussian aligner."""

import numpy as np
import pytest
import torch

from sltk.tts.align import GaussianAligner, durations_to_frames, mas, uniform_durations


def test_mas_finds_the_best_monotonic_path():
    # token 0 likes frames 0-1, token 1 frame 2, token 2 frames 3-6
    lp = np.full((3, 7), -10.0)
    lp[0, :2] = 0
    lp[1, 2] = 0
    lp[2, 3:] = 0
    assert mas(lp).tolist() == [2, 1, 4]
    # as many frames as tokens: one frame each
    assert mas(np.random.default_rng(0).normal(size=(5, 5))).tolist() == [1] * 5
    with pytest.raises(ValueError, match="fewer frames"):
        mas(np.zeros((4, 3)))


def test_mas_durations_sum_to_frames_on_random_scores():
    rng = np.random.default_rng(1)
    for n, t in ((1, 9), (4, 4), (7, 50), (20, 31)):
        d = mas(rng.normal(size=(n, t)))
        assert d.sum() == t and (d >= 1).all() and len(d) == n


def test_uniform_durations_and_frame_index():
    assert uniform_durations(3, 10).tolist() == [3, 4, 3]
    assert durations_to_frames(torch.tensor([2, 1, 3])).tolist() == [0, 0, 1, 2, 2, 2]


def test_gaussian_aligner_recovers_segments():
    """Three 'phonemes' with distinct spectra in varying lengths: after flat-start training the
    aligner's durations sum to the frame count and match the true segmentation."""
    rng = np.random.default_rng(0)
    pat = {p: rng.normal(0, 3, 80) for p in ("a", "b", "sil")}
    mels, seqs, truth = [], [], []
    for i in range(12):
        seq = ["sil", "a", "b", "a", "."] if i % 2 else ["sil", "b", "a", "."]
        dur = rng.integers(3, 12, size=len(seq))
        rows = np.concatenate([np.repeat(pat["sil" if p == "." else p][None], d, 0) for p, d in zip(seq, dur)])
        mels.append(rows + rng.normal(0, 0.3, rows.shape))
        seqs.append(seq)
        truth.append(dur)
    al = GaussianAligner(num_mels=80, num_ceps=20)
    hist = al.train(mels, seqs, iterations=4)
    assert hist[-1] >= hist[0]
    for m, s, d in zip(mels, seqs, truth):
        got = al.align(m, s)
        assert got.sum() == len(m)
        assert np.abs(got - d).max() <= 1
    back = GaussianAligner.from_dict(al.to_dict())
    assert back.align(mels[0], seqs[0]).tolist() == al.align(mels[0], seqs[0]).tolist()
