"""The benchmark: unseen test databases, every hardness level, value variants, gold queries
that run and return rows, determinism."""

import json
import random
import sqlite3
from collections import Counter

from sltk.sql.data import SPLITS, make_benchmark, mention
from sltk.sql.sqlparse import hardness


def test_mention_variants_stay_unambiguous():
    rng = random.Random(0)
    vals = ["New York", "New Jersey", "Nevada", "Texas"]
    for _ in range(200):
        s, kind = mention("New York", vals, rng)
        assert kind in ("exact", "case", "prefix", "initials")
        assert {"exact": "New York", "initials": "NY"}.get(kind, s) == s
        if kind == "prefix":  # "New" would name two values: never used
            assert not s.lower().startswith("new")
    kinds = Counter(mention("Giraffe", ["Giraffe", "Tiger"], rng, plural_ok=True)[1] for _ in range(300))
    assert set(kinds) == {"exact", "case", "prefix", "initials", "plural"}


def test_make_benchmark(tmp_path):
    counts = make_benchmark(tmp_path / "b", {"train": 25, "dev": 5, "test": 20}, seed=3)
    assert counts == {"train": 25 * len(SPLITS["train"]), "dev": 5 * len(SPLITS["dev"]),
                      "test": 20 * len(SPLITS["test"])}
    ex = {s: [json.loads(l) for l in (tmp_path / "b" / f"{s}.jsonl").read_text().splitlines()] for s in SPLITS}
    assert not {e["db"] for e in ex["train"]} & {e["db"] for e in ex["test"] + ex["dev"]}
    assert {e["hardness"] for e in ex["train"]} == {"easy", "medium", "hard", "extra"}
    kinds = Counter(k for e in ex["train"] for k in e["mentions"])
    assert kinds["prefix"] and kinds["initials"] and kinds["case"]
    for e in ex["test"][:40]:
        con = sqlite3.connect(tmp_path / "b" / "databases" / e["db"] / f"{e['db']}.sqlite")
        assert con.execute(e["query"]).fetchall(), e
        assert hardness(e["query"]) == e["hardness"]
    # the surface query differs from the gold one only in the values the question spells differently
    diff = [e for e in ex["train"] if e["surface_query"] != e["query"]]
    assert diff and all(set(e["mentions"]) - {"exact"} for e in diff)
    # deterministic
    make_benchmark(tmp_path / "c", {"train": 25, "dev": 5, "test": 20}, seed=3)
    assert (tmp_path / "c" / "test.jsonl").read_text() == (tmp_path / "b" / "test.jsonl").read_text()
