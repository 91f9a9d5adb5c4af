"""sql-rerank: text-to-SQL N-best reranking with a query-plan model and schema/value linking
(see sltk.sql)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from sltk.utils.cli import program_group, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open

log = logging.getLogger("sltk")


def _threads():
    import torch
    torch.set_num_threads(1)


def _read_jsonl(path, what="N-best file"):
    from sltk.sql.data import read_examples
    return read_examples(path)


def _check_dbs(records, db_dir, path):
    from sltk.sql import db as dbmod
    if not Path(db_dir).is_dir():
        raise UserError(f"database directory {db_dir} does not exist")
    for i, r in enumerate(records, 1):
        try:
            dbmod.db_path(db_dir, r["db"])
        except UserError as e:
            raise UserError(f"{path}: record {i} ({r.get('id', '?')}): {e}") from None


def _write_json(obj, path):
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def _print_metrics(m):
    for k, v in m.items():
        click.echo(f"{k:8s} n={v['n']:5d}  EM {100 * v['em']:6.2f}  EX {100 * v['ex']:6.2f}  "
                   f"oracle EM {100 * v['oracle_em']:6.2f}  oracle EX {100 * v['oracle_ex']:6.2f}")


@program_group(name="sql-rerank", examples=[
    "sql-rerank make-data data/full",
    "sql-rerank train-generator data/full/train.jsonl data/full/databases exp/gen",
    "sql-rerank nbest exp/gen/final.pt data/full/test.jsonl data/full/databases exp/nbest_test.jsonl",
    "sql-rerank train-plan data/full/train.jsonl data/full/databases exp/plan",
    "sql-rerank rerank --plan-model exp/plan/final.pt exp/nbest_test.jsonl data/full/databases exp/both",
])
def main(verbose):
    """Text-to-SQL: benchmark, N-best generator, query-plan and linking rerankers, EM/EX scoring."""


@main.command(name="make-data", examples=["sql-rerank make-data data/full",
                                          "sql-rerank make-data --train-per-db 40 --test-per-db 20 data/tiny"])
@click.argument("out_dir")
@click.option("--train-per-db", type=click.IntRange(min=1), default=500, help="Questions per training database.")
@click.option("--dev-per-db", type=click.IntRange(min=1), default=150, help="Questions per dev database.")
@click.option("--test-per-db", type=click.IntRange(min=1), default=250, help="Questions per test database.")
@click.option("--seed", type=int, default=0, help="Random seed (rows and questions depend only on it).")
def make_data(out_dir, train_per_db, dev_per_db, test_per_db, seed):
    """SQLite databases (OUT_DIR/databases/<db>/<db>.sqlite) and train/dev/test.jsonl; the dev
    and test databases are never seen in training."""
    from sltk.sql.data import make_benchmark
    counts = make_benchmark(out_dir, {"train": train_per_db, "dev": dev_per_db, "test": test_per_db}, seed)
    total = sum(counts.values())
    summary(total, total, what="questions", extra=", ".join(f"{k} {v}" for k, v in counts.items()))


@main.command(name="train-generator",
              examples=["sql-rerank train-generator --epochs 12 data/full/train.jsonl data/full/databases exp/gen"])
@click.argument("train_jsonl")
@click.argument("db_dir")
@click.argument("out_dir")
@click.option("--epochs", type=click.IntRange(min=1), default=12, help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Questions per batch.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, help="Adam learning rate.")
@click.option("--emb-dim", type=click.IntRange(min=4), default=64, help="Token embedding size.")
@click.option("--hidden", type=click.IntRange(min=4), default=64, help="Encoder GRU size per direction.")
@click.option("--seed", type=int, default=0, help="Random seed.")
@click.option("--max-examples", type=click.IntRange(min=0), default=0, help="Use only the first N (0: all).")
def train_generator(train_jsonl, db_dir, out_dir, epochs, batch_size, lr, emb_dim, hidden, seed, max_examples):
    """Train the copy-attention seq2seq generator; resumes from OUT_DIR/epoch-N.pt."""
    from sltk.sql.generator import GenConfig, train
    _threads()
    if not Path(db_dir).is_dir():
        raise UserError(f"database directory {db_dir} does not exist")
    path = train(train_jsonl, db_dir, out_dir, epochs, batch_size, lr, GenConfig(emb_dim=emb_dim, hidden=hidden),
                 seed, max_examples)
    summary(epochs, epochs, what="epochs", extra=f"model {path}")


@main.command(examples=["sql-rerank nbest exp/gen/final.pt data/full/test.jsonl data/full/databases exp/nbest.jsonl"])
@click.argument("model")
@click.argument("examples_jsonl")
@click.argument("db_dir")
@click.argument("out_jsonl")
@click.option("--beam", type=click.IntRange(min=1), default=10, help="Beam size.")
@click.option("--nbest", "n", type=click.IntRange(min=1), default=10, help="Candidates kept per question.")
def nbest(model, examples_jsonl, db_dir, out_jsonl, beam, n):
    """Beam search: OUT_JSONL with the N best SQL candidates and scores of each question."""
    from sltk.sql.generator import nbest as run
    _threads()
    exs = _read_jsonl(examples_jsonl)
    _check_dbs(exs, db_dir, examples_jsonl)
    done = run(model, exs, db_dir, out_jsonl, beam, n)
    summary(done, len(exs), what="questions", extra=f"N-best lists in {out_jsonl}")


@main.command(name="train-plan",
              examples=["sql-rerank train-plan --steps 800 --save-steps 10,30,100,300 data/full/train.jsonl "
                        "data/full/databases exp/plan"])
@click.argument("train_jsonl")
@click.argument("db_dir")
@click.argument("out_dir")
@click.option("--steps", type=click.IntRange(min=1), default=800, help="Training steps.")
@click.option("--save-steps", default="", help="Comma-separated steps that also get a step-N.pt checkpoint.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Questions per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, help="Adam learning rate.")
@click.option("--seed", type=int, default=0, help="Random seed.")
def train_plan(train_jsonl, db_dir, out_dir, steps, save_steps, batch_size, lr, seed):
    """Train the query-plan model (which clauses the SQL has, from question + schema)."""
    from sltk.sql.plan import train
    _threads()
    try:
        ss = [int(s) for s in save_steps.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--save-steps must be comma-separated integers, not {save_steps!r}") from None
    exs = _read_jsonl(train_jsonl)
    _check_dbs(exs, db_dir, train_jsonl)
    path = train(exs, db_dir, out_dir, steps, ss, batch_size, lr, seed)
    summary(steps, steps, what="steps", extra=f"model {path}")


@main.command(examples=[
    "sql-rerank rerank --plan-model exp/plan/final.pt exp/nbest_test.jsonl data/full/databases exp/both",
    "sql-rerank rerank --no-plan --no-exec exp/nbest_test.jsonl data/full/databases exp/link_only",
    "sql-rerank rerank --plan-oracle-acc 0.9 --no-link exp/nbest_test.jsonl data/full/databases exp/oracle90"])
@click.argument("nbest_jsonl")
@click.argument("db_dir")
@click.argument("out_dir")
@click.option("--plan/--no-plan", default=True, help="The query-plan reranker.")
@click.option("--link/--no-link", default=True, help="The schema/value linking reranker (with repair).")
@click.option("--exec/--no-exec", "exec", default=True, help="The executability reranker.")
@click.option("--plan-model", default=None, help="Plan model checkpoint (train-plan).")
@click.option("--plan-oracle-acc", type=click.FloatRange(0, 1), default=None,
              help="Instead of a plan model: the gold plan with each field right with this probability.")
@click.option("--w-plan", type=float, default=1.0, help="Weight of the plan term.")
@click.option("--w-link", type=float, default=2.0, help="Weight of the linking term.")
@click.option("--w-error", type=float, default=10.0, help="Cost of a candidate SQLite rejects.")
@click.option("--w-empty", type=float, default=2.0, help="Cost of a candidate that returns no row.")
@click.option("--seed", type=int, default=0, help="Seed of the noised oracle plan.")
def rerank(nbest_jsonl, db_dir, out_dir, plan, link, exec, plan_model, plan_oracle_acc,  # noqa: A002 (--exec)
           w_plan, w_link, w_error, w_empty, seed):
    """Rerank NBEST_JSONL: OUT_DIR/reranked.jsonl, and OUT_DIR/metrics.json when the records have
    a gold query (EM, EX, oracle per hardness; plan-model accuracy).

    Each candidate scores generator log-prob + w_plan * plan agreement (<= 0) + w_link * linking
    (-1 per unlinked literal, -0.1 per repaired one; literals are replaced by their linked
    database values) - w_error (SQLite error) - w_empty (no row); see sltk.sql.rerank."""
    from sltk.sql import db as dbmod
    from sltk.sql import metrics
    from sltk.sql.rerank import RerankConfig, accuracy, noised_oracle, rerank_record
    from sltk.sql.sqlparse import ParseError, plan as sql_plan
    from sltk.utils.progress import progress
    recs = _read_jsonl(nbest_jsonl)
    for i, r in enumerate(recs, 1):
        if not isinstance(r.get("candidates"), list) or not all(
                isinstance(c, dict) and isinstance(c.get("sql"), str) and isinstance(c.get("score"), (int, float))
                for c in r["candidates"]):
            raise UserError(f"{nbest_jsonl}: record {i}: 'candidates' must be a list of {{\"sql\", \"score\"}}")
    _check_dbs(recs, db_dir, nbest_jsonl)
    if plan and (plan_model is None) == (plan_oracle_acc is None):
        raise UserError("the plan reranker needs exactly one of --plan-model and --plan-oracle-acc (or --no-plan)")
    has_gold = all("query" in r for r in recs)
    plan_lps = [None] * len(recs)
    plan_acc = None
    golds = None
    if has_gold:
        try:
            golds = [sql_plan(r["query"]) for r in recs]
        except ParseError as e:
            raise UserError(f"{nbest_jsonl}: a gold query does not parse: {e}") from None
    if plan:
        if plan_model is not None:
            from sltk.sql import plan as planmod
            _threads()
            m = planmod.load(plan_model)
            plan_lps = planmod.predict(m, [(r["question"], dbmod.schema(str(dbmod.db_path(db_dir, r["db"]))))
                                           for r in recs])
        else:
            if golds is None:
                raise UserError("--plan-oracle-acc needs the gold 'query' of every record")
            plan_lps = noised_oracle(golds, plan_oracle_acc, seed)
        if golds is not None:
            plan_acc = accuracy(plan_lps, golds)
    cfg = RerankConfig(plan=plan, link=link, exec=exec, w_plan=w_plan, w_link=w_link, w_error=w_error,
                       w_empty=w_empty)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = []
    changed = 0
    for r, lp in progress(list(zip(recs, plan_lps)), desc="rerank", unit="question"):
        rr = rerank_record(r, dbmod.db_path(db_dir, r["db"]), cfg, lp)
        if rr["candidates"] and r["candidates"] and rr["candidates"][0]["sql"] != r["candidates"][0]["sql"]:
            changed += 1
        res.append(rr)
    with atomic_open(out / "reranked.jsonl", "w", encoding="utf-8") as f:
        for rr in res:
            f.write(json.dumps(rr) + "\n")
    extra = f"top-1 changed for {changed}; {out / 'reranked.jsonl'}"
    if has_gold:
        m = metrics.evaluate(res, db_dir)
        _write_json({"config": {**cfg.__dict__, "plan_model": plan_model, "plan_oracle_acc": plan_oracle_acc},
                     "plan_accuracy": plan_acc, "metrics": m, "nbest": str(nbest_jsonl)}, out / "metrics.json")
        _print_metrics(m)
        extra += f"; EM {100 * m['all']['em']:.2f} EX {100 * m['all']['ex']:.2f}"
        if plan_acc:
            extra += f"; plan accuracy (all fields) {100 * plan_acc['all']:.2f}"
    summary(len(res), len(recs), what="questions", extra=extra)


@main.command(examples=["sql-rerank score exp/nbest_test.jsonl data/full/databases -o exp/top1.json"])
@click.argument("nbest_jsonl")
@click.argument("db_dir")
@click.option("-o", "--output", default=None, help="Also write the metrics as JSON here.")
def score(nbest_jsonl, db_dir, output):
    """EM and EX of the first candidate, and of the best in each list (oracle), per hardness."""
    from sltk.sql import metrics
    recs = _read_jsonl(nbest_jsonl)
    _check_dbs(recs, db_dir, nbest_jsonl)
    for i, r in enumerate(recs, 1):
        if "query" not in r or not isinstance(r.get("candidates"), list):
            raise UserError(f"{nbest_jsonl}: record {i} needs 'query' and 'candidates' to be scored")
    try:
        m = metrics.evaluate(recs, db_dir)
    except ValueError as e:
        raise UserError(f"{nbest_jsonl}: {e}") from None
    if output:
        _write_json({"metrics": m, "nbest": str(nbest_jsonl)}, output)
    _print_metrics(m)
    summary(len(recs), len(recs), what="questions",
            extra=f"EM {100 * m['all']['em']:.2f} EX {100 * m['all']['ex']:.2f}")
