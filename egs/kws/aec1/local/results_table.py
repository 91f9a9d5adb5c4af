#!/usr/bin/env python3
"""The kws/aec1 recipe's tables from `kws-aec eval`'s metrics.json files: per task (keyword,
device-directed), the false-reject rate at the fixed false-accept rate of every variant in
every condition (clean, under playback, per signal-to-echo-ratio bin), the relative change
against the microphone-only model, the shuffled-reference ablation, and each variant's
parameters and multiply-accumulates per second."""

import argparse
import json
from pathlib import Path

from sltk.utils.io import atomic_open

CONDS = ["all", "clean", "playback", "ser[-10,-5)", "ser[-5,0)", "ser[0,5)", "ser[5,10)"]
LABELS = {"mic": "microphone only", "early": "implicit AEC, early fusion", "mid": "implicit AEC, mid fusion",
          "aec": "adaptive filter (PBFDAF) + microphone-only detector"}


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--variants", required=True)
    ap.add_argument("--far", type=float, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    exp = Path(a.exp)
    runs = {}
    for v in a.variants.split():
        for tag, sub in (("", "eval"), (" (shuffled reference)", "eval_shuffled_ref")):
            p = exp / v / sub / "metrics.json"
            if p.is_file():
                runs[v + tag] = (v, json.loads(p.read_text()))
    out = [f"## {exp}", "", f"False-reject rate (%) at {100 * a.far:g}% false accepts (threshold chosen per "
           "condition on its own negatives); relative change against the microphone-only model in brackets.", ""]
    for task, name in (("kw", "Keyword spotting"), ("dd", "Device-directed speech detection")):
        out += [f"### {name}", "", "| variant | " + " | ".join(CONDS) + " |", "|---|" + "---:|" * len(CONDS)]
        base = runs.get("mic", (None, None))[1]
        for label, (v, m) in runs.items():
            cells = []
            for c in CONDS:
                r = m["tasks"][task].get(c)
                frr = None if r is None or r["frr"] is None else 100 * r["frr"]
                b = None if base is None or base["tasks"][task].get(c) is None else base["tasks"][task][c]["frr"]
                rel = "" if frr is None or b in (None, 0) or label == "mic" else f" ({100 * (frr / 100 - b) / b:+.0f}%)"
                cells.append(fmt(frr) + rel)
            out.append(f"| {LABELS[v]}{label[len(v):]} | " + " | ".join(cells) + " |")
        counts = next(iter(runs.values()))[1]["tasks"][task] if runs else {}
        out += ["", "Test utterances (positives / negatives): " + ", ".join(
            f"{c} {counts[c]['positives']}/{counts[c]['negatives']}" for c in CONDS if c in counts), ""]
    out += ["### Compute", "", "| variant | parameters | MACs per second of audio | of which the adaptive filter |",
            "|---|---:|---:|---:|"]
    for label, (v, m) in runs.items():
        if label != v:
            continue
        c = m.get("complexity") or {}
        out.append(f"| {LABELS[v]} | {c.get('params', '-')} | {fmt((c.get('macs_per_s') or 0) / 1e6, '.2f')} M | "
                   f"{fmt((c.get('aec_macs_per_s') or 0) / 1e6, '.2f')} M |")
    out.append("")
    with atomic_open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
