"""sql-rerank: make-data, train-generator, nbest, train-plan, rerank and score on tiny data, and
clear errors for bad input."""

import json
import subprocess

from sltk.bin.sql_rerank import main


def ok(args):
    assert main(args, standalone_mode=False) in (0, None), args


def test_pipeline(tmp_path, capsys):
    d, e = tmp_path / "data", tmp_path / "exp"
    ok(["make-data", "--train-per-db", "12", "--dev-per-db", "2", "--test-per-db", "4", str(d)])
    dbs = d / "databases"
    assert len(list(dbs.glob("*/*.sqlite"))) == 11 and len((d / "test.jsonl").read_text().splitlines()) == 12
    ok(["train-generator", "--epochs", "1", "--hidden", "16", "--emb-dim", "16", str(d / "train.jsonl"), str(dbs),
        str(e / "gen")])
    assert (e / "gen" / "final.pt").is_file() and (e / "gen" / "epoch-1.pt").is_file()
    ok(["nbest", "--beam", "3", "--nbest", "3", str(e / "gen" / "final.pt"), str(d / "test.jsonl"), str(dbs),
        str(e / "nbest.jsonl")])
    recs = [json.loads(l) for l in (e / "nbest.jsonl").read_text().splitlines()]
    assert len(recs) == 12 and all(1 <= len(r["candidates"]) <= 3 and "query" in r for r in recs)
    ok(["train-plan", "--steps", "6", "--save-steps", "2,4", str(d / "train.jsonl"), str(dbs), str(e / "plan")])
    assert {p.name for p in (e / "plan").glob("*.pt")} == {"step-2.pt", "step-4.pt", "step-6.pt", "final.pt"}
    capsys.readouterr()
    ok(["score", "-o", str(e / "top1.json"), str(e / "nbest.jsonl"), str(dbs)])
    top1 = json.loads((e / "top1.json").read_text())["metrics"]
    assert top1["all"]["n"] == 12 and capsys.readouterr().out.startswith("all      n=   12")
    # with every reranker off the list is unchanged: the same metrics as score
    ok(["rerank", "--no-plan", "--no-link", "--no-exec", str(e / "nbest.jsonl"), str(dbs), str(e / "off")])
    assert json.loads((e / "off" / "metrics.json").read_text())["metrics"] == top1
    ok(["rerank", "--plan-model", str(e / "plan" / "final.pt"), str(e / "nbest.jsonl"), str(dbs), str(e / "all")])
    m = json.loads((e / "all" / "metrics.json").read_text())
    assert set(m["plan_accuracy"]) >= {"where", "join", "setop", "all"} and m["metrics"]["all"]["n"] == 12
    out = [json.loads(l) for l in (e / "all" / "reranked.jsonl").read_text().splitlines()]
    for r in out:
        totals = [c["total"] for c in r["candidates"]]
        assert totals == sorted(totals, reverse=True) and all(set(c["terms"]) == {"gen", "plan", "link", "exec"}
                                                              for c in r["candidates"])
    ok(["rerank", "--plan-oracle-acc", "1.0", "--no-link", str(e / "nbest.jsonl"), str(dbs), str(e / "oracle")])
    assert json.loads((e / "oracle" / "metrics.json").read_text())["plan_accuracy"]["all"] == 1.0


def run(args, env):
    return subprocess.run(["sql-rerank", *args], capture_output=True, text=True, env=env, timeout=120)


def test_bad_input(tmp_path, run_env):
    dbs = tmp_path / "dbs"
    (dbs / "shop").mkdir(parents=True)
    import sqlite3
    con = sqlite3.connect(dbs / "shop" / "shop.sqlite")
    con.execute("CREATE TABLE item (id INTEGER, name TEXT)")
    con.execute("INSERT INTO item VALUES (1, 'Pen')")
    con.commit()
    con.close()
    nb = tmp_path / "nbest.jsonl"
    nb.write_text(json.dumps({"id": "q1", "db": "shop", "question": "items", "query": "SELECT name FROM item",
                              "candidates": [{"sql": "SELECT name FROM", "score": -1.0}]}) + "\n" +
                  json.dumps({"id": "q2", "db": "garage", "question": "cars", "candidates": []}) + "\n")
    r = run(["rerank", "--no-plan", str(nb), str(dbs), str(tmp_path / "out")], run_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"sql-rerank: error: {nb}: record 2 (q2): database 'garage' does not exist (no {dbs / 'garage' / 'garage.sqlite'})")
    assert not (tmp_path / "out" / "reranked.jsonl").exists()
    # a malformed candidate is scored as wrong, not a crash
    nb.write_text(nb.read_text().splitlines()[0] + "\n")
    r = run(["rerank", "--no-plan", str(nb), str(dbs), str(tmp_path / "out")], run_env)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]["all"]
    assert (m["em"], m["ex"]) == (0.0, 0.0)
    # a config file supplies option defaults; the command line wins; an unknown key is an error
    cfg = tmp_path / "rerank.yaml"
    cfg.write_text("plan: false\nexec: false\nw-link: 3.0\n")
    r = run(["rerank", "--config", str(cfg), "--w-link", "4", str(nb), str(dbs), str(tmp_path / "o3")], run_env)
    assert r.returncode == 0, r.stderr
    c = json.loads((tmp_path / "o3" / "metrics.json").read_text())["config"]
    assert (c["plan"], c["link"], c["exec"], c["w_link"]) == (False, True, False, 4.0)
    cfg.write_text("exec: false\nbogus: 1\n")
    r = run(["rerank", "--config", str(cfg), str(nb), str(dbs), str(tmp_path / "o4")], run_env)
    assert r.returncode == 2 and f"unknown key 'bogus' in config file {cfg}" in r.stderr.strip().splitlines()[-1]
    for args, msg in [
        (["rerank", str(nb), str(dbs), str(tmp_path / "o2")],
         "sql-rerank: error: the plan reranker needs exactly one of --plan-model and --plan-oracle-acc (or --no-plan)"),
        (["rerank", "--plan-model", str(tmp_path / "none.pt"), str(nb), str(dbs), str(tmp_path / "o2")],
         f"sql-rerank: error: plan model {tmp_path / 'none.pt'} does not exist"),
        (["score", str(tmp_path / "missing.jsonl"), str(dbs)], f"sql-rerank: error: {tmp_path / 'missing.jsonl'} does not exist"),
        (["rerank", "--no-such-option", str(nb), str(dbs), str(tmp_path / "o2")],
         "sql-rerank: error: No such option '--no-such-option'."),
        (["train-plan", "--save-steps", "a,b", str(nb), str(dbs), str(tmp_path / "p")],
         "sql-rerank: error: --save-steps must be comma-separated integers, not 'a,b'"),
    ]:
        r = run(args, run_env)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1] == msg
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = run(["score", str(bad), str(dbs)], run_env)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(f"sql-rerank: error: {bad}:1: not valid JSON")
    r = run(["--help"], run_env)
    assert r.returncode == 0 and "rerank" in r.stdout and "train-plan" in r.stdout and "Examples:" in r.stdout
    r = run(["rerank", "--help"], run_env)
    assert r.returncode == 0 and "--plan / --no-plan" in r.stdout and "[default: 2.0]" in r.stdout
