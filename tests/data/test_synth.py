"""Synthetic corpora: text generation, acoustics, and a tiny corpus made twice."""

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sltk.data.kaldi import DataDir
from sltk.data.synth import acoustics
from sltk.data.synth.corpus import SETS, CorpusConfig, make_corpus, plan_corpus, read_word_list
from sltk.data.synth.text import Lexicon, TextGenerator, invent_words
from sltk.data.synth.voices import BACKENDS, Speaker, Voice
from sltk.data.text_norm import normalize_text
from sltk.utils.errors import UserError

if not BACKENDS["espeak"].available():
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

HOLDOUT = ["Zorblatt", "Quenmire Falls"]


@pytest.fixture(scope="module")
def lexicon():
    return Lexicon.load()


def _cfg(**kw):
    held = "festival" if BACKENDS["festival"].available() else "flite"
    synths = ["espeak"] + (["flite"] if held != "flite" and BACKENDS["flite"].available() else [])
    base = dict(size="tiny", num_utts=16, seed=7, synths=synths, heldout_synth=held,
                holdout_words=list(HOLDOUT), holdout_sets=["test", "test_heldout_synth"], holdout_rate=1.0,
                rare_rate=0.5, num_rare_words=5)
    if not BACKENDS[held].available():
        base["heldout_synth"] = None
    base.update(kw)
    return CorpusConfig(**base)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, lexicon):
    root = tmp_path_factory.mktemp("synth")
    a = make_corpus(_cfg(), root / "a", nj=2, lexicon=lexicon)
    b = make_corpus(_cfg(), root / "b", nj=1, lexicon=lexicon)
    return a, b


def _table(d: Path, name: str) -> dict:
    if not (d / name).is_file():
        return {}
    return dict(line.rstrip("\n").split(" ", 1) for line in (d / name).read_text().splitlines() if line)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- corpus


def test_same_seed_same_text_and_audio(corpora):
    a, b = corpora
    assert a.failed == 0 and b.failed == 0 and a.done == 16
    for s in a.sets:
        assert (a.out_dir / s / "text").read_text() == (b.out_dir / s / "text").read_text()
        assert (a.out_dir / s / "utt2slots").read_text() == (b.out_dir / s / "utt2slots").read_text()
    wa = sorted((a.out_dir / "wav").glob("*.wav"))
    wb = sorted((b.out_dir / "wav").glob("*.wav"))
    assert [p.name for p in wa] == [p.name for p in wb] and len(wa) == 16
    assert [_sha(p) for p in wa] == [_sha(p) for p in wb]


def test_data_dirs_validate_and_have_every_table(corpora):
    a, _ = corpora
    assert set(a.sets) == set(SETS)
    for s in SETS:
        d = a.out_dir / s
        assert DataDir.read(d).validate() == []
        for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2voice", "utt2accent", "utt2synth",
                     "utt2intent", "utt2slots", "utt2dur"):
            assert (d / name).is_file(), name
        for utt, slots in _table(d, "utt2slots").items():
            assert isinstance(json.loads(slots), dict)
        for utt, path in _table(d, "wav.scp").items():
            info = sf.info(path)
            assert info.samplerate == 16000 and info.subtype == "PCM_16" and info.channels == 1
            assert abs(info.frames / 16000 - float(_table(d, "utt2dur")[utt])) < 1e-6


def test_manifests(corpora):
    from lhotse import RecordingSet, SupervisionSet

    a, _ = corpora
    for s, n in a.sets.items():
        recs = RecordingSet.from_file(a.out_dir / "manifests" / f"{s}_recordings.jsonl.gz")
        sups = SupervisionSet.from_file(a.out_dir / "manifests" / f"{s}_supervisions.jsonl.gz")
        assert len(recs) == len(sups) == n
        sup = next(iter(sups))
        assert sup.text and sup.speaker and sup.custom["synth"]


