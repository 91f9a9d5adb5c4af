#!/usr/bin/env python3
"""Combine cut manifests (with features) into one; optionally add a share of cuts drawn at
random from another manifest (general data mixed into new-word training data): with
--mix-frac F, the output holds N inputs and round(N * F / (1 - F)) mixed-in cuts, so that F of
it is general data. The same --seed draws the same cuts. --first N keeps only the first N
cuts of the inputs (a subset for timing runs)."""

import argparse
import os
import random
import sys
from pathlib import Path

from lhotse import CutSet


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("inputs", nargs="+", help="cut manifests (cuts.jsonl.gz)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mix", default=None, help="manifest to draw the mixed-in share from")
    ap.add_argument("--mix-frac", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0, help="keep only the first N input cuts")
    a = ap.parse_args()
    if not 0.0 <= a.mix_frac < 1.0:
        sys.exit(f"combine_cuts.py: --mix-frac must be in [0, 1), not {a.mix_frac}")
    cuts = []
    for p in a.inputs:
        if not Path(p).is_file():
            sys.exit(f"combine_cuts.py: {p} does not exist")
        cuts.extend(CutSet.from_file(p))
    if a.first > 0:
        cuts = cuts[: a.first]
    ids = {c.id for c in cuts}
    if len(ids) != len(cuts):
        sys.exit("combine_cuts.py: the inputs share cut ids (make the corpora with distinct --utt-tag)")
    n_mix = 0
    if a.mix and a.mix_frac > 0:
        pool = [c for c in CutSet.from_file(a.mix) if c.id not in ids]
        n_mix = min(len(pool), round(len(cuts) * a.mix_frac / (1.0 - a.mix_frac)))
        cuts.extend(random.Random(a.seed).sample(pool, n_mix))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.jsonl.gz")
    CutSet.from_cuts(cuts).to_file(tmp)
    os.replace(tmp, out)
    print(f"combine_cuts.py: {len(cuts) - n_mix} cuts from {len(a.inputs)} manifest(s) + {n_mix} mixed in -> {out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
