"""Text normalization for ASR targets: one function, :func:`normalize_text`, used everywhere.

Every transcript that sltk writes (synthetic corpora, lexicons, scoring references) goes
through :func:`normalize_text`, so that a hypothesis and its reference are always written
the same way. The rules, in the order they are applied:

1. Unicode is folded to ASCII: accents are dropped (``Sao Paulo`` from ``São Paulo``),
   curly quotes become ``'``, dashes become ``-``; letters of other scripts are removed.
2. Numbers are written as spoken (American) English words:

   ========================  ===========================================
   written                   normalized
   ========================  ===========================================
   ``7:30``, ``7:05``        ``SEVEN THIRTY``, ``SEVEN OH FIVE``
   ``7:00``, ``7:00 pm``     ``SEVEN O'CLOCK``, ``SEVEN P M``
   ``7am``, ``11 p.m.``      ``SEVEN A M``, ``ELEVEN P M``
   ``$5``, ``$1.50``         ``FIVE DOLLARS``, ``ONE DOLLAR FIFTY CENTS``
   ``40%``, ``2.5 %``        ``FORTY PERCENT``, ``TWO POINT FIVE PERCENT``
   ``1st``, ``22nd``         ``FIRST``, ``TWENTY SECOND``
   ``3.14``                  ``THREE POINT ONE FOUR``
   ``1,250``, ``-3``         ``ONE THOUSAND TWO HUNDRED FIFTY``, ``MINUS THREE``
   ``1984``, ``2005``        ``NINETEEN EIGHTY FOUR``, ``TWO THOUSAND FIVE`` (a bare
                             four-digit number from 1100 to 2099 is read as a year)
   ``007``                   ``ZERO ZERO SEVEN`` (leading zeros: digit by digit)
   ``the 1990s``, ``'90s``   ``THE NINETEEN NINETIES``, ``NINETIES``
   ``mp3``                   ``MP THREE`` (letters and digits are split apart)
   ========================  ===========================================

   Cardinals have no "and" (``ONE HUNDRED FIVE``) and no hyphens (``TWENTY ONE``).
3. ``&`` becomes ``AND`` and ``+`` becomes ``PLUS``; hyphens, slashes and underscores
   separate words.
4. Everything is upper-cased; punctuation is removed, except an apostrophe between two
   letters (``DON'T``, ``O'CLOCK``); whitespace is collapsed to single spaces.

The result contains only ``A-Z``, ``'`` and single spaces, with no leading or trailing
space. The function is idempotent: ``normalize_text(normalize_text(s)) == normalize_text(s)``.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "number_to_words", "ordinal_to_words"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10 ** 15, "quadrillion"), (10 ** 12, "trillion"), (10 ** 9, "billion"),
           (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_FOLD = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
         "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "þ": "th", "Þ": "TH", "ı": "i",
         "‘": "'", "’": "'", "ʼ": "'", "`": "'", "´": "'", "“": '"', "”": '"',
         "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-", "\u00a0": " "}


def _below_thousand(n: int) -> list:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """A cardinal in lower-case words: ``number_to_words(1205) == 'one thousand two hundred five'``."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10 ** 18:  # past quintillions: read the digits
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 1000:
        return " ".join(_below_thousand(n))
    words = []
    for value, name in _SCALES:
        if n >= value:
            words += _below_thousand(n // value) if n // value < 1000 else number_to_words(n // value).split()
            words.append(name)
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """An ordinal in lower-case words: ``ordinal_to_words(22) == 'twenty second'``."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year_to_words(n: int) -> str:
    if 2000 <= n <= 2009:
        return number_to_words(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return number_to_words(hi) + " hundred"
    if lo < 10:
        return f"{number_to_words(hi)} oh {_ONES[lo]}"
    return f"{number_to_words(hi)} {number_to_words(lo)}"


def _digits(s: str) -> str:
    return " ".join(_ONES[int(d)] for d in s)


def _integer(s: str) -> str:
    """Words for a string of digits (commas allowed), leading zeros read digit by digit."""
    s = s.replace(",", "")
    if len(s) > 1 and s.startswith("0"):
        return _digits(s)
    return number_to_words(int(s))


def _hour_minutes(h: int, m: int, has_ampm: bool) -> str:
    hour = number_to_words(h)
    if m == 0:
        return hour if has_ampm else f"{hour} o'clock"
    if m < 10:
        return f"{hour} oh {_ONES[m]}"
    return f"{hour} {number_to_words(m)}"


_AMPM = r"([ap])\.?\s?m\b\.?"
_RE_TIME = re.compile(r"(?<![\d:.])(\d{1,2}):(\d{2})(?![\d:])(?:\s*" + _AMPM + ")?", re.I)
_RE_HOUR_AMPM = re.compile(r"(?<![\d:.,])(\d{1,2})\s*" + _AMPM, re.I)
_RE_DOLLARS = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{2}))?(?!\d)")
_RE_ORDINAL = re.compile(r"(?<![\d.,])(\d+)(st|nd|rd|th)\b", re.I)
_RE_DECIMAL = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+)\.(\d+)(?![\d.])")
_RE_INTEGER = re.compile(r"(?<!\d)(\d{1,3}(?:,\d{3})+(?!\d)|\d+)")
_RE_PLURAL = re.compile(r"(?<![\d.,])'?(\d+)'?s\b")
_RE_PERCENT = re.compile(r"\s*%")
_RE_MINUS = re.compile(r"(?<![\w])-(?=\d)")
_RE_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_RE_APOSTROPHE = re.compile(r"(?<![A-Z])'|'(?![A-Z])")
_RE_NOT_ALLOWED = re.compile(r"[^A-Z' ]+")


def _fold_unicode(s: str) -> str:
    s = "".join(_FOLD.get(c, c) for c in s)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def _dollars(m: re.Match) -> str:
    whole = int(m.group(1).replace(",", ""))
    cents = int(m.group(2)) if m.group(2) else 0
    parts = []
    if whole or not cents:
        parts.append(f"{number_to_words(whole)} dollar{'' if whole == 1 else 's'}")
    if cents:
        parts.append(f"{number_to_words(cents)} cent{'' if cents == 1 else 's'}")
    return " " + " ".join(parts) + " "


def _time(m: re.Match) -> str:
    h, mins, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    if h > 24 or mins > 59:  # not a clock time: read both numbers
        return f" {number_to_words(h)} {_integer(m.group(2))} " + (f"{ampm} m " if ampm else "")
    out = _hour_minutes(h, mins, ampm is not None)
    return f" {out} " + (f"{ampm} m " if ampm else "")


def _integer_word(m: re.Match) -> str:
    s = m.group(1)
    plain = s.replace(",", "")
    if "," not in s and len(s) == 4 and 1100 <= int(s) <= 2099:
        return f" {_year_to_words(int(s))} "
    return f" {_integer(plain) if ',' not in s else number_to_words(int(plain))} "


def _plural(m: re.Match) -> str:
    words = _integer_word(m).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return " " + " ".join(words) + " "


def normalize_text(s: str) -> str:
    """Normalize a transcript for ASR: spoken-form words, upper case, no punctuation.

    See the module documentation for the rules. Examples::

        >>> normalize_text("Set an alarm for 7:30, please!")
        "SET AN ALARM FOR SEVEN THIRTY PLEASE"
        >>> normalize_text("Dim the lights to 40% on the 2nd floor")
        "DIM THE LIGHTS TO FORTY PERCENT ON THE SECOND FLOOR"
        >>> normalize_text("  Don't   'quote' me — São Paulo ")
        "DON'T QUOTE ME SAO PAULO"
    """
    s = _fold_unicode(s)
    s = _RE_TIME.sub(_time, s)
    s = _RE_HOUR_AMPM.sub(lambda m: f" {number_to_words(int(m.group(1)))} {m.group(2)} m ", s)
    s = _RE_DOLLARS.sub(_dollars, s)
    s = _RE_ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m.group(1).replace(',', '')))} ", s)
    s = _RE_MINUS.sub(" minus ", s)
    s = _RE_PLURAL.sub(_plural, s)
    s = _RE_DECIMAL.sub(lambda m: f" {_integer(m.group(1))} point {_digits(m.group(2))} ", s)
    s = _RE_LETTER_DIGIT.sub(" ", s)
    s = _RE_INTEGER.sub(_integer_word, s)
    s = _RE_PERCENT.sub(" percent ", s)
    s = s.replace("&", " and ").replace("+", " plus ")
    s = s.upper()
    s = re.sub(r"[-/_\\]", " ", s)
    s = _RE_APOSTROPHE.sub(" ", s)  # keep only apostrophes between two letters
    s = _RE_NOT_ALLOWED.sub(" ", s)
    return " ".join(s.split())
