"""make-lm-text: sentence count, determinism, --exclude and --holdout-words honoured, bad input."""

from collections import Counter

from sltk.bin.make_lm_text import main


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_sentences_excludes_and_holdout(tmp_path, capsys):
    out1, out2 = tmp_path / "a.txt", tmp_path / "b.txt"
    assert main(["--num-sentences", "400", "--seed", "3", str(out1)], standalone_mode=False) in (0, None)
    first = _lines(out1)
    assert len(first) == 400 and all(s and s == s.upper() for s in first)
    # the frequent template sentences, as a test set would have them (Kaldi text with ids)
    common = [s for s, _ in Counter(first).most_common(5)]
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "text").write_text("".join(f"u{i} {s}\n" for i, s in enumerate(common)))
    holdout = tmp_path / "holdout.txt"
    word = Counter(w for s in first for w in s.split() if w not in {"THE", "TO", "A"}).most_common(1)[0][0]
    holdout.write_text(word.lower() + "\n")
    args = ["--num-sentences", "400", "--seed", "3", "--exclude", str(dev), "--holdout-words", str(holdout)]
    assert main(args + [str(out2)], standalone_mode=False) in (0, None)
    second = _lines(out2)
    assert len(second) == 400
    assert not set(common) & set(second)
    assert all(word not in s.split() for s in second)
    err = capsys.readouterr().err
    assert "Done 400 of 400 sentences" in err and "in 5 excluded" in err
    # same seed, same text
    assert main(args + [str(tmp_path / "c.txt")], standalone_mode=False) in (0, None)
    assert _lines(tmp_path / "c.txt") == second


def test_bad_input(tmp_path, capsys):
    assert main(["--exclude", str(tmp_path / "missing"), str(tmp_path / "o.txt")], standalone_mode=False) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()
