"""make-synth-corpus: --help, a tiny run, and bad input."""

import subprocess
import sys

import pytest

from sltk.data.kaldi import DataDir
from sltk.data.synth.voices import BACKENDS

PROG = [sys.executable, "-m", "sltk.bin.make_synth_corpus"]


def run(args, env, cwd=None):
    return subprocess.run(PROG + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def error_lines(res):
    return [ln for ln in res.stderr.splitlines() if ln.startswith("make-synth-corpus: error:")]


def test_help_shows_sizes_and_examples(run_env):
    res = run(["--help"], run_env)
    assert res.returncode == 0
    assert "Examples:" in res.stdout and "make-synth-corpus --size tiny" in res.stdout
    for word in ("tiny", "small", "full", "--holdout-words", "--heldout-synth", "--nj", "--seed"):
        assert word in res.stdout


@pytest.mark.skipif(not (BACKENDS["espeak"].available() and BACKENDS["flite"].available()),
                    reason="needs espeak-ng and flite")
def test_tiny_run(run_env, tmp_path):
    out = tmp_path / "corpus"
    res = run(["--size", "tiny", "--num-utts", "10", "--synths", "espeak", "--heldout-synth", "flite",
               "--nj", "2", "--noise-prob", "0.5", "--reverb-prob", "0.5", str(out)], run_env)
    assert res.returncode == 0, res.stderr
    assert "Done 10 of 10 utterances, 0 failed" in res.stderr
    for s in ("train", "dev", "test", "test_heldout_synth"):
        assert DataDir.read(out / s).validate() == []
        assert (out / "manifests" / f"{s}_supervisions.jsonl.gz").is_file()
    again = run(["--size", "tiny", "--num-utts", "10", "--synths", "espeak", "--heldout-synth", "flite",
                 "--noise-prob", "0.5", "--reverb-prob", "0.5", str(out)], run_env)
    assert again.returncode == 0 and "10 already present" in again.stderr


@pytest.mark.parametrize("args,named", [
    (["--synths", "espeak,nosuchsynth"], "nosuchsynth"),
    (["--heldout-synth", "nosuchsynth"], "nosuchsynth"),
    (["--holdout-words", "missing_words.txt"], "missing_words.txt"),
    (["--holdout-sets", "test,eval"], "eval"),
])
def test_bad_input_one_error_line(run_env, tmp_path, args, named):
    res = run(args + [str(tmp_path / "out")], run_env, cwd=tmp_path)
    assert res.returncode == 2
    lines = error_lines(res)
    assert len(lines) == 1 and named in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_config_key(run_env, tmp_path):
    cfg = tmp_path / "synth.yaml"
    cfg.write_text("size: tiny\nnum_utts: 4\nvoice_count: 3\n")
    res = run(["--config", str(cfg), str(tmp_path / "out")], run_env)
    assert res.returncode == 2
    lines = error_lines(res)
    assert len(lines) == 1 and "voice_count" in lines[0]
