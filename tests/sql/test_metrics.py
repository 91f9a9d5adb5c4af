"""Exact-set match (values ignored), execution match, hardness, plans and the evaluation table."""

import pytest

from sltk.sql.metrics import evaluate, execution_match
from sltk.sql.sqlparse import exact_match, hardness, plan

from .conftest import SCHEMA

J = "SELECT T1.venue FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.id WHERE T2.country = 'France'"


@pytest.mark.parametrize("pred", [
    # conditions in another order, other values
    "SELECT name FROM singer WHERE age > 40 AND country = 'x'",
    # an alias, and the table name as qualifier
    "SELECT T1.name FROM singer AS T1 WHERE T1.country = 'France' AND T1.age > 3",
    "SELECT singer.name FROM singer WHERE singer.country = 'y' AND singer.age > 1",
])
def test_em_matches_reordered_conditions_and_aliases(pred):
    assert exact_match(pred, "SELECT name FROM singer WHERE country = 'France' AND age > 30", SCHEMA)


def test_em_join_with_other_aliases_and_table_order():
    pred = "SELECT concert.venue FROM singer JOIN concert ON singer.id = concert.singer_id WHERE singer.country = 'F'"
    assert exact_match(pred, J, SCHEMA)
    # unqualified columns resolved through the schema
    assert exact_match("SELECT venue FROM concert AS a JOIN singer AS b ON singer_id = b.id WHERE country = 'x'",
                       J, SCHEMA)


@pytest.mark.parametrize("pred", [
    "SELECT age FROM singer WHERE country = 'France' AND age > 30",          # another column selected
    "SELECT name FROM singer WHERE name = 'France' AND age > 30",            # another column in a condition
    "SELECT name FROM singer WHERE country = 'France' AND age < 30",         # another operator
    "SELECT name FROM singer WHERE country = 'France' OR age > 30",          # OR for AND
    "SELECT name FROM singer WHERE country = 'France'",                      # a condition missing
    "SELECT name FROM singer WHERE country = 'France' AND age > 30 LIMIT 1",  # a LIMIT more
    "SELECT name FROM singer WHERE country = 'France' AND age >",            # malformed
    "SELECT name FROM singers WHERE",                                        # malformed
    "",
])
def test_em_rejects_other_queries(pred):
    assert not exact_match(pred, "SELECT name FROM singer WHERE country = 'France' AND age > 30", SCHEMA)


def test_em_order_direction_set_operations_and_nesting():
    g = "SELECT name FROM singer ORDER BY age DESC LIMIT 1"
    assert exact_match("SELECT name FROM singer ORDER BY age DESC LIMIT 3", g, SCHEMA)  # limit value ignored
    assert not exact_match("SELECT name FROM singer ORDER BY age ASC LIMIT 1", g, SCHEMA)
    g = "SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30"
    assert exact_match("SELECT country FROM singer WHERE age > 1 INTERSECT SELECT country FROM singer WHERE age < 2",
                       g, SCHEMA)
    assert not exact_match(g.replace("INTERSECT", "UNION"), g, SCHEMA)
    g = "SELECT name FROM singer WHERE id NOT IN (SELECT singer_id FROM concert)"
    assert exact_match("SELECT T1.name FROM singer AS T1 WHERE T1.id NOT IN (SELECT T2.singer_id FROM concert AS T2)",
                       g, SCHEMA)
    assert not exact_match("SELECT name FROM singer WHERE id IN (SELECT singer_id FROM concert)", g, SCHEMA)
    assert not exact_match("SELECT name FROM singer WHERE id NOT IN (SELECT id FROM concert)", g, SCHEMA)


def test_execution_match(hand_db):
    db = hand_db / "concerts" / "concerts.sqlite"
    g = "SELECT name FROM singer WHERE age > 40"
    assert execution_match("SELECT name FROM singer WHERE NOT age <= 40", g, db)
    assert execution_match("SELECT name FROM singer WHERE age > 40 ORDER BY name DESC", g, db)  # no order in gold
    assert not execution_match("SELECT name FROM singer WHERE age > 41", g, db)  # drops Rose White (41)
    assert not execution_match("SELECT name FROM singers WHERE age > 40", g, db)  # no such table
    assert not execution_match("SELECT name FROM singer WHERE", g, db)
    g = "SELECT name FROM singer ORDER BY age"
    assert execution_match("SELECT name FROM singer ORDER BY age ASC", g, db)
    assert not execution_match("SELECT name FROM singer ORDER BY age DESC", g, db)  # order matters now
    # values matter for EX (not for EM)
    assert not execution_match("SELECT name FROM singer WHERE country = 'france'", "SELECT name FROM singer WHERE "
                               "country = 'France'", db)


def test_hardness_and_plan():
    assert hardness("SELECT count(*) FROM singer") == "easy"
    assert hardness("SELECT name FROM singer WHERE age > 3") == "easy"
    assert hardness("SELECT name , age FROM singer WHERE age > 3") == "medium"
    assert hardness(J) == "medium"
    assert hardness("SELECT name FROM singer WHERE id NOT IN (SELECT singer_id FROM concert)") == "hard"
    assert hardness("SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.id "
                    "GROUP BY T1.singer_id ORDER BY count(*) DESC LIMIT 3") == "extra"
    p = plan("SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.id "
             "GROUP BY T1.singer_id HAVING count(*) > 1")
    assert p == {"where": 0, "group": 1, "having": 1, "order": 0, "limit": 0, "join": 1, "nested": 0, "setop": 0}
    p = plan("SELECT name FROM singer EXCEPT SELECT name FROM singer WHERE age IN (SELECT age FROM singer)")
    assert p == {"where": 1, "group": 0, "having": 0, "order": 0, "limit": 0, "join": 0, "nested": 1, "setop": 3}


def test_evaluate_top1_oracle_and_hardness(hand_db):
    recs = [
        {"db": "concerts", "hardness": "easy", "query": "SELECT name FROM singer WHERE age > 40",
         "candidates": [{"sql": "SELECT name FROM singer WHERE age > 41", "score": -1},     # EM yes, EX no
                        {"sql": "SELECT name FROM singer WHERE age > 40", "score": -2}]},   # both
        {"db": "concerts", "hardness": "medium", "query": J,
         "candidates": [{"sql": "SELECT venue FROM concert", "score": -1},                 # neither
                        {"sql": "SELECT FROM (", "score": -3}]},                         # malformed
    ]
    m = evaluate(recs, hand_db)
    assert m["all"] == {"n": 2, "em": 0.5, "ex": 0.0, "oracle_em": 0.5, "oracle_ex": 0.5}
    assert m["easy"] == {"n": 1, "em": 1.0, "ex": 0.0, "oracle_em": 1.0, "oracle_ex": 1.0}
    assert m["medium"]["oracle_em"] == 0.0 and list(m) == ["all", "easy", "medium"]
