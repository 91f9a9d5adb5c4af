"""The assistant/bias1 recipe end to end at --size tiny, on asr1's tiny model (copies of both
recipes in a tmp dir): names, the biasing corpus with personal catalogs, the context adapter,
every decoding configuration with scores, catalog scaling, tables, resume."""

import json
import subprocess

import pytest


@pytest.mark.slow
def test_tiny_bias_recipe_end_to_end(tiny_asr1):
    egs, env, copy = tiny_asr1
    run = copy("bias1")
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2"], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    root = run.parent
    exp, corpus = root / "exp" / "tiny", root / "data" / "tiny" / "corpus"

    # personal catalogs: each holds its utterance's test names, padded with distractors to 20 entries
    names = set((root / "data" / "tiny" / "names" / "test.txt").read_text().upper().split())
    cats = corpus / "catalogs" / "test_20"
    table = dict(l.split() for l in (cats / "utt2catalog").read_text().splitlines())
    has = dict(l.split() for l in (cats / "utt2hascat").read_text().splitlines())
    text = dict(l.split(" ", 1) for l in (corpus / "synth" / "test" / "text").read_text().splitlines())
    assert set(table) == set(text) and "with" in has.values()
    for utt, f in table.items():
        entries = (cats / f).read_text().split()
        spoken = {w for w in text[utt].split() if w in names}
        assert len(entries) == 20 and spoken <= set(entries)
        assert has[utt] == ("with" if spoken else "without")

    res = json.loads((exp / "results.json").read_text())
    md = (exp / "results.md").read_text()
    for m, configs in (("prefix-beam", 5), ("k2-lattice", 5)):
        rows = {c: r for c, r in res["decode"][m].items() if r["wer"] is not None}
        assert len(rows) == configs, (m, rows.keys())
        for c, r in rows.items():
            assert isinstance(r["wer_with"], float) and isinstance(r["wer_without"], float), (m, c)
            assert r["recall"] is not None and r["rtf"] > 0, (m, c)
        assert f"### {m}" in md
    # the baseline ignores the catalogs: encoder and decoder biasing off give the base model's result
    for m in ("prefix-beam", "k2-lattice"):
        base = (exp / "decode" / m / "baseline" / "hyp.txt").read_text()
        assert base and len(base.splitlines()) == len(text)
    for m in ("prefix-beam", "k2-lattice"):
        for n in ("10", "100"):
            r = res["scale"][m][n]
            assert r["utterances"] == 8 and r["decode_s"] > 0 and r["graph_s"] >= 0, (m, n)
    assert (exp / "context_adapter" / "final.pt").is_file()

    # a rerun skips every stage; a bad option is one clear error
    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stderr
    r = subprocess.run([str(run), "--size", "tiny", "--methods", "viterbi"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--methods" in r.stderr
