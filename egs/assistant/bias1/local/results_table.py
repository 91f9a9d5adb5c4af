#!/usr/bin/env python3
"""The bias1 recipe's numbers (compute-wer's wer.json with per-utterance catalog terms and the
with/without-catalog-word groups; bias-decode's rtf.json) as one JSON file and markdown tables:
per decoding method, each biasing configuration's WER (all, with catalog words, without),
catalog-word precision / recall / F1 and their change against the baseline, and speed; then
F1 and decoding time as the catalog grows."""

import argparse
import json
from pathlib import Path

from sltk.utils.io import atomic_open

LABELS = {"baseline": "baseline CTC (no biasing)", "encoder": "encoder bias (context adapter)",
          "decoder": "decoder bias (context graph)", "both": "encoder + decoder bias",
          "both_adaptive": "encoder + decoder bias, adaptive boost"}


def read_json(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def numbers(d: Path):
    w = read_json(d / "scoring" / "wer.json") or {}
    r = read_json(d / "rtf.json") or {}
    groups = (w.get("groups") or {}).get("hascat", {})
    t = w.get("terms") or {}
    return {"wer": w.get("wer"), "wer_with": (groups.get("with") or {}).get("wer"),
            "wer_without": (groups.get("without") or {}).get("wer"),
            "precision": t.get("precision"), "recall": t.get("recall"), "f1": t.get("f1"),
            "rtf": r.get("rtf"), "utterances": r.get("utterances"), "decode_s": r.get("decode_s"),
            "graph_s": r.get("graph_s")}


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def rel(x, b):
    return None if x is None or b is None or b == 0 else 100.0 * (x - b) / b


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--methods", required=True)
    ap.add_argument("--configs", required=True)
    ap.add_argument("--scale-sizes", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    exp = Path(a.exp)
    methods, configs, sizes = a.methods.split(), a.configs.split(), a.scale_sizes.split()
    res = {"exp": str(exp), "decode": {}, "scale": {}}
    out = [f"## {exp}", "", "Per-utterance personal catalogs; catalog-word precision / recall / F1 per occurrence "
           "(compute-wer --utt2terms); WER on the utterances with and without catalog words.", ""]
    for m in methods:
        rows = {c: numbers(exp / "decode" / m / c) for c in configs}
        res["decode"][m] = rows
        b = rows.get("baseline", {})
        out += [f"### {m}", "", "| configuration | WER (%) | WER with catalog words | WER without | "
                "without: rel. change (%) | precision | recall | F1 | F1 rel. change (%) | RTF |",
                "|---|" + "---:|" * 9]
        for c, r in rows.items():
            out.append(f"| {LABELS.get(c, c)} | {fmt(r['wer'])} | {fmt(r['wer_with'])} | {fmt(r['wer_without'])} | "
                       f"{fmt(rel(r['wer_without'], b.get('wer_without')), '+.1f')} | {fmt(r['precision'], '.1f')} | "
                       f"{fmt(r['recall'], '.1f')} | {fmt(r['f1'], '.1f')} | "
                       f"{fmt(rel(r['f1'], b.get('f1')), '+.0f')} | {fmt(r['rtf'], '.3f')} |")
        out.append("")
    out += ["### Catalog size (encoder + decoder bias, adaptive boost)", "",
            "| method | catalog entries | F1 | recall | precision | ms per utterance | of which graph building | RTF |",
            "|---|" + "---:|" * 7]
    for m in methods:
        res["scale"][m] = {}
        for n in sizes:
            r = numbers(exp / "scale" / m / n)
            res["scale"][m][n] = r
            per = None if not r["utterances"] or r["decode_s"] is None else 1000.0 * r["decode_s"] / r["utterances"]
            gper = None if not r["utterances"] or r["graph_s"] is None else 1000.0 * r["graph_s"] / r["utterances"]
            out.append(f"| {m} | {n} | {fmt(r['f1'], '.1f')} | {fmt(r['recall'], '.1f')} | "
                       f"{fmt(r['precision'], '.1f')} | {fmt(per, '.0f')} | {fmt(gper, '.0f')} | {fmt(r['rtf'], '.3f')} |")
    out.append("")
    with atomic_open(a.json, "w") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    with atomic_open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
