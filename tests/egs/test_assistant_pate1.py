"""The assistant/pate1 recipe end to end at --size tiny, on asr1's tiny corpus (copies of both
recipes in a tmp dir): the split by speaker, teachers, PATE aggregation at each eps (GNMax,
Confident-GNMax) with privacy reports, students, DP-SGD at the same eps, decoding, tables, resume."""

import json
import subprocess

import pytest

EPS = (1, 8)   # the recipe's default is 1 2 4 8; two of them keep the test short (every run is a few processes)
MECHS = ("gnmax", "confident-gnmax")


def speakers(d):
    return {line.split()[1] for line in (d / "utt2spk").read_text().splitlines()}


def utts(d):
    return {line.split()[0] for line in (d / "utt2spk").read_text().splitlines()}


@pytest.mark.slow
def test_tiny_pate_recipe_end_to_end(tiny_asr1):
    egs, env, copy = tiny_asr1
    run = copy("pate1")
    eps_list = ["--eps-list", " ".join(map(str, EPS))]
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2", *eps_list], capture_output=True, text=True,
                       env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, data = root / "exp" / "tiny", root / "data" / "tiny"
    split = data / "split"

    # shards, public seed and queries are disjoint by speaker; the shards make up the private set
    shards = [split / f"shard{k}" for k in (1, 2, 3)]
    spk = [speakers(d) for d in shards]
    public = speakers(split / "public_seed") | speakers(split / "public_queries")
    for i in range(3):
        assert spk[i] and not spk[i] & public
        for j in range(i + 1, 3):
            assert not spk[i] & spk[j]
    assert set().union(*spk) == speakers(split / "private")
    assert set().union(*(utts(d) for d in shards)) == utts(split / "private")
    assert not utts(split / "public_seed") & utts(split / "public_queries")
    info = json.loads((split / "split.json").read_text())
    assert info["privacy_unit"].startswith("speaker")

    queries = utts(split / "public_queries")
    for m in MECHS:
        for e in EPS:
            d = data / "pate" / f"{m}_eps{e}"
            rep = json.loads((d / "privacy.json").read_text())
            assert rep["mechanism"] == m and rep["delta"] == 1e-5 and rep["num_teachers"] == 3
            assert rep["queries"] == len(queries) and 0 <= rep["answered"] <= rep["queries"]
            assert rep["order"] > 1 and rep["sigma"] > 0
            if m == "gnmax":  # every query answered: the calibrated eps is spent
                assert rep["answered"] == rep["queries"]
                assert abs(rep["eps"] - e) <= 0.005 * e, rep["eps"]
            else:  # calibrated for the worst case (all answered): at most the target
                assert rep["threshold_steps"] == rep["queries"] and rep["eps"] <= e * 1.0001
                assert rep["answered"] < rep["queries"] or abs(rep["eps"] - e) <= 0.005 * e
            # the pseudo-labelled data dir validates, and holds only answered public queries
            v = subprocess.run(["validate-data-dir", str(d)], capture_output=True, text=True, env=env)
            assert v.returncode == 0, v.stderr[-2000:]
            labelled = utts(d) if (d / "utt2spk").read_text().strip() else set()
            assert labelled <= queries and len(labelled) == rep["utterances"]["kept"]
            assert not speakers(d) & set().union(*spk)
    # a smaller eps means more noise
    for m in MECHS:
        sig = [json.loads((data / "pate" / f"{m}_eps{e}" / "privacy.json").read_text())["sigma"] for e in EPS]
        assert sig == sorted(sig, reverse=True)
    for e in EPS:
        dp = json.loads((exp / f"dpsgd_eps{e}" / "privacy.json").read_text())
        assert dp["unit"] == "speaker" and dp["num_units"] == 3 and dp["delta"] == 1e-5
        assert e * 0.99 <= dp["eps"] <= e * 1.0001

    # the oracle student's queries carry exactly the held-back transcripts
    from lhotse import CutSet
    oracle = {c.id: c.supervisions[0].text for c in CutSet.from_file(data / "pate" / "oracle" / "queries.jsonl.gz")}
    ref = dict(line.split(" ", 1) for line in (split / "public_queries" / "ref_text").read_text().splitlines())
    assert oracle == ref and set(oracle) == queries

    # the tables hold every arm, with numbers
    res = json.loads((exp / "results.json").read_text())
    want = {"public", "nonprivate", "teacher1", "teacher2", "teacher3", "student_seed_only", "student_oracle"}
    want |= {f"student_{m}_eps{e}" for m in MECHS for e in EPS} | {f"dpsgd_eps{e}" for e in EPS}
    assert set(res["models"]) == want
    assert all(isinstance(v["wer"], float) for v in res["models"].values())
    assert set(res["pate"]) == {f"{m}_eps{e}" for m in MECHS for e in EPS}
    assert res["teachers"]["agreement"]["queries"] == len(queries)
    md = (exp / "results.md").read_text()
    for row in ("| PATE student, GNMax |", "| PATE student, Confident-GNMax |", "| DP-SGD |", "| non-private",
                "| public-only", "| control: student training on the public seed alone", "| ceiling: student",
                "### PATE aggregations", "### DP-SGD runs", "Teacher agreement"):
        assert row in md, row

    # a rerun skips every stage; bad options are one clear error
    r = subprocess.run([str(run), "--size", "tiny", *eps_list], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stderr
    for bad, msg in ((["--eps-list", "0"], "--eps-list"), (["--num-teachers", "1"], "--num-teachers"),
                     (["--mechanisms", "lnmax2"], "--mechanisms"), (["--num-teacherz", "3"], "--num-teacherz")):
        r = subprocess.run([str(run), "--size", "tiny", *bad], capture_output=True, text=True, env=env)
        assert r.returncode != 0 and msg in r.stderr, (bad, r.stderr[-500:])

    # an aggregation that answers no query (threshold far above the number of teachers) gives an
    # empty label set: its student is trained on the public seed alone
    r = subprocess.run([str(run), "--size", "tiny", "--stage", "4", "--stop-stage", "5", "--mechanisms",
                        "confident-gnmax", "--eps-list", "50", "--threshold-frac", "100"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    d = data / "pate" / "confident-gnmax_eps50"
    assert json.loads((d / "privacy.json").read_text())["answered"] == 0
    assert not (d / "text").read_text().strip() and "answered no query" in r.stderr
    assert (exp / "student_confident-gnmax_eps50" / "final.pt").is_file()
    assert (d / "train.jsonl.gz").read_bytes() == (split / "public_seed" / "cuts.jsonl.gz").read_bytes()


@pytest.mark.slow
def test_tiny_pate_recipe_farfield_setting(tiny_asr1):
    """--setting farfield: a far-field corpus of its own (every utterance reverberated and noisy),
    split by speaker as in the other setting; every model descends from asr1's trained model."""
    egs, env, copy = tiny_asr1
    run = copy("pate1")
    opts = ["--size", "tiny", "--setting", "farfield", "--nj", "2", "--eps-list", "8", "--mechanisms", "gnmax"]
    r = subprocess.run([str(run), *opts], capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, data = root / "exp" / "tiny_farfield", root / "data" / "tiny_farfield"
    corpus = json.loads((data / "synth" / "corpus.json").read_text())
    cfg = corpus["config"]
    assert cfg["noise_prob"] == 1 and cfg["reverb_prob"] == 1 and cfg["seed"] == 1
    # its own corpus (no utterance of asr1's), asr1's lang directory
    asr1_utts = utts(egs / "assistant" / "asr1" / "data" / "tiny" / "synth" / "train")
    assert not utts(data / "synth" / "train") & asr1_utts
    assert (data / "lang_bpe_100").resolve() == (egs / "assistant" / "asr1" / "data" / "tiny" / "lang_bpe_100").resolve()
    split = data / "split"
    public = speakers(split / "public_seed") | speakers(split / "public_queries")
    assert public and not public & speakers(split / "private")
    # the public-only model fine-tunes asr1's model; the teachers fine-tune the public-only model
    log = (exp / "public" / "log" / "train.log").read_text()
    assert "fine-tuning from the weights of ../asr1/exp/tiny/model_tiny/avg-" in log
    assert "fine-tuning from the weights of exp/tiny_farfield/public/final.pt" in \
        (exp / "teacher1" / "log" / "train.log").read_text()
    res = json.loads((exp / "results.json").read_text())
    assert res["setting"] == "farfield"
    assert {"base", "public", "nonprivate", "student_gnmax_eps8", "dpsgd_eps8"} <= set(res["models"])
    assert all(isinstance(v["wer"], float) for v in res["models"].values())
    assert "| asr1's model" in (exp / "results.md").read_text()
