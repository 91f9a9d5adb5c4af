"""compute-wer: help, a run with groups, missing hypotheses, bad input."""

import json
import subprocess

from sltk.bin.compute_wer import main


def write(path, lines):
    path.write_text("".join(l + "\n" for l in lines))
    return path


def test_help(capsys):
    assert main(["--help"], standalone_mode=False) in (0, None)
    out = capsys.readouterr().out
    assert "REF_TEXT HYP_TEXT" in out and "--group-by" in out and "--out-dir" in out
    assert "Examples:" in out and "[default: all]" in out


def test_run(tmp_path, capsys):
    ref = write(tmp_path / "text", ["u1 the cat sat", "u2 turn on the lights", "u3 call anna"])
    hyp = write(tmp_path / "hyp.txt", ["u1 the bat sat", "u2 turn on lights please"])
    voice = write(tmp_path / "utt2voice", ["u1 slt", "u2 awb", "u3 awb"])
    out = tmp_path / "scoring"
    rc = main([str(ref), str(hyp), "--out-dir", str(out), "--group-by", str(voice)], standalone_mode=False)
    assert rc in (0, None)
    cap = capsys.readouterr()
    # 9 ref words; u1: 1 sub, u2: 1 del + 1 ins, u3 missing: 2 del
    assert cap.out.splitlines()[0] == "%WER 55.56 [ 5 / 9, 1 ins, 3 del, 1 sub ]"
    assert "1 of 3 references have no hypothesis" in cap.err and "u3" in cap.err
    j = json.loads((out / "wer.json").read_text())
    assert j["errors"] == 5 and j["groups"]["voice"]["awb"]["errors"] == 4
    assert (out / "per_utt.txt").is_file() and (out / "confusions.txt").is_file()
    assert (out / "wer_by_voice.txt").read_text().splitlines()[1].split("\t")[:4] == ["awb", "66.67", "6", "2"]


def test_missing_file_is_one_line_exit_2(tmp_path, run_env):
    ref = write(tmp_path / "text", ["u1 a b"])
    r = subprocess.run(["compute-wer", str(ref), str(tmp_path / "nope.txt")], capture_output=True,
                       text=True, env=run_env)
    assert r.returncode == 2
    errors = [l for l in r.stderr.splitlines() if "error" in l]
    assert errors == [f"compute-wer: error: hypothesis text {tmp_path / 'nope.txt'} does not exist"]
    assert "Traceback" not in r.stderr


def test_terms_recall_precision(tmp_path, capsys):
    ref = write(tmp_path / "text", ["u1 PLAY ZORVATH NOW", "u2 CALL ZORVATH ZORVATH", "u3 HELLO WORLD BLUE MOON",
                                    "u4 CALL ZORVATH"])
    hyp = write(tmp_path / "hyp.txt", ["u1 PLAY ZORVATH NOW", "u2 CALL ZORVATH", "u3 HELLO ZORVATH BLUE MOON"])
    terms = write(tmp_path / "words.txt", ["Zorvath  # a new word", "blue moon", "", "Kelvandor"])
    out = tmp_path / "scoring"
    rc = main([str(ref), str(hyp), "--terms", str(terms), "--out-dir", str(out)], standalone_mode=False)
    assert rc in (0, None)
    # ZORVATH: ref 1+2+0+1 = 4, hyp 1+1+1+0 (u4 missing) = 3, hits 1+1+0+0 = 2;
    # BLUE MOON: ref 1, hyp 1, hit 1; KELVANDOR never occurs
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("%TERMS")][0]
    assert line == "%TERMS recall 60.00 [ 3 / 5 ], precision 75.00 [ 3 / 4 ], F1 66.67"
    t = json.loads((out / "wer.json").read_text())["terms"]
    assert (t["ref"], t["hyp"], t["hits"]) == (5, 4, 3)
    assert t["per_term"] == {"BLUE MOON": {"ref": 1, "hyp": 1, "hits": 1}, "ZORVATH": {"ref": 4, "hyp": 3, "hits": 2}}
    assert (out / "terms.txt").read_text().splitlines()[1:] == ["BLUE_MOON 1 1 1", "ZORVATH 4 3 2"]


def test_per_utterance_terms(tmp_path, capsys):
    """Personal catalogs: each utterance's terms come from its own file (utt2terms); an
    utterance outside the table falls back to --terms."""
    ref = write(tmp_path / "text", ["u1 CALL ANNA ZORVATH", "u2 CALL KELVANDOR", "u3 PLAY ZORVATH"])
    hyp = write(tmp_path / "hyp.txt", ["u1 CALL ANNA ZORVATH", "u2 CALL ZORVATH", "u3 PLAY ZORVATH"])
    write(tmp_path / "cat1.txt", ["Zorvath\t3.5", "Mirelda"])
    write(tmp_path / "cat2.txt", ["Kelvandor", "Zorvath"])
    table = write(tmp_path / "utt2catalog", ["u1 cat1.txt", "u2 cat2.txt"])
    terms = write(tmp_path / "global.txt", ["play"])
    rc = main([str(ref), str(hyp), "--utt2terms", str(table), "--terms", str(terms)], standalone_mode=False)
    assert rc in (0, None)
    # u1: ZORVATH 1/1 hit; u2: KELVANDOR missed, ZORVATH inserted (a false alarm); u3 (global): PLAY hit
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("%TERMS")][0]
    assert line == "%TERMS recall 66.67 [ 2 / 3 ], precision 66.67 [ 2 / 3 ], F1 66.67"
