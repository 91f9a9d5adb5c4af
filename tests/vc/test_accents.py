"""Accents, accent-specific phonemization and the corpus plan."""

import shutil

import pytest

from sltk.utils.errors import UserError
from sltk.vc.accents import ACCENTS, PhoneVocab, check_accent
from sltk.vc.data import DataConfig, VoiceSpec, plan


def test_unknown_accent_is_an_error_listing_the_known_ones():
    with pytest.raises(UserError) as e:
        check_accent("en-mars")
    msg = str(e.value)
    assert "unknown accent 'en-mars'" in msg and all(a in msg for a in ACCENTS)
    with pytest.raises(UserError, match=r"known accents: en-us, en-029\)"):
        check_accent("en-gb-x-rp", ["en-us", "en-029"])
    assert check_accent("en-029") == "en-029"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_accents_phonemize_the_same_units_differently():
    from sltk.vc.accents import phonemize_accent

    us = phonemize_accent("The car park.", "en-us").unit_phones
    sc = phonemize_accent("The car park.", "en-gb-scotland").unit_phones
    assert len(us) == len(sc) == 5   # sil, the, car, park, .
    assert us != sc
    assert "r" in sc[2] and "r" not in us[2]   # rhotic Scottish car


def test_vocab():
    v = PhoneVocab(["a", "b"])
    assert v.ids(["a", "zz", "sil"]) == [v.index["a"], 0, v.index["sil"]]
    assert PhoneVocab.from_list(v.to_list()).to_list() == v.to_list()


def test_plan_is_non_parallel_for_training_and_parallel_for_eval():
    cfg = DataConfig(accents=("en-us", "en-gb-scotland", "en-029"), voices=("m3", "f2:2:1.1"), train_per_voice=3,
                     judge_per_voice=2, eval_sentences=2)
    items = plan(cfg)
    by = {s: [i for i in items if i.set == s] for s in ("train", "judge", "eval")}
    assert len(by["train"]) == 3 * 2 * 3 and len(by["judge"]) == 3 * 2 * 2 and len(by["eval"]) == 2 * 3 * 2
    # train: no sentence in two accents; sets share no sentence
    acc_of = {}
    for i in by["train"]:
        assert acc_of.setdefault(i.text, i.accent) == i.accent
    texts = {s: {i.text for i in v} for s, v in by.items()}
    assert not texts["train"] & texts["eval"] and not texts["judge"] & texts["eval"]
    assert not texts["train"] & texts["judge"]
    # eval: every sentence by every voice in every accent
    assert {(i.sent, i.accent, i.voice.id) for i in by["eval"]} == {
        (s, a, v) for s in {i.sent for i in by["eval"]} for a in cfg.accents for v in ("m3_p0_r100", "f2_p2_r110")}
    assert plan(cfg) == items  # deterministic
    assert VoiceSpec.parse("f4:-1:0.95").id == "f4_pn1_r95"
    with pytest.raises(UserError, match="bad voice"):
        VoiceSpec.parse("m3:x")
    with pytest.raises(UserError, match="unknown accent 'en-xx'"):
        plan(DataConfig(accents=("en-us", "en-xx")))
