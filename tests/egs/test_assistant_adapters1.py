"""The assistant/adapters1 recipe end to end at --size tiny, on asr1's tiny model (copies of both
recipes in a tmp dir): new-word sets and corpora, adapters, the three fusions, the sequential
baseline, decoding with new-word recall, tables, plot, resume."""

import json
import re
import subprocess

import pytest

NUM = r"\d+\.\d\d"


@pytest.mark.slow
def test_tiny_adapters_recipe_end_to_end(tiny_asr1):
    egs, env, copy = tiny_asr1
    run = copy("adapters1")
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2"], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, data = root / "exp" / "tiny", root / "data" / "tiny"

    # two disjoint word sets, never in the base corpus's transcripts; every utterance of a set holds one
    sets = [(data / "words" / f"set{k}.txt").read_text().split() for k in (1, 2)]
    assert len(sets[0]) == len(sets[1]) == 3 and not set(sets[0]) & set(sets[1])
    base_words = {w for s in ("train", "dev") for line in (data / "synth" / s / "text").read_text().splitlines()
                  for w in line.split()[1:]}
    assert not {w.upper() for w in sets[0] + sets[1]} & base_words
    for k, words in enumerate(sets, 1):
        for s in ("train", "test"):
            lines = (data / f"nw{k}" / "synth" / s / "text").read_text().splitlines()
            assert lines and all(set(l.split()[1:]) & {w.upper() for w in words} for l in lines)
            assert all(f"-nw{k}-" in l.split()[0] for l in lines)

    res = json.loads((exp / "results.json").read_text())
    md = (exp / "results.md").read_text()
    models = res["models"]
    expected = {"base", "alone1", "alone2", "sum_1", "sum_2", "average_1", "average_2", "attention_1",
                "attention_2", "sum_2_reversed", "seq_12_step1", "seq_12_step2", "seq_21_step1", "seq_21_step2"}
    assert set(models) == expected
    for name, m in models.items():
        assert isinstance(m["general_wer"], float), name
        assert all(isinstance(v, float) for v in m["recall"].values()), name   # every set has new words
        assert re.search(rf"\| {NUM} \| [+-]\d+\.\d \|", md)
    # sum and average of one adapter are that adapter alone; the order of a sum does not matter
    for a, b in (("alone1", "sum_1"), ("alone1", "average_1"), ("sum_2", "sum_2_reversed")):
        for part in ("general", "newwords"):
            ha = (exp / "decode" / a / part / "greedy" / "hyp.txt").read_text()
            hb = (exp / "decode" / b / part / "greedy" / "hyp.txt").read_text()
            assert ha == hb, (a, b, part)
    # adapters are small files next to the base, fused models are checkpoints that decode
    sz = res["sizes"]
    for k in ("1", "2"):
        assert 0 < sz["adapters"][k]["params"] < 0.2 * sz["base_params"]
        assert (exp / "adapters" / f"set{k}.adapter").stat().st_size == sz["adapters"][k]["file_bytes"]
    assert "### Independence" in md and "### Sequential fine-tuning" in md and "### Sizes" in md
    png = exp / "recall_vs_k.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a rerun skips every stage
    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stderr
    # bad options are one clear error
    r = subprocess.run([str(run), "--size", "tiny", "--seq-orders", "13"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--seq-orders" in r.stderr
    r = subprocess.run([str(run), "--num-setz", "3"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--num-setz" in r.stderr
