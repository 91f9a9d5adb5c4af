"""normalize_text: hand-written cases for every rule, and idempotence."""

import pytest

from sltk.data.text_norm import normalize_text, number_to_words, ordinal_to_words

CASES = [
    # case, punctuation, whitespace
    ("Hello, world... How are you?", "HELLO WORLD HOW ARE YOU"),
    ("  many   spaces\there\n", "MANY SPACES HERE"),
    ("", ""),
    ("?!.", ""),
    # apostrophes: kept inside words only
    ("Don't stop", "DON'T STOP"),
    ("O'Brien's car", "O'BRIEN'S CAR"),
    ("'quoted' words", "QUOTED WORDS"),
    ("rock 'n' roll", "ROCK N ROLL"),
    ("the dogs' bowls", "THE DOGS BOWLS"),
    ("it’s curly", "IT'S CURLY"),
    # hyphens, slashes, symbols
    ("well-known state-of-the-art", "WELL KNOWN STATE OF THE ART"),
    ("AC/DC", "AC DC"),
    ("salt & pepper", "SALT AND PEPPER"),
    ("C++", "C PLUS PLUS"),
    # unicode folding
    ("São Paulo", "SAO PAULO"),
    ("Zürich Straße Łódź Ærø", "ZURICH STRASSE LODZ AERO"),
    ("naïve café — fine", "NAIVE CAFE FINE"),
    # cardinals
    ("0", "ZERO"),
    ("7", "SEVEN"),
    ("13 and 40", "THIRTEEN AND FORTY"),
    ("21", "TWENTY ONE"),
    ("105", "ONE HUNDRED FIVE"),
    ("999", "NINE HUNDRED NINETY NINE"),
    ("1,250", "ONE THOUSAND TWO HUNDRED FIFTY"),
    ("10000", "TEN THOUSAND"),
    ("1000000", "ONE MILLION"),
    ("2,000,001", "TWO MILLION ONE"),
    ("-3 degrees", "MINUS THREE DEGREES"),
    ("007", "ZERO ZERO SEVEN"),
    ("5-3", "FIVE THREE"),
    # years
    ("in 1984", "IN NINETEEN EIGHTY FOUR"),
    ("1905", "NINETEEN OH FIVE"),
    ("1900", "NINETEEN HUNDRED"),
    ("2005", "TWO THOUSAND FIVE"),
    ("2024", "TWENTY TWENTY FOUR"),
    ("3000", "THREE THOUSAND"),
    ("the 1990s", "THE NINETEEN NINETIES"),
    ("the '80s", "THE EIGHTIES"),
    # decimals, percent, money
    ("3.14", "THREE POINT ONE FOUR"),
    ("0.5", "ZERO POINT FIVE"),
    ("40%", "FORTY PERCENT"),
    ("2.5 %", "TWO POINT FIVE PERCENT"),
    ("$5", "FIVE DOLLARS"),
    ("$1", "ONE DOLLAR"),
    ("$1.50", "ONE DOLLAR FIFTY CENTS"),
    ("$0.99", "NINETY NINE CENTS"),
    ("$1,200", "ONE THOUSAND TWO HUNDRED DOLLARS"),
    # ordinals
    ("1st 2nd 3rd 4th", "FIRST SECOND THIRD FOURTH"),
    ("11th 12th 13th", "ELEVENTH TWELFTH THIRTEENTH"),
    ("21st 22nd 30th", "TWENTY FIRST TWENTY SECOND THIRTIETH"),
    ("the 100th time", "THE ONE HUNDREDTH TIME"),
    # times
    ("7:30", "SEVEN THIRTY"),
    ("7:05", "SEVEN OH FIVE"),
    ("7:00", "SEVEN O'CLOCK"),
    ("7:00 pm", "SEVEN P M"),
    ("10:30am", "TEN THIRTY A M"),
    ("wake me at 7am", "WAKE ME AT SEVEN A M"),
    ("11 p.m. sharp", "ELEVEN P M SHARP"),
    ("13:45", "THIRTEEN FORTY FIVE"),
    ("25:99", "TWENTY FIVE NINETY NINE"),
    # letters and digits
    ("mp3 player", "MP THREE PLAYER"),
    ("version 2.0.1", "VERSION TWO ZERO ONE"),
    # whole sentences
    ("Set an alarm for 7:30, please!", "SET AN ALARM FOR SEVEN THIRTY PLEASE"),
    ("Dim the lights to 40% on the 2nd floor.", "DIM THE LIGHTS TO FORTY PERCENT ON THE SECOND FLOOR"),
    ("Put 3 apples on the list", "PUT THREE APPLES ON THE LIST"),
]


@pytest.mark.parametrize("written,expected", CASES)
def test_normalize(written, expected):
    assert normalize_text(written) == expected


@pytest.mark.parametrize("written,_", CASES)
def test_idempotent_and_clean(written, _):
    out = normalize_text(written)
    assert normalize_text(out) == out
    assert set(out) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    assert "  " not in out and out == out.strip()


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(19) == "nineteen"
    assert number_to_words(90) == "ninety"
    assert number_to_words(1001) == "one thousand one"
    assert number_to_words(123456789) == ("one hundred twenty three million four hundred fifty six "
                                          "thousand seven hundred eighty nine")
    assert number_to_words(-12) == "minus twelve"
    assert ordinal_to_words(1) == "first"
    assert ordinal_to_words(5) == "fifth"
    assert ordinal_to_words(8) == "eighth"
    assert ordinal_to_words(9) == "ninth"
    assert ordinal_to_words(40) == "fortieth"
    assert ordinal_to_words(1000) == "one thousandth"
