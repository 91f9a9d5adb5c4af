"""The combined reranking score: malformed candidates never crash it and lose, the plan term
demotes a candidate whose plan disagrees, linking repairs, executability demotes errors."""

import math

import pytest

from sltk.sql.rerank import RerankConfig, accuracy, noised_oracle, plan_score, rerank_record
from sltk.sql.sqlparse import PLAN_FIELDS, PLAN_SIZES, plan
from sltk.utils.errors import UserError
from sltk.sql.db import db_path


def confident(gold_plan, p=0.9):
    return {f: [math.log(p if v == gold_plan[f] else (1 - p) / (PLAN_SIZES[f] - 1)) for v in range(PLAN_SIZES[f])]
            for f in PLAN_FIELDS}


def test_plan_score_hand_computed():
    lp = confident(plan("SELECT name FROM singer ORDER BY age DESC LIMIT 1"))
    assert plan_score("SELECT name FROM singer ORDER BY age LIMIT 2", lp) == pytest.approx(0.0)
    # order and limit disagree: 2 * (log 0.1 - log 0.9)
    assert plan_score("SELECT name FROM singer", lp) == pytest.approx(2 * math.log(0.1 / 0.9))
    # malformed: the worst value of every field (join: log(0.05) - log(0.9); setop: log(0.1/3) - log(0.9))
    worst = 6 * math.log(0.1 / 0.9) + math.log(0.05 / 0.9) + math.log((0.1 / 3) / 0.9)
    assert plan_score("SELECT name FROM (", lp) == pytest.approx(worst)


def test_rerank_record(hand_db):
    db = db_path(hand_db, "concerts")
    rec = {"question": "name of the oldest singer from the US", "db": "concerts", "candidates": [
        {"sql": "SELECT name FROM singer WHERE country = 'US' ORDER BY age DESC LIMIT 1", "score": -2.0},
        {"sql": "SELECT name FROM WHERE (", "score": -0.5},                                 # malformed
        {"sql": "SELECT name FROM singer WHERE country = 'US'", "score": -1.0},              # no ORDER BY/LIMIT
        {"sql": "SELECT name FROM singers WHERE country = 'US' ORDER BY age DESC LIMIT 1", "score": -1.5},
    ]}
    gold = plan(rec["candidates"][0]["sql"])
    # everything off: the generator's order
    off = rerank_record(rec, db, RerankConfig(plan=False, link=False, exec=False))
    assert [c["rank_in"] for c in off["candidates"]] == [1, 2, 3, 0]
    # executability alone: the malformed one and the unknown table sink; 'US' matches no row (-2)
    ex = rerank_record(rec, db, RerankConfig(plan=False, link=False, exec=True))
    assert [c["rank_in"] for c in ex["candidates"]] == [2, 0, 1, 3]
    assert ex["candidates"][0]["terms"]["exec"] == -2.0 and "error" in ex["candidates"][2]
    # linking alone repairs 'US' -> 'United States' (cost 0.1 * 2 each) and keeps the malformed first
    ln = rerank_record(rec, db, RerankConfig(plan=False, link=True, exec=False))
    assert [c["rank_in"] for c in ln["candidates"]] == [1, 2, 3, 0]
    assert ln["candidates"][1]["sql"] == "SELECT name FROM singer WHERE country = 'United States'"
    assert ln["candidates"][1]["original_sql"] == "SELECT name FROM singer WHERE country = 'US'"
    assert ln["candidates"][1]["total"] == pytest.approx(-1.2)
    # all three with a plan model that wants ORDER BY + LIMIT: the right candidate, repaired, wins
    al = rerank_record(rec, db, RerankConfig(), confident(gold))
    top = al["candidates"][0]
    assert top["rank_in"] == 0
    assert top["sql"] == "SELECT name FROM singer WHERE country = 'United States' ORDER BY age DESC LIMIT 1"
    assert top["total"] == pytest.approx(-2.2)
    assert al["candidates"][-1]["rank_in"] == 1   # the malformed candidate is last, and did not crash anything


def test_noised_oracle_accuracy():
    golds = [plan("SELECT name FROM singer"), plan("SELECT count(*) FROM singer GROUP BY country")] * 200
    assert accuracy(noised_oracle(golds, 1.0), golds)["all"] == 1.0
    acc = accuracy(noised_oracle(golds, 0.8, seed=1), golds)
    assert all(0.7 < acc[f] < 0.9 for f in PLAN_FIELDS)
    assert accuracy(noised_oracle(golds, 0.0), golds)["where"] == 0.0


def test_unknown_database_is_a_clear_error(hand_db):
    with pytest.raises(UserError, match=r"database 'nope' does not exist \(no .*nope/nope.sqlite\)"):
        db_path(hand_db, "nope")
