"""Reranking of a text-to-SQL N-best list.

Each candidate ``c`` of a question ``q`` gets the score

    s(c) = g(c) + w_plan * P(c) + w_link * L(c) + X(c)

* g(c): the generator's log-probability (the N-best list's ``score``);
* P(c) (the plan reranker, coherence): sum over the plan fields f (where, group, having,
  order, limit, join, nested, setop) of log p_f(plan_f(c) | q) - max_v log p_f(v | q), i.e.
  0 when the candidate's plan is the plan model's best guess and negative when it disagrees,
  by how sure the model is; a candidate that does not parse gets the worst value of every field;
* L(c) (the linking reranker, correctness): each string literal is linked to a database
  value through the question (:mod:`sltk.sql.linking`) and replaced by it (the repair, so
  the reranked list holds repaired SQL); an unlinked literal costs 1, a repaired one 0.1,
  one that is already a value of its column 0;
* X(c) (executability): -w_error when SQLite rejects the (repaired) candidate or it runs
  past the time limit, -w_empty when it returns no row (the questions ask for rows).

Each term can be switched off (then it is 0 and, for linking, no repair). The candidates are
sorted by s(c), stable, so with everything off the order is the generator's.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from sltk.sql import db as dbmod
from sltk.sql.linking import link_candidate
from sltk.sql.sqlparse import PLAN_FIELDS, PLAN_SIZES, ParseError, plan as sql_plan


@dataclass
class RerankConfig:
    plan: bool = True
    link: bool = True
    exec: bool = True
    w_plan: float = 1.0
    w_link: float = 2.0
    w_error: float = 10.0
    w_empty: float = 2.0
    repaired_cost: float = 0.1
    unlinked_cost: float = 1.0


def plan_score(sql: str, plan_lp: Dict[str, List[float]]) -> float:
    try:
        p = sql_plan(sql)
    except (ParseError, RecursionError, Exception):  # noqa: BLE001 - any unparsable candidate
        return sum(min(plan_lp[f]) - max(plan_lp[f]) for f in PLAN_FIELDS)
    return sum(plan_lp[f][p[f]] - max(plan_lp[f]) for f in PLAN_FIELDS)


def rerank_record(rec: dict, db_file, cfg: RerankConfig, plan_lp: Optional[Dict[str, List[float]]] = None) -> dict:
    """A copy of ``rec`` whose candidates are (repaired and) sorted by the combined score;
    each candidate keeps its generator score and gets its terms."""
    out = []
    for i, c in enumerate(rec.get("candidates", [])):
        sql = c["sql"]
        terms = {"gen": float(c["score"]), "plan": 0.0, "link": 0.0, "exec": 0.0}
        new = {"sql": sql, "score": c["score"], "rank_in": i}
        if cfg.plan and plan_lp is not None:
            terms["plan"] = plan_score(sql, plan_lp)
        if cfg.link:
            fixed, links = link_candidate(sql, rec["question"], db_file)
            cost = 0.0
            for ln in links:
                if ln.value is None:
                    cost += cfg.unlinked_cost
                elif ln.value != ln.literal:
                    cost += cfg.repaired_cost
            terms["link"] = -cost
            if fixed != sql:
                new["original_sql"] = sql
                new["sql"] = sql = fixed
            new["links"] = [asdict(ln) for ln in links]
        if cfg.exec:
            try:
                rows = dbmod.execute(db_file, sql)
                if not rows:
                    terms["exec"] = -cfg.w_empty
            except dbmod.ExecError as e:
                terms["exec"] = -cfg.w_error
                new["error"] = str(e)[:200]
        total = terms["gen"] + cfg.w_plan * terms["plan"] + cfg.w_link * terms["link"] + terms["exec"]
        new["terms"] = {k: round(v, 5) for k, v in terms.items()}
        new["total"] = round(total, 5)
        out.append(new)
    out.sort(key=lambda c: -c["total"])
    res = dict(rec)
    res["candidates"] = out
    return res


def accuracy(preds: List[Dict[str, List[float]]], golds: List[Dict[str, int]]) -> Dict[str, float]:
    """Per-field accuracy and ``all`` (every field right) of argmax predictions."""
    out = {}
    for f in PLAN_FIELDS:
        out[f] = sum(max(range(len(p[f])), key=p[f].__getitem__) == g[f] for p, g in zip(preds, golds)) / max(1, len(golds))
    out["all"] = sum(all(max(range(len(p[f])), key=p[f].__getitem__) == g[f] for f in PLAN_FIELDS)
                     for p, g in zip(preds, golds)) / max(1, len(golds))
    return out


def noised_oracle(golds: List[Dict[str, int]], acc: float, seed: int = 0, confidence: float = 0.9
                  ) -> List[Dict[str, List[float]]]:
    """A simulated plan model: each field is right with probability ``acc`` (else a random
    wrong value), and puts probability ``confidence`` on its answer."""
    rng = random.Random(seed)
    out = []
    for g in golds:
        d = {}
        for f in PLAN_FIELDS:
            k = PLAN_SIZES[f]
            v = g[f] if rng.random() < acc else rng.choice([x for x in range(k) if x != g[f]])
            rest = (1 - confidence) / (k - 1)
            d[f] = [math.log(confidence if x == v else rest) for x in range(k)]
        out.append(d)
    return out
