"""The espeak-ng phonemizer: word boundaries, pauses, emphasis marks, and clear errors."""

import shutil

import pytest

from sltk.tts.phonemize import G2PError, Phonemized, check_text, phonemize, tokenize

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_unknown_characters_are_named():
    with pytest.raises(G2PError) as e:
        check_text("the café costs 5 € today")
    msg = str(e.value)
    for c in ("'é'", "'5'", "'€'"):
        assert c in msg
    assert "'t'" not in msg  # only the offending characters are listed
    with pytest.raises(G2PError, match="no word"):
        check_text(" ?! ")


def test_tokenize_marks_and_pauses():
    assert tokenize("Turn *off* the light, please?") == [
        ("w", "turn"), ("w*", "off"), ("w", "the"), ("w", "light"), ("p", ","), ("w", "please"), ("p", "?")]
    assert tokenize("well-known don't") == [("w", "well"), ("w", "known"), ("w", "don't")]


@needs_espeak
def test_phonemize_units_and_word_index():
    p = phonemize("is the *red* lamp on?")
    assert p.words == ["", "is", "the", "red", "lamp", "on", ""]
    assert p.unit_phones[0] == ["sil"] and p.unit_phones[-1] == ["?"]  # a question's final pause
    assert p.emphasis == [0, 0, 0, 1, 0, 0, 0]
    assert p.unit_phones[3] == ["r", "E", "d"]
    # every phoneme carries its unit's index, in order
    assert p.word_index == [i for i, u in enumerate(p.unit_phones) for _ in u]
    assert len(p.phone_emphasis) == len(p.phones) and sum(p.phone_emphasis) == 3
    # statements end with "."; words espeak-ng joins ("of the") still get their own units
    q = phonemize("the end of the day")
    assert q.unit_phones[-1] == ["."] and q.words[1:-1] == ["the", "end", "of", "the", "day"]


@needs_espeak
def test_line_round_trip():
    p = phonemize("turn *off* the light.")
    line = p.to_line()
    assert line.startswith("sil | ") and "| *" in line
    back = Phonemized.from_line(line)
    assert back.unit_phones == p.unit_phones and back.emphasis == p.emphasis
    assert back.word_index == p.word_index
