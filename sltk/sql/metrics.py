"""Exact-set match (Spider's component match, values ignored), execution accuracy (result
sets compared in SQLite), per hardness level, and the oracle over N-best lists."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

from sltk.sql import db as dbmod
from sltk.sql.sqlparse import HARDNESS, ParseError, components, parse


def exact_match(pred: str, gold: str, schema: Optional[Dict[str, List[str]]] = None) -> bool:
    from sltk.sql.sqlparse import exact_match as em
    return em(pred, gold, schema)


def _norm(v):
    if isinstance(v, float):
        return round(v, 6)
    return v


def _ordered(sql: str) -> bool:
    try:
        tree = parse(sql)
    except ParseError:
        return False
    return tree.args.get("order") is not None


def execution_match(pred: str, gold: str, db_file, gold_rows=None) -> bool:
    """Whether ``pred`` returns the same rows as ``gold`` (in order when gold has ORDER BY,
    else as multisets). A prediction that fails to run is wrong."""
    if gold_rows is None:
        gold_rows = dbmod.execute(db_file, gold)
    try:
        rows = dbmod.execute(db_file, pred)
    except dbmod.ExecError:
        return False
    a = [tuple(_norm(x) for x in r) for r in rows]
    b = [tuple(_norm(x) for x in r) for r in gold_rows]
    if _ordered(gold):
        return a == b
    return Counter(a) == Counter(b)


def score_example(rec: dict, db_dir, k: Optional[int] = None) -> List[Dict[str, bool]]:
    """EM and EX of each of the first ``k`` candidates of a record (all when None)."""
    path = dbmod.db_path(db_dir, rec["db"])
    sch = dbmod.schema(str(path))
    gold = rec["query"]
    try:
        gold_rows = dbmod.execute(path, gold)
    except dbmod.ExecError as e:
        raise ValueError(f"gold query of {rec.get('id', '?')} fails: {e}") from None
    gold_comp = components(gold, sch)
    out = []
    for c in rec["candidates"][:k]:
        try:
            em = components(c["sql"], sch) == gold_comp
        except (ParseError, RecursionError):
            em = False
        out.append({"em": em, "ex": execution_match(c["sql"], gold, path, gold_rows)})
    return out


def evaluate(records: List[dict], db_dir) -> dict:
    """{"all": {...}, "easy": {...}, ...}: n, em, ex (top-1), oracle_em, oracle_ex (any of
    the list), as fractions."""
    acc: Dict[str, Counter] = {}
    for rec in records:
        if "query" not in rec:
            raise ValueError(f"record {rec.get('id', '?')} has no gold 'query' to score against")
        sc = score_example(rec, db_dir)
        top = sc[0] if sc else {"em": False, "ex": False}
        for key in ("all", rec.get("hardness") or "unknown"):
            c = acc.setdefault(key, Counter())
            c["n"] += 1
            c["em"] += top["em"]
            c["ex"] += top["ex"]
            c["oracle_em"] += any(s["em"] for s in sc)
            c["oracle_ex"] += any(s["ex"] for s in sc)
    out = {}
    for key in ["all"] + [h for h in HARDNESS if h in acc] + sorted(k for k in acc if k not in HARDNESS + ("all",)):
        c = acc[key]
        out[key] = {"n": c["n"], **{m: c[m] / c["n"] for m in ("em", "ex", "oracle_em", "oracle_ex")}}
    return out
