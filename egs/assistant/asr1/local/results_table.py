#!/usr/bin/env python3
"""Print the recipe's results table (markdown) from compute-wer's wer.json and decode-transducer's
rtf.json files: one row per decoding method, WER per set, RTF on the test set, the checkpoint(s)
decoded (recorded in rtf.json by decode-transducer), and the WER per synthesizer / accent of the
test sets."""

import argparse
import json
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--sets", required=True)
    ap.add_argument("--methods", required=True)
    a = ap.parse_args()
    exp = Path(a.exp)
    sets, methods = a.sets.split(), a.methods.split()
    print(f"### {exp}\n")
    print("| method | " + " | ".join(f"WER {s} (%)" for s in sets) + " | RTF (test, 1 thread) |")
    print("|---|" + "---|" * (len(sets) + 1))
    for m in methods:
        row = [m]
        for s in sets:
            p = exp / f"decode_{s}" / m / "scoring" / "wer.json"
            row.append(f"{json.loads(p.read_text())['wer']:.2f}" if p.is_file() else "-")
        r = exp / "decode_test" / m / "rtf.json"
        row.append(f"{json.loads(r.read_text())['rtf']:.4f}" if r.is_file() else "-")
        print("| " + " | ".join(row) + " |")
    # what was decoded: decode-transducer records its checkpoint in each rtf.json
    ckpts = sorted({json.loads(r.read_text()).get("checkpoint") or "?"
                    for s in sets for m in methods for r in [exp / f"decode_{s}" / m / "rtf.json"] if r.is_file()})
    if ckpts:
        print(f"\nDecoded: {', '.join(ckpts)}")
    best = methods[0]
    for s in sets:
        p = exp / f"decode_{s}" / best / "scoring" / "wer.json"
        if not p.is_file():
            continue
        w = json.loads(p.read_text())
        print(f"\n{s} ({best}): {w['ref_words']} words, {w['utts']} utterances; "
              f"{w['ins']} ins, {w['del']} del, {w['sub']} sub")
        for table in ("synth", "accent"):
            groups = w.get("groups", {}).get(table, {})
            if groups:
                cells = ", ".join(f"{g} {v['wer']:.2f}" for g, v in sorted(groups.items()) if v["wer"] is not None)
                print(f"- WER by {table}: {cells}")


if __name__ == "__main__":
    main()
