"""pate-aggregate on the toy corpus: teachers are copies of the overfitted toy model (they agree,
and are right) plus fresh random models (they disagree). The utterance unit writes a data dir
that validates, with the agreed transcripts as labels; the token unit votes per CTC frame;
Confident-GNMax answers only above its threshold; bad input gives one clear error."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording
from lhotse.utils import fastcopy

from sltk.asr.checkpoint import read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.data.kaldi import DataDir


def run_main(args, capsys):
    from sltk.bin.pate_aggregate import main

    rc = main.main([str(a) for a in args], standalone_mode=False)
    return rc or 0, capsys.readouterr().err


def one_error(err: str) -> bool:
    return len([l for l in err.splitlines() if "error:" in l]) == 1 and "Traceback" not in err


def table(path: Path):
    return dict(l.split(" ", 1) for l in path.read_text().splitlines() if l and not l.startswith("#"))


@pytest.fixture(scope="module")
def teachers(overfit_model, tmp_path_factory):
    """3 copies of the overfitted model (agreeing, right) + 2 random models (disagreeing)."""
    exp, _ = overfit_model
    good = sorted(Path(exp).glob("avg-*.pt"))[-1]
    d = tmp_path_factory.mktemp("teachers")
    paths = []
    for i in range(3):
        paths.append(d / f"good{i}.pt")
        shutil.copy(good, paths[-1])
    cfg = ModelConfig.from_dict(read_checkpoint(good)["model_config"])
    for s in range(2):
        torch.manual_seed(100 + s)
        paths.append(d / f"random{s}.pt")
        save_checkpoint(paths[-1], Transducer(cfg))
    return paths


@pytest.fixture(scope="module")
def cuts_with_audio(toy_corpus, tmp_path_factory):
    """The toy cuts with a (synthetic) recording each, so that a wav.scp can be written."""
    cuts, _ = toy_corpus
    d = tmp_path_factory.mktemp("audio")
    out = []
    rng = np.random.default_rng(0)
    for c in CutSet.from_file(cuts):
        wav = d / f"{c.id}.wav"
        sf.write(wav, (rng.normal(0, 0.01, int(round(c.duration * 16000)))).astype(np.float32), 16000)
        rec = Recording.from_file(wav, recording_id=c.id)
        out.append(fastcopy(c, recording=rec, duration=rec.duration))
    path = d / "cuts.jsonl.gz"
    CutSet.from_cuts(out).to_file(path)
    return path


def test_help(capsys):
    from sltk.bin.pate_aggregate import main

    assert main.main(["--help"], standalone_mode=False) in (0, None)   # bin/pate-aggregate: test_entry_points
    out = capsys.readouterr().out
    for opt in ("--mechanism", "--sigma1", "--threshold", "--laplace-scale", "--unit", "--delta", "--seed",
                "--decode-method", "--out-dir", "Examples:", "[default: gnmax]"):
        assert opt in out


def test_utterance_unit_gnmax(teachers, cuts_with_audio, toy_corpus, tmp_path, capsys):
    _, lang = toy_corpus
    out = tmp_path / "pate"
    rc, err = run_main(teachers + ["--cuts", cuts_with_audio, "--lang-dir", lang, "--mechanism", "gnmax",
                                   "--sigma", "0.2", "--seed", "3", "--out-dir", out], capsys)
    assert rc == 0, err
    assert "Done 10 of 10 utterances labelled" in err
    d = DataDir.read(out)
    assert d.validate() == [] and len(d) == 10
    from sltk.bin.data_dir import validate_main

    assert validate_main.main([str(out)], standalone_mode=False) in (0, None)
    assert set(d.wav_scp) == set(d.utt2spk) and all(Path(p).is_file() for p in d.wav_scp.values())
    refs = {c.id: c.supervisions[0].text for c in CutSet.from_file(cuts_with_audio)}
    assert d.text == refs                     # 3 of 5 teachers (the overfitted ones) agree, and are right

    cuts = CutSet.from_file(out / "cuts.jsonl.gz")
    assert {c.id: c.supervisions[0].text for c in cuts} == d.text
    assert all(c.has_features and c.has_recording for c in cuts)

    rep = json.loads((out / "privacy.json").read_text())
    assert rep["mechanism"] == "gnmax" and rep["unit"] == "utterance" and rep["sigma"] == 0.2
    assert rep["queries"] == rep["answered"] == 10 and rep["num_teachers"] == 5
    # data-independent: 10 queries of alpha / sigma^2 (classic conversion at the reported order)
    a = rep["order"]
    assert rep["eps"] == pytest.approx(10 * a / 0.04 + np.log(1e5) / (a - 1), rel=1e-9)
    assert rep["data_dependent"]["eps"] <= rep["eps"]
    assert rep["delta_total"] >= rep["delta"] == 1e-5 and "support" in rep    # open candidate sets charged
    votes = table(out / "votes.txt")
    assert set(votes) == set(refs)
    assert all(v.split()[0] == "0.6000" and v.split()[1] == "3" and v.split()[-1] == "1" for v in votes.values())

    # same seed, same labels; a rerun overwrites atomically
    rc, _ = run_main(teachers + ["--cuts", cuts_with_audio, "--lang-dir", lang, "--mechanism", "gnmax",
                                 "--sigma", "0.2", "--seed", "3", "--out-dir", out], capsys)
    assert rc == 0 and DataDir.read(out).text == refs


def test_confident_gnmax_threshold_and_lnmax(teachers, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    base = teachers + ["--cuts", cuts, "--lang-dir", lang, "--mechanism", "confident-gnmax", "--sigma", "0.2",
                       "--sigma1", "1e-6"]
    rc, err = run_main(base + ["--threshold", "3.5", "--out-dir", tmp_path / "none"], capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "none" / "privacy.json").read_text())
    assert rep["queries"] == 10 and rep["answered"] == 0 and rep["threshold_steps"] == 10
    assert (tmp_path / "none" / "text").read_text() == ""       # top count 3 < 3.5: nothing answered
    rc, err = run_main(base + ["--threshold", "2.5", "--out-dir", tmp_path / "all"], capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "all" / "privacy.json").read_text())
    assert rep["answered"] == rep["answer_steps"] == 10 and rep["utterances"]["kept"] == 10
    # no recordings in these cuts: text, utt2spk, spk2utt and the cuts manifest, no wav.scp
    out = tmp_path / "all"
    assert not (out / "wav.scp").exists() and len(table(out / "text")) == 10
    assert table(out / "utt2spk") == {u: u for u in table(out / "text")}
    assert len(CutSet.from_file(out / "cuts.jsonl.gz")) == 10

    rc, err = run_main(teachers + ["--cuts", cuts, "--lang-dir", lang, "--mechanism", "lnmax", "--laplace-scale",
                                   "0.05", "--out-dir", tmp_path / "lap"], capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "lap" / "privacy.json").read_text())
    assert rep["pure_eps_composed"] == pytest.approx(10 * 2 / 0.05) and rep["eps_per_answer"] == pytest.approx(40)


def test_token_unit(teachers, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    out = tmp_path / "tok"
    rc, err = run_main(teachers + ["--cuts", cuts, "--lang-dir", lang, "--unit", "token", "--mechanism", "gnmax",
                                   "--sigma", "0.2", "--nonblank-only", "--sigma1", "0.2", "--out-dir", out], capsys)
    assert rc == 0, err
    rep = json.loads((out / "privacy.json").read_text())
    votes = table(out / "votes.txt")
    frames = sum(int(v.split()[1]) for v in votes.values())
    queried = sum(int(v.split()[2]) for v in votes.values())
    assert rep["unit"] == "token" and rep["nonblank_only"] and rep["blank_threshold"] == 2.5
    # every frame pays the non-blank gate; the toy CTC head emits almost no blanks, so most frames also vote
    assert rep["threshold_steps"] == frames and rep["queries"] == queried <= frames
    assert rep["eps"] > 10                     # per-frame queries at sigma 0.2: expensive, and reported so
    labels = table(out / "text")
    refs = {c.id: c.supervisions[0].text for c in CutSet.from_file(cuts)}
    assert sum(labels.get(u) == t for u, t in refs.items()) >= 8   # the CTC head of the agreeing teachers


def test_bad_input(teachers, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    out = ["--out-dir", tmp_path / "x"]

    def err_of(args):
        rc, err = run_main(args + out, capsys)
        assert rc == 2 and one_error(err), err
        return err

    common = ["--cuts", cuts, "--lang-dir", lang]
    assert "at least 2 teacher" in err_of([teachers[0]] + common + ["--sigma", "1"])
    assert "needs --sigma" in err_of(teachers + common)
    assert "--threshold and --sigma1" in err_of(teachers + common + ["--mechanism", "confident-gnmax", "--sigma", "1"])
    assert "--laplace-scale is for lnmax" in err_of(teachers + common + ["--sigma", "1", "--laplace-scale", "2"])
    assert "apply to --unit token" in err_of(teachers + common + ["--sigma", "1", "--nonblank-only"])
    assert "--delta" in err_of(teachers + common + ["--sigma", "1", "--delta", "2"])
    assert "does not exist" in err_of(teachers + [tmp_path / "missing.pt"] + common + ["--sigma", "1"])
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    assert "cannot be read" in err_of(teachers[:2] + [bad] + common + ["--sigma", "1"])
    assert "does not exist" in err_of(teachers + ["--cuts", tmp_path / "nope.jsonl.gz", "--lang-dir", lang,
                                                  "--sigma", "1"])
