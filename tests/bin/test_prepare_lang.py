"""prepare-lang: help, a run on a tiny data directory, bad input."""

import json

import pytest

from sltk.bin.prepare_lang import main


def test_help(capsys):
    assert main(["--help"], standalone_mode=False) in (0, None)
    out = capsys.readouterr().out
    assert "TEXTS... LANG_DIR" in out and "[default: 500" in out and "Examples:" in out


def test_run_and_rerun(tmp_path, capsys):
    pytest.importorskip("k2")
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("a1 turn on the lights\na2 turn off the lights\na3 play some jazz\n")
    args = ["--vocab-size", "30", "--lm-order", "2", str(data), str(tmp_path / "lang")]
    assert main(args, standalone_mode=False) in (0, None)
    err = capsys.readouterr().err
    assert "Done 3 of 3 sentences" in err and "HLG" in err
    cfg = json.loads((tmp_path / "lang" / "lang.json").read_text())
    assert cfg["lm_order"] == 2 and cfg["files"]["HLG"] == "HLG.pt"
    assert main(args, standalone_mode=False) in (0, None)
    assert "up to date" in capsys.readouterr().err
    assert main(["--lm-order", "3"] + args[4:], standalone_mode=False) == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "lang")], standalone_mode=False) == 2
    err = capsys.readouterr().err
    assert f"prepare-lang: error: text file {tmp_path / 'missing'} does not exist" in err
    (tmp_path / "empty.txt").write_text("\n")
    assert main([str(tmp_path / "empty.txt"), str(tmp_path / "lang")], standalone_mode=False) == 2
    assert "no transcripts" in capsys.readouterr().err