def test_test_voices_unseen_and_heldout_synth_isolated(corpora):
    a, _ = corpora
    voices = {s: set(_table(a.out_dir / s, "utt2voice").values()) for s in SETS}
    synths = {s: set(_table(a.out_dir / s, "utt2synth").values()) for s in SETS}
    assert voices["test"] and not voices["test"] & (voices["train"] | voices["dev"])
    held = _cfg().heldout_synth
    assert synths["test_heldout_synth"] == {held}
    for s in ("train", "dev", "test"):
        assert held not in synths[s]


def test_holdout_words_only_in_holdout_sets(corpora):
    a, _ = corpora
    held = [normalize_text(w) for w in HOLDOUT]
    for s in ("train", "dev"):
        for text in _table(a.out_dir / s, "text").values():
            assert not any(f" {h} " in f" {text} " for h in held), text
    test_texts = list(_table(a.out_dir / "test", "text").values())
    assert all(any(f" {h} " in f" {t} " for h in held) for t in test_texts)  # holdout_rate=1
    rare = _table(a.out_dir / "test", "utt2rare")
    assert rare and all(any(h in r for h in held) for r in rare.values())


def test_resume_keeps_valid_and_redoes_missing_or_corrupt(corpora, tmp_path, lexicon):
    a, _ = corpora
    out = tmp_path / "c"
    shutil.copytree(a.out_dir, out)
    wavs = sorted((out / "wav").glob("*.wav"))
    want = {p.name: _sha(p) for p in wavs}
    wavs[0].unlink()
    wavs[1].write_bytes(wavs[1].read_bytes()[:30])  # truncated: invalid
    res = make_corpus(_cfg(), out, nj=1, lexicon=lexicon)
    assert res.done == 16 and res.skipped == 14
    assert {p.name: _sha(p) for p in (out / "wav").glob("*.wav")} == want


def test_other_options_in_same_dir_refused(corpora, lexicon):
    a, _ = corpora
    with pytest.raises(UserError, match="seed"):
        make_corpus(_cfg(seed=8), a.out_dir, lexicon=lexicon)


def test_plan_errors(lexicon):
    with pytest.raises(UserError, match="unknown synthesizer 'nosuch'"):
        plan_corpus(_cfg(synths=["nosuch"]), lexicon)
    with pytest.raises(UserError, match="both"):
        plan_corpus(_cfg(synths=["espeak"], heldout_synth="espeak"), lexicon)
    with pytest.raises(UserError, match="unknown set"):
        plan_corpus(_cfg(holdout_sets=["eval"]), lexicon)


def test_utt_tag_keeps_voices_and_makes_ids_distinct(lexicon):
    """Two corpora with the same seed and different tags (new-word corpora next to a base corpus):
    the same voice split (test voices stay unseen by training), distinct utterance ids."""
    base = plan_corpus(_cfg(holdout_words=[], holdout_sets=[]), lexicon)
    tagged = plan_corpus(_cfg(utt_tag="nw1", holdout_sets=["train", "dev", "test"]), lexicon)
    voices = lambda plan, s: {u.speaker.voice.id for u in plan.utterances if u.set == s}  # noqa: E731
    assert voices(tagged, "test") and not voices(tagged, "test") & voices(base, "train")
    assert voices(tagged, "train") <= voices(base, "train") | voices(base, "dev")
    assert all(u.id.startswith(f"{u.speaker.id}-nw1-") for u in tagged.utterances)
    assert not {u.id for u in tagged.utterances} & {u.id for u in base.utterances}
    assert all("-nw1-" not in u.id for u in base.utterances)
    # every utterance of the sets given holds a held-out word (holdout_rate 1.0)
    assert all(set(u.item.rare) & {"ZORBLATT", "QUENMIRE FALLS"} for u in tagged.utterances
               if u.set in ("train", "dev", "test"))
    assert "utt_tag" not in _cfg().to_json()  # the fingerprints of older corpora are unchanged
    assert _cfg(utt_tag="nw1").to_json()["utt_tag"] == "nw1"
    with pytest.raises(UserError, match="--utt-tag"):
        plan_corpus(_cfg(utt_tag="NW-1"), lexicon)


