"""Accents, accent-specific phonemization and the phone vocabulary.

An accent is an espeak-ng English voice (:data:`ACCENTS`); its phonemization of a text is
:func:`sltk.tts.phonemize.phonemize` with that voice, so ``en-gb-scotland`` gives rhotic
``A@_r`` where ``en-gb-x-rp`` gives ``A@``. The same text has the same units (words and
pauses) in every accent, which is what remapping relies on.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

from sltk.tts.phonemize import PAUSES, Phonemized, phonemize
from sltk.utils.errors import UserError

# accent name -> espeak-ng voice
ACCENTS: Dict[str, str] = {
    "en-us": "en-us",
    "en-gb-x-rp": "en-gb-x-rp",
    "en-gb-scotland": "en-gb-scotland",
    "en-029": "en-029",
    "en-us-nyc": "en-us-nyc",
    "en-gb-x-gbclan": "en-gb-x-gbclan",
}

UNK = "<unk>"


def check_accent(name: str, known: Sequence[str] = tuple(ACCENTS)) -> str:
    """``name`` if it is one of ``known``, else a :class:`UserError` listing the known ones."""
    if name not in known:
        raise UserError(f"unknown accent {name!r} (known accents: {', '.join(known)})")
    return name


def check_accents(names: Iterable[str], known: Sequence[str] = tuple(ACCENTS)) -> List[str]:
    return [check_accent(n, known) for n in names]


def phonemize_accent(text: str, accent: str) -> Phonemized:
    """The phonemes of ``text`` as ``accent`` says them (espeak-ng with its voice)."""
    check_accent(accent)
    return phonemize(text, voice=ACCENTS[accent])


class PhoneVocab:
    """Phone <-> id; id 0 is :data:`UNK` (a phone never seen in training)."""

    def __init__(self, phones: Iterable[str] = ()):
        self.phones: List[str] = [UNK]
        self.index: Dict[str, int] = {UNK: 0}
        for p in list(PAUSES) + sorted(set(phones)):
            self.add(p)

    def add(self, p: str) -> int:
        if p not in self.index:
            self.index[p] = len(self.phones)
            self.phones.append(p)
        return self.index[p]

    def __len__(self) -> int:
        return len(self.phones)

    def ids(self, phones: Sequence[str]) -> List[int]:
        return [self.index.get(p, 0) for p in phones]

    def to_list(self) -> List[str]:
        return list(self.phones)

    @classmethod
    def from_list(cls, phones: List[str]) -> "PhoneVocab":
        v = cls()
        for p in phones:
            v.add(p)
        return v
