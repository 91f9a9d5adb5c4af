#!/usr/bin/env python3
"""The sql/rerank1 recipe's tables from the metrics.json files of `sql-rerank score` (top-1 and
the N-best oracle) and `sql-rerank rerank` (each reranker configuration): EM and EX overall and
per hardness level, the plan model's accuracy, and the gain of plan + linking reranking as the
plan's accuracy grows (plan checkpoints at increasing steps, and a noised oracle plan)."""

import argparse
import json
import re
from pathlib import Path

from sltk.sql.sqlparse import PLAN_FIELDS
from sltk.utils.io import atomic_open

SYSTEMS = [("top1", "top-1 (generator)"), ("plan", "plan reranking"), ("link", "schema/value linking"),
           ("exec", "executability"), ("plan_link", "plan + linking"), ("all", "plan + linking + executability")]
LEVELS = ["easy", "medium", "hard", "extra"]


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def delta(x, base):
    return "" if x is None or base is None else f" ({100 * (x - base):+.1f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None, help="The benchmark directory: adds a table for the test questions "
                    "whose values are spelled as stored (as most of Spider's are)")
    a = ap.parse_args()
    exp = Path(a.exp)
    runs = {}
    top = exp / "top1" / "metrics.json"
    if top.is_file():
        runs["top1"] = json.loads(top.read_text())
    for p in sorted((exp / "rerank").glob("*/metrics.json")):
        runs[p.parent.name] = json.loads(p.read_text())
    if "top1" not in runs:
        raise SystemExit(f"{top} is missing: run stage 2 first")
    base = runs["top1"]["metrics"]
    n = base["all"]["n"]
    out = [f"## {exp}", "", f"Unseen-database test set, {n} questions; EM = exact-set match (components, values "
           "ignored), EX = execution accuracy (%); change against top-1 in brackets.", "",
           "| system | EM | EX |", "|---|---:|---:|"]
    for key, label in SYSTEMS:
        if key in runs:
            m = runs[key]["metrics"]["all"]
            out.append(f"| {label} | {pct(m['em'])}{delta(m['em'], base['all']['em'])} | "
                       f"{pct(m['ex'])}{delta(m['ex'], base['all']['ex'])} |")
    out.append(f"| oracle over the {'N'}-best list | {pct(base['all']['oracle_em'])} | {pct(base['all']['oracle_ex'])} |")
    if "link" in runs:
        m = runs["link"]["metrics"]["all"]
        out.append(f"| oracle over the repaired N-best list | {pct(m['oracle_em'])} | {pct(m['oracle_ex'])} |")
    out += ["", "### Per hardness level (EM / EX)", "",
            "| system | " + " | ".join(f"{h} (n={base[h]['n']})" for h in LEVELS if h in base) + " |",
            "|---|" + "---:|" * sum(h in base for h in LEVELS)]
    for key, label in SYSTEMS:
        if key in runs:
            m = runs[key]["metrics"]
            out.append(f"| {label} | " + " | ".join(f"{pct(m[h]['em'])} / {pct(m[h]['ex'])}" for h in LEVELS
                                                    if h in base) + " |")
    out.append("| oracle | " + " | ".join(f"{pct(base[h]['oracle_em'])} / {pct(base[h]['oracle_ex'])}"
                                         for h in LEVELS if h in base) + " |")
    if a.data:
        from sltk.sql.metrics import evaluate
        test = {}
        for line in (Path(a.data) / "test.jsonl").read_text().splitlines():
            e = json.loads(line)
            test[e["id"]] = e
        exact = {i for i, e in test.items() if all(k == "exact" for k in e.get("mentions", []))}
        files = {"top1": exp / "nbest_test.jsonl", **{k: exp / "rerank" / k / "reranked.jsonl" for k, _ in SYSTEMS[1:]}}
        rows, sub0 = [], None
        for key, label in SYSTEMS:
            if files[key].is_file():
                recs = [json.loads(l) for l in files[key].read_text().splitlines()]
                m = evaluate([r for r in recs if r["id"] in exact], Path(a.data) / "databases")["all"]
                sub0 = sub0 or m
                rows.append(f"| {label} | {pct(m['em'])}{delta(m['em'], sub0['em'])} | "
                            f"{pct(m['ex'])}{delta(m['ex'], sub0['ex'])} |")
        if rows:
            out += ["", f"### Test questions whose values are spelled as stored (n={sub0['n']}, values as in "
                    "most of Spider)", "", "| system | EM | EX |", "|---|---:|---:|", *rows,
                    f"| oracle over the N-best list | {pct(sub0['oracle_em'])} | {pct(sub0['oracle_ex'])} |"]
    pa = runs.get("plan", {}).get("plan_accuracy")
    if pa:
        out += ["", "### Plan model accuracy on the test questions (%)", "",
                "| " + " | ".join(PLAN_FIELDS) + " | all fields |", "|" + "---:|" * (len(PLAN_FIELDS) + 1),
                "| " + " | ".join(pct(pa[f]) for f in PLAN_FIELDS) + f" | {pct(pa['all'])} |"]
    curve = []
    for key, r in runs.items():
        mo = re.fullmatch(r"plan_link_step(\d+)", key)
        mo2 = re.fullmatch(r"plan_link_oracle([0-9.]+)", key)
        if mo:
            curve.append((0, int(mo.group(1)), f"plan model, step {mo.group(1)}", r))
        elif key == "plan_link":
            curve.append((0, 10 ** 9, "plan model, final", r))
        elif mo2:
            curve.append((1, float(mo2.group(1)), f"noised oracle plan, {float(mo2.group(1)):g} per field", r))
    if curve:
        out += ["", "### Gain of plan + linking reranking against plan accuracy", "",
                "| plan | plan accuracy per field (mean) | all fields right | EM | EX |", "|---|---:|---:|---:|---:|"]
        for _, _, label, r in sorted(curve, key=lambda c: (c[0], c[1])):
            acc = r.get("plan_accuracy") or {}
            mean = sum(acc[f] for f in PLAN_FIELDS) / len(PLAN_FIELDS) if acc else None
            m = r["metrics"]["all"]
            out.append(f"| {label} | {pct(mean)} | {pct(acc.get('all'))} | {pct(m['em'])}{delta(m['em'], base['all']['em'])}"
                       f" | {pct(m['ex'])}{delta(m['ex'], base['all']['ex'])} |")
        if "link" in runs:
            m = runs["link"]["metrics"]["all"]
            out.append(f"| none (linking alone) | - | - | {pct(m['em'])}{delta(m['em'], base['all']['em'])} | "
                       f"{pct(m['ex'])}{delta(m['ex'], base['all']['ex'])} |")
    with atomic_open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
