"""The assistant/asr1 recipe end to end at --size tiny (a copy of the recipe in a tmp dir)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_recipe_end_to_end(tmp_path, run_env):
    egs = tmp_path / "egs"
    shutil.copytree(ROOT / "egs" / "utils", egs / "utils")
    shutil.copytree(ROOT / "egs" / "assistant" / "asr1", egs / "assistant" / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp"))
    env = dict(run_env, SLTK_ROOT=str(ROOT))
    run = egs / "assistant" / "asr1" / "run.sh"
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2"], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    exp = egs / "assistant" / "asr1" / "exp" / "tiny" / "model_tiny"
    table = (exp / "results.md").read_text()
    for m in ["greedy", "modified_beam", "fast_beam", "fast_beam_LG", "ctc_greedy", "ctc_H", "ctc_HLG",
              "ctc_HLG_nbest", "fast_beam_LG_unk", "ctc_HLG_unk", "ctc_HLG_lm", "ctc_HLG_rnnt_lm"]:
        assert f"| {m} |" in table
        assert (exp / "decode_test" / m / "scoring" / "wer.json").is_file()
    # the _unk methods decoded with the open-vocabulary lang (same BPE model)
    lang = egs / "assistant" / "asr1" / "data" / "tiny" / "lang_bpe_100"
    unk = Path(str(lang) + "_unk")
    assert (unk / "bpe.model").read_bytes() == (lang / "bpe.model").read_bytes()
    assert "<unk>" in (unk / "words.txt").read_text().split() and '"open_vocab": true' in (unk / "lang.json").read_text()
    assert "--lang-dir " + str(Path("data/tiny/lang_bpe_100_unk")) in (exp / "log" / "decode_test_unk.log").read_text()
    # the _lm methods: lexicon and LM also from make-lm-text's domain text, never a dev/test sentence
    lm = Path(str(lang) + "_lm")
    assert (lm / "bpe.model").read_bytes() == (lang / "bpe.model").read_bytes()
    data = egs / "assistant" / "asr1" / "data" / "tiny"
    lm_text = (data / "lm" / "text.txt").read_text().splitlines()
    assert len(lm_text) == 5000
    for s in ("dev", "test", "test_heldout_synth"):
        sents = {ln.split(maxsplit=1)[1] for ln in (data / "synth" / s / "text").read_text().splitlines()}
        assert sents and not sents & set(lm_text)
    assert len((lm / "words.txt").read_text().splitlines()) > len((lang / "words.txt").read_text().splitlines())
    assert "--lang-dir " + str(Path("data/tiny/lang_bpe_100_lm")) in (exp / "log" / "decode_test_lm.log").read_text()
    # test-time VTLN: a warp factor per test speaker, from the default grid
    spk2warp = dict(l.split() for l in (exp / "decode_test" / "spk2warp").read_text().splitlines())
    spk2utt = (data / "synth" / "test" / "spk2utt").read_text().splitlines()
    assert len(spk2warp) == len(spk2utt) and {float(w) for w in spk2warp.values()} <= {0.8, 0.85, 0.9, 0.95, 1, 1.05, 1.1}
    # a rerun resumes: every stage before scoring is skipped
    r = subprocess.run([str(run), "--size", "tiny", "--stop-stage", "4"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stderr
    # --decode-sets: scoring only the sets asked for; each set's decoding is marked done on its own,
    # so that a set whose marker is gone is decoded again, alone
    for f in (exp / "decode_dev").glob("*/scoring/wer.json"):
        f.unlink()
    (exp / ".decode_dev.done").unlink()
    r = subprocess.run([str(run), "--size", "tiny", "--stage", "4", "--stop-stage", "5", "--decode-sets", "dev test",
                        "--methods", "greedy ctc_HLG_lm"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage 4: decode dev with" in r.stderr
    table = (exp / "results.md").read_text()
    assert "| WER dev (%) | WER test (%) | RTF" in table and "test_heldout_synth" not in table
    assert [ln.split("|")[1].strip() for ln in table.splitlines() if ln.startswith("| ") and "method" not in ln] \
        == ["greedy", "ctc_HLG_lm"]
    assert f"Decoded: {Path('exp/tiny/model_tiny/avg-1-2.pt')}" in table  # from decode-transducer's rtf.json
    assert (exp / "decode_dev" / "greedy" / "scoring" / "wer.json").is_file()
    assert not (exp / "decode_dev" / "ctc_H" / "scoring" / "wer.json").is_file()
    # an unknown option is an error naming it
    r = subprocess.run([str(run), "--sizes", "tiny"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--sizes" in r.stderr
