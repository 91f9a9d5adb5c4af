#!/usr/bin/env python3
"""K disjoint sets of new words (invented names: new artists, contacts, places) that the base
ASR model never heard: no dictionary word, no name of the corpus synthesizer's lists, none of the
base corpus's invented rare words, and no word of its transcripts. Writes
<out-dir>/set<k>.txt (one word per line, k = 1..K) and <out-dir>/all.txt."""

import argparse
import random
import sys
from pathlib import Path

from sltk.data.synth.text import Lexicon, invent_words
from sltk.data.text_norm import normalize_text


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-synth", required=True, help="the base corpus (make-synth-corpus output directory)")
    ap.add_argument("--num-sets", type=int, required=True)
    ap.add_argument("--words-per-set", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    if a.num_sets < 1 or a.words_per_set < 1:
        sys.exit("make_word_sets.py: --num-sets and --words-per-set must be >= 1")
    base = Path(a.base_synth)
    if not (base / "train" / "text").is_file():
        sys.exit(f"make_word_sets.py: {base}/train/text does not exist")

    lex = Lexicon.load()
    exclude = {w.lower() for w in lex.dictionary}
    for group in (lex.first_names, lex.last_names, lex.cities, lex.artists):
        for name in group:
            exclude.update(w.lower() for w in name.split())
    if (base / "rare_words.txt").is_file():
        exclude.update(w.strip().lower() for w in (base / "rare_words.txt").read_text().split())
    for s in ("train", "dev", "test", "test_heldout_synth"):
        p = base / s / "text"
        if p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                exclude.update(w.lower() for w in line.split()[1:])

    words = invent_words(a.num_sets * a.words_per_set, random.Random(f"{a.seed}-new-word-sets"), exclude)
    # no word may be a spelling variant of another set's word once normalised
    assert len({normalize_text(w) for w in words}) == len(words)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(a.num_sets):
        chunk = words[k * a.words_per_set:(k + 1) * a.words_per_set]
        (out / f"set{k + 1}.txt").write_text("".join(w + "\n" for w in chunk))
    (out / "all.txt").write_text("".join(w + "\n" for w in words))
    print(f"make_word_sets.py: {a.num_sets} sets of {a.words_per_set} new words in {out} "
          f"({len(exclude)} known words excluded)")


if __name__ == "__main__":
    main()