def test_read_word_list(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_word_list(tmp_path / "missing.txt")
    p = tmp_path / "w.txt"
    p.write_text("# new words\nZorblatt\n\nQuenmire Falls  # a place\n")
    assert read_word_list(p) == ["Zorblatt", "Quenmire Falls"]
    p.write_text("# nothing\n")
    with pytest.raises(UserError, match="no words"):
        read_word_list(p)


def test_speaker_ids_have_no_dash():
    spk = Speaker(Voice("espeak", "en-gb-scotland", "m3", "en-gb-scotland", "m", "engbscotland"), 1.15, -2)
    assert spk.id == "espeak_engbscotland_m3_r115_pn2"
    assert "-" not in spk.id


# ----------------------------------------------------------------------------- text


def test_invented_words_are_new(lexicon):
    words = invent_words(50, random.Random(0), lexicon.dictionary)
    assert len(set(words)) == 50
    for w in words:
        assert w.lower() not in lexicon.dictionary
        assert normalize_text(w) == w.upper() and len(w.split()) == 1
    assert words == invent_words(50, random.Random(0), lexicon.dictionary)


def test_generator_items(lexicon):
    gen = TextGenerator(lexicon, ["Dravolen"], rare_rate=0.5, plain_frac=0.2, holdout=HOLDOUT)
    rng = random.Random(1)
    intents = set()
    for _ in range(300):
        item = gen.generate(rng, holdout="forbid")
        intents.add(item.intent)
        assert item.text and item.text == normalize_text(item.written)
        assert normalize_text(item.spoken) == item.text
        assert not gen.contains_holdout(item.text)
        for value in json.loads(item.slots_json).values():
            assert f" {value} " in f" {item.text} "
        if "DRAVOLEN" in item.text.split():
            assert "DRAVOLEN" in item.rare
    assert {"PlayMusic", "Call", "SetTimer", "SetAlarm", "Weather", "SmartHome", "ShoppingList", "None"} <= intents
    for _ in range(20):
        item = gen.generate(rng, holdout="force")
        assert gen.contains_holdout(item.text) and item.rare


# ----------------------------------------------------------------------------- acoustics


def test_noise_snr_and_colour():
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    y = acoustics.add_noise(x, 10.0, 1.0, rng)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.01
    white = acoustics.colored_noise(1 << 14, 0.0, np.random.default_rng(1))
    brown = acoustics.colored_noise(1 << 14, 2.0, np.random.default_rng(1))
    lo_hi = [np.abs(np.fft.rfft(n)) ** 2 for n in (white, brown)]
    ratio = [p[1:500].mean() / p[-500:].mean() for p in lo_hi]
    assert ratio[0] < 3 < 1000 < ratio[1]


def test_resample_trim_and_process_deterministic():
    x = np.zeros(22050 * 2, dtype=np.float32)
    x[22050 // 2: 22050] = 0.5 * np.sin(np.arange(22050 // 2) * 0.3)
    y = acoustics.resample(x, 22050)
    assert len(y) == 32000
    t = acoustics.trim_silence(y)
    assert abs(len(t) - (8000 + 2 * 2400)) <= 200
    aug = acoustics.draw_augmentation(np.random.default_rng(3), 1.0, 1.0, tempo_range=(0.9, 1.1), pitch_range=1.0)
    assert aug["noise"] and aug["reverb"]
    a = acoustics.process(x, 22050, aug)
    b = acoustics.process(x, 22050, json.loads(json.dumps(aug)))
    assert a.dtype == np.int16 and np.array_equal(a, b)
    assert 0.85 * 32767 < np.abs(a).max() <= 32767
