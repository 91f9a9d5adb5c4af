#!/usr/bin/env python3
"""Personal catalogs for a test set, as a contact list would be: for every utterance, the
catalog names it contains (whole-word matches of the --names list in its transcript) plus
random distractors from --distractors up to --size entries (seeded per utterance, so the same
command gives the same catalogs). Writes <out-dir>/<utt>.txt, <out-dir>/utt2catalog and
<out-dir>/utt2hascat ("with" / "without": whether the utterance holds a catalog name, for
WER by group)."""

import argparse
import random
import sys
import zlib
from pathlib import Path


def read_words(path: str):
    return [w.strip().upper() for w in Path(path).read_text(encoding="utf-8").splitlines() if w.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--text", required=True, help="the test set's Kaldi text (upper-case transcripts)")
    ap.add_argument("--names", required=True, help="the catalog names that may occur in the test set")
    ap.add_argument("--distractors", required=True, help="names never spoken, to fill the catalogs")
    ap.add_argument("--size", type=int, required=True, help="entries per catalog (at least its own names)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    names = set(read_words(a.names))
    pool = sorted(set(read_words(a.distractors)) - names)
    if a.size < 1 or not pool:
        sys.exit("make_catalogs.py: --size must be >= 1 and --distractors must name words")
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, has = [], []
    n_with = 0
    for line in Path(a.text).read_text(encoding="utf-8").splitlines():
        utt, *words = line.split()
        own = sorted({w for w in words if w in names})
        rng = random.Random(zlib.crc32(f"{a.seed}-{utt}".encode()))
        k = max(0, min(a.size - len(own), len(pool)))
        entries = own + rng.sample(pool, k)
        rng.shuffle(entries)
        (out / f"{utt}.txt").write_text("".join(e + "\n" for e in entries), encoding="utf-8")
        table.append(f"{utt} {utt}.txt\n")
        has.append(f"{utt} {'with' if own else 'without'}\n")
        n_with += bool(own)
    (out / "utt2catalog").write_text("".join(table))
    (out / "utt2hascat").write_text("".join(has))
    print(f"make_catalogs.py: {len(table)} catalogs of {a.size} entries in {out}, {n_with} utterances with "
          "catalog names", file=sys.stderr)


if __name__ == "__main__":
    main()
