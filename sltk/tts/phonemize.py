"""Grapheme-to-phoneme conversion with espeak-ng, keeping word boundaries.

:func:`phonemize` turns a text into a :class:`Phonemized` utterance: a list of *units*, each
a word (its phonemes) or a pause (a silence token: ``sil`` at the start, ``,`` ``.`` ``?``
``!`` at punctuation, so questions and statements differ in their tokens). Every phoneme
carries the index of its unit, which is what word-level prosody pools over.

Words may be marked as emphasised in the text with asterisks (``turn *off* the lights``):
the mark is removed before espeak-ng reads the text and kept as a per-word flag.

espeak-ng's phonemes (``-x`` ASCII mnemonics, ``--sep=_``) lose their stress marks; a
sentence's words are taken from espeak-ng's output for the whole sentence (with its weak
forms), and when espeak-ng joins words (``of the`` -> ``V_v_D_@2``) the sentence is
phonemized again one word per line so that every written word has its own phonemes.

Only a small alphabet is accepted (:data:`ALLOWED`); any other character (digits, accented
letters, symbols) is a :class:`G2PError` naming them, rather than something espeak-ng would
silently spell out or drop.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from typing import List, Sequence, Tuple

from sltk.utils.errors import UserError

ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ '-*,.?!;:\n\t")
PAUSES = ("sil", ",", ".", "?", "!")
DEFAULT_VOICE = "en-us"
_STRESS = re.compile(r"[',=]")


class G2PError(UserError):
    """A text the phonemizer cannot handle; the message names the characters."""


@dataclass
class Phonemized:
    """One utterance: units (words and pauses) with their phonemes."""

    text: str                          # the cleaned text that was read (no marks)
    words: List[str]                   # one entry per unit ("" for pauses)
    unit_phones: List[List[str]]       # phonemes of each unit (a pause: [its token])
    emphasis: List[int] = field(default_factory=list)  # 1 where the text marked the unit

    @property
    def phones(self) -> List[str]:
        return [p for u in self.unit_phones for p in u]

    @property
    def word_index(self) -> List[int]:
        """Unit index of every phoneme."""
        return [i for i, u in enumerate(self.unit_phones) for _ in u]

    @property
    def phone_emphasis(self) -> List[int]:
        return [self.emphasis[i] for i in self.word_index]

    def is_pause(self, unit: int) -> bool:
        return self.words[unit] == ""

    def to_line(self) -> str:
        """``p p p | p p | ...``: units separated by ``|``, an emphasised unit's first token
        prefixed with ``*`` (the format of ``phones.txt``)."""
        parts = []
        for u, e in zip(self.unit_phones, self.emphasis):
            parts.append(("*" if e else "") + " ".join(u))
        return " | ".join(parts)

    @classmethod
    def from_line(cls, line: str) -> "Phonemized":
        words, units, emph = [], [], []
        for part in line.split("|"):
            toks = part.split()
            if not toks:
                raise ValueError(f"empty unit in phone line {line!r}")
            e = int(toks[0].startswith("*"))
            toks[0] = toks[0].lstrip("*")
            units.append(toks)
            emph.append(e)
            words.append("" if len(toks) == 1 and toks[0] in PAUSES else "w")
        return cls("", words, units, emph)


def check_text(text: str) -> None:
    """Raise :class:`G2PError` naming every character outside :data:`ALLOWED`."""
    bad = sorted(set(c for c in text if c not in ALLOWED))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise G2PError(f"the text {text.strip()[:60]!r} has characters the phonemizer cannot handle: {shown} "
                       "(write numbers and symbols as words, use plain letters a-z)")
    if not re.search(r"[A-Za-z]", text):
        raise G2PError(f"the text {text.strip()[:60]!r} has no word to speak")


def tokenize(text: str) -> List[Tuple[str, str]]:
    """(kind, token) pairs: ("w", "word"), ("w*", "word") for a marked word, ("p", ",")."""
    check_text(text)
    out: List[Tuple[str, str]] = []
    for m in re.finditer(r"\*?[A-Za-z']+(?:-[A-Za-z']+)*\*?|[,.?!;:]", text):
        t = m.group(0)
        if t in ",;:":
            out.append(("p", ","))
        elif t in ".?!":
            out.append(("p", t))
        else:
            marked = t.startswith("*") or t.endswith("*")
            w = t.strip("*").lower().replace("-", " ")
            for i, piece in enumerate(w.split()):
                piece = piece.strip("'")
                if piece:
                    out.append(("w*" if marked else "w", piece))
    return out


def _espeak(lines: Sequence[str], voice: str) -> List[str]:
    if shutil.which("espeak-ng") is None:
        raise UserError("espeak-ng is not on PATH (Debian package espeak-ng)")
    try:
        res = subprocess.run(["espeak-ng", "-q", "-x", "--sep=_", "-v", voice], input="\n".join(lines) + "\n",
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"espeak-ng failed: {e}") from None
    if res.returncode != 0:
        raise UserError(f"espeak-ng -v {voice} failed: {res.stderr.strip()[-200:]}")
    return [ln for ln in res.stdout.splitlines() if ln.strip()]


def _clean_word(w: str) -> List[str]:
    return [p for p in (_STRESS.sub("", x) for x in w.split("_")) if p]


@lru_cache(maxsize=4096)
def _phonemize_words(words: Tuple[str, ...], voice: str) -> Tuple[Tuple[str, ...], ...]:
    sent = _espeak([" ".join(words)], voice)
    out = [w for ln in sent for w in ln.split()]
    if len(out) != len(words):  # espeak joined or split words: one word per line
        out = _espeak(list(words), voice)
        if len(out) != len(words):
            raise G2PError(f"espeak-ng gave {len(out)} phoneme words for the {len(words)} words {' '.join(words)!r}")
    phones = tuple(tuple(_clean_word(w)) for w in out)
    for w, p in zip(words, phones):
        if not p:
            raise G2PError(f"espeak-ng gave no phonemes for the word {w!r}")
    return phones


def phonemize(text: str, voice: str = DEFAULT_VOICE) -> Phonemized:
    """Phonemes of ``text`` with word boundaries (see the module doc). A leading ``sil``
    and a final pause (``.`` unless the text ends with ``?`` or ``!``) are always there."""
    toks = tokenize(text)
    # Consecutive words between pauses go to espeak-ng together (weak forms in context).
    words: List[str] = []
    units: List[List[str]] = [["sil"]]
    names: List[str] = [""]
    emph: List[int] = [0]
    run: List[Tuple[str, str]] = []

    def flush():
        if not run:
            return
        phones = _phonemize_words(tuple(w for _, w in run), voice)
        for (k, w), p in zip(run, phones):
            units.append(list(p))
            names.append(w)
            emph.append(int(k == "w*"))
            words.append(w)
        run.clear()

    for kind, t in toks:
        if kind == "p":
            flush()
            if names[-1] == "":  # merge consecutive pauses, the stronger one wins
                if t != ",":
                    units[-1] = [t if units[-1][0] in ("sil", ",") else units[-1][0]]
                continue
            units.append([t])
            names.append("")
            emph.append(0)
        else:
            run.append((kind, t))
    flush()
    if names[-1] != "":
        units.append(["."])
        names.append("")
        emph.append(0)
    elif units[-1] == [","]:
        units[-1] = ["."]
    if len(units) == 1:
        raise G2PError(f"the text {text.strip()[:60]!r} has no word to speak")
    return Phonemized(" ".join(words), names, units, emph)
