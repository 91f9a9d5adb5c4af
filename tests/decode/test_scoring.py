"""WER scoring with hand-computed counts."""

import json

import pytest

from sltk.decode.scoring import (EPS, ErrorStats, align, compute_wer, format_group_table, write_confusions,
                                 write_group_table, write_per_utt, write_wer_json)

REFS = {
    "u1": "the cat sat on the mat",     # hyp: 1 substitution (cat -> bat), 1 deletion (the)
    "u2": "turn on the lights",         # hyp: 1 insertion (please)
    "u3": "call anna",                  # hyp missing: 2 deletions
    "u4": "play jazz",                  # hyp empty: 2 deletions
    "u5": "hello",                      # correct
}
HYPS = {
    "u1": "the bat sat on mat",
    "u2": "please turn on the lights",
    "u4": "",
    "u5": "hello",
    "u9": "no reference for this",
}


def test_align_and_ops():
    assert align("a b c d".split(), "a x c e d".split()) == [("a", "a"), ("b", "x"), ("c", "c"),
                                                             (EPS, "e"), ("d", "d")]
    assert align([], []) == []
    assert align([], ["a"]) == [(EPS, "a")]


def test_wer_hand_computed():
    r = compute_wer(REFS, HYPS)
    t = r.total
    # 6 + 4 + 2 + 2 + 1 = 15 reference words; errors: 1 sub, 1 + 2 + 2 del, 1 ins = 7
    assert (t.ref_words, t.subs, t.dels, t.ins, t.errors) == (15, 1, 5, 1, 7)
    assert t.wer == pytest.approx(100 * 7 / 15)
    assert t.wer_line() == "%WER 46.67 [ 7 / 15, 1 ins, 5 del, 1 sub ]"
    assert t.ser_line() == "%SER 80.00 [ 4 / 5 ]"
    assert r.missing_hyps == ["u3"] and r.extra_hyps == ["u9"]
    per = {u.utt: u for u in r.utts}
    assert per["u1"].ops == ["C", "S", "C", "C", "D", "C"]
    assert per["u2"].ops == ["I", "C", "C", "C", "C"]
    assert per["u3"].missing_hyp and per["u3"].ops == ["D", "D"]
    subs, dels, ins = r.confusions()
    assert subs == {("cat", "bat"): 1}
    assert dels == {"the": 1, "call": 1, "anna": 1, "play": 1, "jazz": 1}
    assert ins == {"please": 1}


def test_modes():
    r = compute_wer(REFS, HYPS, mode="present")
    assert r.total.ref_words == 13 and r.total.errors == 5 and len(r.utts) == 4
    with pytest.raises(ValueError, match="no hypothesis"):
        compute_wer(REFS, HYPS, mode="strict")


def test_empty_reference_and_groups():
    s = ErrorStats()
    assert s.wer == 0.0
    s.ins = 2
    assert s.wer == float("inf")
    r = compute_wer(REFS, HYPS)
    groups = r.by_group({"u1": "slt", "u2": "slt", "u3": "awb", "u4": "awb"})
    assert list(groups) == ["<unknown>", "awb", "slt"]
    assert (groups["slt"].ref_words, groups["slt"].errors, groups["slt"].utts) == (10, 3, 2)
    assert groups["awb"].wer == 100.0
    assert groups["<unknown>"].wer == 0.0
    lines = format_group_table(groups, "voice")
    assert lines[0].split() == ["voice", "WER", "#words", "#utts", "#ins", "#del", "#sub"]
    assert lines[3].split() == ["slt", "30.00", "10", "2", "1", "1", "1"]


def test_writers(tmp_path):
    r = compute_wer(REFS, HYPS)
    write_per_utt(tmp_path / "per_utt.txt", r)
    lines = (tmp_path / "per_utt.txt").read_text().splitlines()
    assert lines[0].split() == ["u1", "ref", "the", "cat", "sat", "on", "the", "mat"]
    assert lines[1].split() == ["u1", "hyp", "the", "bat", "sat", "on", EPS, "mat"]
    assert lines[2].split() == ["u1", "op", "C", "S", "C", "C", "D", "C"]
    assert lines[3] == "u1 #csid 4 1 0 1"
    assert "(missing)" in lines[9]  # u3's hyp line
    write_confusions(tmp_path / "confusions.txt", r)
    conf = (tmp_path / "confusions.txt").read_text().splitlines()
    assert "substitution cat bat 1" in conf and "insertion please 1" in conf and "deletion anna 1" in conf
    groups = {"voice": r.by_group({"u1": "slt"})}
    write_group_table(tmp_path / "wer_by_voice.txt", groups["voice"], "voice")
    assert (tmp_path / "wer_by_voice.txt").read_text().splitlines()[2] == "slt\t33.33\t6\t1\t0\t1\t1"
    write_wer_json(tmp_path / "wer.json", r, groups)
    j = json.loads((tmp_path / "wer.json").read_text())
    assert (j["errors"], j["ref_words"], j["ins"], j["del"], j["sub"]) == (7, 15, 1, 5, 1)
    assert j["missing_hyps"] == 1 and j["groups"]["voice"]["slt"]["errors"] == 2
