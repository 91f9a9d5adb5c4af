"""remap, warp, attend and the phoneme-to-phoneme model on hand-made cases."""

import pytest
import torch

from sltk.vc.convert import (DurationModel, PhoneMapper, attend, remap, split_frames, stretch, unit_attention,
                             unit_frames)

SRC = [["sil"], ["k", "A@"], ["p", "A@", "k"], ["."]]
SRC_D = [10, 3, 9, 2, 8, 4, 12]


def test_split_frames_keeps_the_total_and_the_proportions():
    assert split_frames(10, [1, 1]) == [5, 5]
    assert split_frames(10, [1, 3]) == [3, 7]
    assert sum(split_frames(17, [0.2, 0.5, 0.3])) == 17
    assert split_frames(2, [1, 1, 1]) == [1, 1, 1]  # at least one frame each


def test_remap_with_identical_accents_is_the_identity():
    dur = DurationModel().fit([("en-us", ["k", "A@", "p"], [3, 9, 4])] * 3)
    assert remap(SRC, SRC_D, [list(u) for u in SRC], dur, "en-us") == SRC_D
    assert PhoneMapper().map_units(SRC, "en-us", "en-us") == SRC


def test_remap_keeps_each_unit_frames_and_shares_them():
    tgt = [["sil"], ["k", "A@", "r"], ["p", "A@", "r", "k"], ["."]]
    dur = DurationModel().fit([("x", ["k", "A@", "r", "p"], [2, 8, 4, 2])] * 2)
    d = remap(SRC, SRC_D, tgt, dur, "x")
    assert unit_frames(tgt, d) == unit_frames(SRC, SRC_D) == [10, 12, 14, 12]
    # 12 frames over k A@ r: one each, the other 9 in proportion 2:8:4 = 1.29, 5.14, 2.57 -> 1, 5, 3
    assert d[:4] == [10, 2, 6, 4]
    with pytest.raises(ValueError):
        remap(SRC, SRC_D, tgt[:2], dur, "x")


def test_duration_model_warps_to_the_target_accent_at_the_source_tempo():
    dm = DurationModel().fit([("a", ["k", "A@"], [4, 10]), ("a", ["k", "A@"], [4, 10]),
                              ("b", ["k", "A@", "r"], [4, 6, 4]), ("b", ["k", "A@", "r"], [4, 6, 4])])
    src = [["sil"], ["k", "A@"], ["."]]
    # the source is twice as slow as accent a's typical durations
    out = dm.warp("a", src, [5, 8, 20, 6], "b", [["sil"], ["k", "A@", "r"], ["."]])
    assert out == [5, 8, 12, 8, 6]  # pauses kept, target durations x2
    assert dm.tempo("a", ["k", "A@"], [8, 20]) == pytest.approx(2.0)


def test_relative_warp_keeps_the_source_rhythm_and_applies_the_accent_ratio():
    dm = DurationModel().fit([("a", ["k", "A@"], [4, 10]), ("a", ["k", "A@"], [4, 10]),
                              ("b", ["k", "A@", "r"], [4, 6, 4]), ("b", ["k", "A@", "r"], [4, 6, 4]),
                              ("b", ["m", "o"], [3, 5]), ("b", ["m", "o"], [3, 5]),
                              ("a", ["m", "o"], [3, 5]), ("a", ["m", "o"], [3, 5])])
    src = [["sil"], ["k", "A@"], ["m", "o"], ["."]]
    tgt = [["sil"], ["k", "A@", "r"], ["m", "o"], ["."]]
    out = dm.warp_relative("a", src, [5, 8, 20, 6, 10, 7], "b", tgt)
    # pauses kept; "k A@" (typically 14 frames in a) -> "k A@ r" (14 in b): the unit keeps its 28
    # frames, shared 4:6:4 -> 8, 12, 8; "m o" is the same in both accents: its 6, 10 unchanged
    assert out == [5, 8, 12, 8, 6, 10, 7]
    # b's "k A@ r" twice as long as a's "k A@": the unit doubles
    dm.mean["b"].update({"k": 8.0, "A@": 12.0, "r": 8.0})
    assert dm.warp_relative("a", src, [5, 8, 20, 6, 10, 7], "b", tgt)[1:4] == [16, 24, 16]
    # between the same accent and units: the identity
    assert dm.warp_relative("a", src, [5, 8, 20, 6, 10, 7], "a", src) == [5, 8, 20, 6, 10, 7]


def test_phone_mapper_learns_rhotic_r():
    pairs = [([["k", "A@"], ["p", "A@", "k"]], [["k", "A@", "r"], ["p", "A@", "r", "k"]]),
             ([["D", "e@"]], [["D", "e@", "r"]]),
             ([["k", "A@", "t"]], [["k", "A@", "r", "t"]])]
    pm = PhoneMapper().fit({("us", "scot"): pairs})
    assert pm.map_units([["k", "A@"], ["b", "A@", "k"]], "us", "scot") == [["k", "A@", "r"], ["b", "A@", "r", "k"]]
    assert pm.map_units([["z", "o"]], "us", "scot") == [["z", "o"]]  # unseen phones stay
    assert PhoneMapper.from_dict(pm.to_dict()).map_units([["D", "e@"]], "us", "scot") == [["D", "e@", "r"]]


def test_attention_with_equal_lengths_and_a_diagonal_alignment_returns_the_source():
    z = torch.randn(12, 5)
    assert torch.equal(attend(z, torch.eye(12)), z)
    frames = [3, 4, 5]
    w = unit_attention(frames, frames, sigma=0.0)
    assert torch.equal(w, torch.eye(12))
    assert torch.equal(attend(z, w), z)
    w = unit_attention(frames, frames, sigma=0.3)
    assert torch.equal(w.argmax(1), torch.arange(12)) and torch.allclose(w.sum(1), torch.ones(12))
    assert torch.allclose(attend(z, w), z, atol=0.05 * float(z.abs().max()))


def test_attention_maps_units_to_units_when_lengths_differ():
    # unit 0: 2 source frames -> 4 target frames (each source frame twice); unit 1: 3 -> 1 (its middle)
    w = unit_attention([2, 3], [4, 1], sigma=0.0)
    assert w.shape == (5, 5)
    assert w.argmax(1).tolist() == [0, 0, 1, 1, 3]
    z = torch.arange(5, dtype=torch.float32)[:, None]
    assert attend(z, w)[:, 0].tolist() == [0, 0, 1, 1, 3]
    # soft: every row sums to one and peaks where the hard alignment points
    ws = unit_attention([2, 3], [4, 1], sigma=0.3)
    assert torch.allclose(ws.sum(1), torch.ones(5)) and ws.argmax(1).tolist() == [0, 0, 1, 1, 3]
    with pytest.raises(ValueError):
        attend(z, torch.ones(3, 4))


def test_stretch():
    z = torch.tensor([[0.0], [2.0]])
    assert stretch(z, 3)[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert torch.equal(stretch(z, 2), z)
