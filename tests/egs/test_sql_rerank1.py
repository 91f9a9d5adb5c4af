"""The sql/rerank1 recipe end to end at --size tiny (a copy in a tmp dir): the benchmark with
unseen test databases, the generator's N-best lists, the plan model with checkpoints, every
reranker configuration, the tables; resume; bad options."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_sql_recipe_end_to_end(tmp_path, run_env):
    egs = tmp_path / "egs"
    shutil.copytree(ROOT / "egs" / "utils", egs / "utils")
    shutil.copytree(ROOT / "egs" / "assistant" / "asr1", egs / "assistant" / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))   # path.sh and cmd.sh live there
    shutil.copytree(ROOT / "egs" / "sql" / "rerank1", egs / "sql" / "rerank1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp", ".run_snapshot*", "bg_*"))
    env = dict(run_env, SLTK_ROOT=str(ROOT))
    run = egs / "sql" / "rerank1" / "run.sh"
    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, data = root / "exp" / "tiny", root / "data" / "tiny"

    ex = {s: [json.loads(l) for l in (data / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "test")}
    assert not {e["db"] for e in ex["train"]} & {e["db"] for e in ex["test"]}   # unseen test databases
    nbest = [json.loads(l) for l in (exp / "nbest_test.jsonl").read_text().splitlines()]
    assert len(nbest) == len(ex["test"]) and all(1 <= len(r["candidates"]) <= 10 for r in nbest)
    top1 = json.loads((exp / "top1" / "metrics.json").read_text())["metrics"]
    assert top1["all"]["n"] == len(ex["test"]) and top1["all"]["oracle_em"] >= top1["all"]["em"]
    for name in ("plan", "link", "exec", "plan_link", "all", "plan_link_step10", "plan_link_oracle0.5"):
        m = json.loads((exp / "rerank" / name / "metrics.json").read_text())
        assert m["metrics"]["all"]["n"] == len(ex["test"]), name
        assert (m["plan_accuracy"] is None) == (name in ("link", "exec")), name
    md = (exp / "results.md").read_text()
    for s in ("| top-1 (generator) |", "| plan + linking |", "| oracle over the N-best list |", "### Per hardness",
              "### Plan model accuracy", "| plan model, step 10 |", "| noised oracle plan, 0.5 per field |",
              "### Test questions whose values are spelled as stored"):
        assert s in md, s

    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "Stage" not in r.stderr, r.stderr[-2000:]
    for bad, opt in ((["--size", "huge"], "--size"), (["--oracle-accs", "1.5"], "--oracle-accs"),
                     (["--plan-save-steps", "999"], "--plan-save-steps"), (["--no-such", "1"], "no-such")):
        r = subprocess.run([str(run), "--size", "tiny", *bad], capture_output=True, text=True, env=env)
        assert r.returncode != 0 and opt in r.stderr, (bad, r.stderr[-500:])
