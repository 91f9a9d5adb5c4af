"""Value linking and repair on hand-made questions: prefix, initials, case, plural, ambiguity."""

import pytest

from sltk.sql.linking import link_candidate, link_value, match_kind

STATES = ["California", "Colorado", "New York", "New Jersey", "Texas"]
SIDES = ["Left", "Right", "Center"]


@pytest.mark.parametrize("mention,value,kind", [
    ("California", "California", "exact"),
    ("california", "California", "case"),
    ("TEXAS", "Texas", "case"),
    ("lions", "Lion", "plural"),
    ("Cal", "California", "prefix"),
    ("new", "New York", "prefix"),          # the first word of a multi-word value
    ("NY", "New York", "initials"),
    ("L", "Left", "initials"),
    ("Clfn", "California", "abbreviation"),
    ("Co", "Colorado", "abbreviation"),     # two letters: too short for a prefix, but in order
    ("Cx", "Colorado", None),
    ("Texas", "California", None),
    ("R", "Left", None),
])
def test_match_kind(mention, value, kind):
    assert match_kind(mention, value) == kind


def test_link_value_picks_the_best_kind_and_refuses_ties():
    assert link_value("Cal", STATES, "teams in Cal").value == "California"
    assert link_value("NY", STATES, "teams in NY").value == "New York"
    assert link_value("L", SIDES, "injuries on the L side").value == "Left"
    assert link_value("texas", STATES, "teams in texas").kind == "case"
    # "New" is a prefix of two values: no unique link
    ln = link_value("New", STATES, "teams in New")
    assert ln.value is None and ln.kind is None
    # the exact value wins over a prefix of another one
    assert link_value("Left", ["Left", "Left Wing"], "left").kind == "exact"
    # a literal that is not words of the question: a question word names a value
    ln = link_value("teams from", STATES, "which teams are from Tex")
    assert (ln.value, ln.kind) == ("Texas", "prefix")
    # words of the question that name no value stay unlinked (no other value is forced in)
    assert link_value("Peru", STATES, "teams from Peru or Texas").value is None


def test_link_candidate_repairs_literals(hand_db):
    db = hand_db / "concerts" / "concerts.sqlite"
    q = "which singers from the US have concerts on the L side"
    sql = ("SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.id "
           "WHERE T2.country = 'US' AND T1.side = 'L'")
    fixed, links = link_candidate(sql, q, db)
    assert fixed == sql.replace("'US'", "'United States'").replace("'L'", "'Left'")
    assert [(l.literal, l.value, l.kind) for l in links] == [("US", "United States", "initials"), ("L", "Left", "initials")]
    # the column decides which values count: 'Cal' names the country California, not a venue
    fixed, links = link_candidate("SELECT name FROM singer WHERE country = 'cal'", "singers from cal", db)
    assert fixed == "SELECT name FROM singer WHERE country = 'California'" and links[0].kind == "prefix"
    # an exact value stays; a literal with no link stays and is reported unlinked
    fixed, links = link_candidate("SELECT name FROM singer WHERE country = 'France' OR country = 'Peru'",
                                  "singers from France or Peru", db)
    assert fixed == "SELECT name FROM singer WHERE country = 'France' OR country = 'Peru'"
    assert [(l.value, l.kind) for l in links] == [("France", "exact"), (None, None)]


def test_link_candidate_malformed_sql_is_left_alone(hand_db):
    db = hand_db / "concerts" / "concerts.sqlite"
    assert link_candidate("SELECT name FROM WHERE country = 'US", "singers from the US", db) == (
        "SELECT name FROM WHERE country = 'US", [])
