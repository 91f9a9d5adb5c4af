#!/usr/bin/env python3
"""The public queries with their held-back true transcripts put back: the training set of the
oracle student (perfect labels for every query, no privacy), the ceiling of what any labelling
mechanism could give a student.

    local/oracle_cuts.py data/full/split/public_queries/cuts.jsonl.gz data/full/split/public_queries/ref_text OUT
"""

import argparse
import os
import sys
from pathlib import Path

from lhotse import CutSet
from lhotse.utils import fastcopy


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cuts", help="the unlabelled query cuts")
    ap.add_argument("ref_text", help="Kaldi text file of their true transcripts")
    ap.add_argument("out", help="output cuts (jsonl.gz)")
    a = ap.parse_args()
    text = {}
    for line in Path(a.ref_text).read_text().splitlines():
        utt, _, words = line.partition(" ")
        if utt:
            text[utt] = words.strip()
    out = []
    for c in CutSet.from_file(a.cuts):
        sups = [fastcopy(s, text=text.get(s.id) or text.get(s.recording_id) or text.get(c.id))
                for s in c.supervisions]
        if not sups or any(not s.text for s in sups):
            sys.exit(f"oracle_cuts.py: no transcript in {a.ref_text} for cut {c.id}")
        out.append(fastcopy(c, supervisions=sups))
    tmp = Path(a.out).with_name(f".{Path(a.out).name}.tmp.jsonl.gz")
    CutSet.from_cuts(out).to_file(tmp)
    os.replace(tmp, a.out)
    print(f"oracle_cuts.py: {len(out)} queries with their true transcripts -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
