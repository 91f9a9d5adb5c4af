"""asr1's local/oov_breakdown.py on a hand-made decoding (every number computed by hand)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "egs" / "assistant" / "asr1" / "local" / "oov_breakdown.py"


def test_oov_and_unseen_sentence_breakdown(tmp_path):
    (tmp_path / "train_text").write_text("t1 A B\nt2 C D\n")
    d = tmp_path / "decode"
    d.mkdir()
    # u1: a training sentence, right; u2: new sentence of known words, one substitution;
    # u3: new sentence with the OOV word E, deleted
    (d / "ref.txt").write_text("u1 A B\nu2 A C\nu3 A E\n")
    (d / "hyp.txt").write_text("u1 A B\nu2 A D\nu3 A\n")
    out = tmp_path / "oov.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--train-text", str(tmp_path / "train_text"),
                        "--json", str(out), str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text())[str(d)]
    assert row["wer"] == 33.33 and row["errors"] == 2            # 2 errors / 6 words
    assert row["oov_words"] == 1 and row["oov_rate"] == 16.67 and row["oov_words_missed"] == 1
    assert row["iv_utterances"] == 2 and row["wer_iv_utterances"] == 25.0          # u1, u2: 1 / 4
    assert row["unseen_sentence_utterances"] == 2 and row["wer_unseen_sentences"] == 50.0  # u2, u3: 2 / 4
    assert "2/3 utterances whose sentence is not a training transcript 50.00%" in r.stdout
