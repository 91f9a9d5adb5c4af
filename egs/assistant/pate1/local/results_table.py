#!/usr/bin/env python3
"""Collect the pate1 recipe's numbers into results.json and Markdown tables: test WER against eps
for the PATE students and DP-SGD, with the non-private model and the public-only lower bound;
each aggregation's privacy report (queries, answers, sigma, eps and its RDP order, the utterance
unit's support term), the labels' WER, teacher agreement; each DP-SGD run's accounting."""

import argparse
import json
import os
import statistics
from pathlib import Path


def read_json(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def wer_of(exp: Path, name: str, method: str):
    w = read_json(exp / "decode" / name / method / "scoring" / "wer.json")
    return None if w is None else float(w["wer"])


def fmt(x, spec=".2f"):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return format(x, spec)


def votes(path: Path):
    """Noiseless vote statistics of pate-aggregate's votes.txt (utterance unit)."""
    rows = [line.split() for line in path.read_text().splitlines() if line and not line.startswith("#")]
    if not rows:
        return None
    agree = [float(r[1]) for r in rows]
    return {"queries": len(rows), "mean_agreement": statistics.mean(agree),
            "unanimous": sum(a >= 1.0 for a in agree) / len(agree),
            "majority": sum(a > 0.5 for a in agree) / len(agree),
            "mean_candidates": statistics.mean(int(r[3]) for r in rows)}


def collect(a):
    exp, data = Path(a.exp), Path(a.data)
    eps_list = a.eps_list.split()
    mechs = a.mechanisms.split()
    res = {"method": a.method, "delta": a.delta, "eps_list": eps_list, "mechanisms": mechs, "setting": a.setting,
           "split": read_json(data / "split" / "split.json"), "models": {}, "pate": {}, "dpsgd": {}}
    names = ["public", "nonprivate", "student_seed_only", "student_oracle"]
    names += [f"teacher{k}" for k in range(1, a.num_teachers + 1)]
    if a.setting != "within":
        names.insert(0, "base")
    for e in eps_list:
        names += [f"student_{m}_eps{e}" for m in mechs] + [f"dpsgd_eps{e}"]
    for nm in names:
        res["models"][nm] = {"wer": wer_of(exp, nm, a.method)}
    for m in mechs:
        for e in eps_list:
            d = data / "pate" / f"{m}_eps{e}"
            rep = read_json(d / "privacy.json") or {}
            lw = read_json(d / "label_scoring" / "wer.json")
            v = votes(d / "votes.txt") if (d / "votes.txt").is_file() else None
            res["pate"][f"{m}_eps{e}"] = {
                "mechanism": m, "target_eps": float(e), "queries": rep.get("queries"), "answered": rep.get("answered"),
                "kept": (rep.get("utterances") or {}).get("kept"), "sigma": rep.get("sigma"),
                "sigma1": rep.get("sigma1"), "threshold": rep.get("threshold"), "eps": rep.get("eps"),
                "order": rep.get("order"), "eps_data_dependent": (rep.get("data_dependent") or {}).get("eps"),
                "delta": rep.get("delta"), "delta_total": rep.get("delta_total"),
                "label_wer": None if lw is None else float(lw["wer"]), "votes": v}
    for e in eps_list:
        rep = read_json(exp / f"dpsgd_eps{e}" / "privacy.json") or {}
        res["dpsgd"][e] = {k: rep.get(k) for k in ("eps", "order", "delta", "noise_multiplier", "sample_rate", "steps",
                                                   "num_units", "unit", "max_grad_norm")}
    tw = [res["models"][f"teacher{k}"]["wer"] for k in range(1, a.num_teachers + 1)]
    tw = [w for w in tw if w is not None]
    allv = [p["votes"] for p in res["pate"].values() if p["votes"]]
    res["teachers"] = {"num": a.num_teachers, "wer_mean": statistics.mean(tw) if tw else None,
                       "wer_min": min(tw) if tw else None, "wer_max": max(tw) if tw else None,
                       "agreement": max(allv, key=lambda v: v["queries"]) if allv else None}
    return res


def table(res):
    eps_list, mechs = res["eps_list"], res["mechanisms"]
    ms = res["models"]
    label = {"gnmax": "PATE student, GNMax", "confident-gnmax": "PATE student, Confident-GNMax"}
    test = "asr1's test set" if res["setting"] == "within" else f"the {res['setting']} corpus' test set"
    out = [f"### Test WER (%) against eps (delta {res['delta']:g}; {res['method']} decoding, {test}: "
           "unseen voices)", "",
           "| model | " + " | ".join(f"eps = {e}" for e in eps_list) + " |",
           "|---|" + "---:|" * len(eps_list)]
    for m in mechs:
        out.append(f"| {label.get(m, m)} | " + " | ".join(fmt(ms[f'student_{m}_eps{e}']['wer']) for e in eps_list)
                   + " |")
    out.append("| DP-SGD | " + " | ".join(fmt(ms[f'dpsgd_eps{e}']['wer']) for e in eps_list) + " |")
    fixed = [("non-private (all private data, eps = inf)", "nonprivate"),
             ("public-only (labelled public seed, eps = 0)", "public"),
             ("control: student training on the public seed alone (no labels)", "student_seed_only"),
             ("ceiling: student training with the true transcripts of every query (no privacy)", "student_oracle"),
             ("asr1's model (other-domain public data only, before the labelled seed)", "base")]
    for text, nm in fixed:  # models without privacy parameters: the same value under every eps
        if nm in ms:
            out.append(f"| {text} | " + " | ".join([fmt(ms[nm]["wer"])] * len(eps_list)) + " |")
    t = res["teachers"]
    out += ["", f"Teachers: {t['num']}, test WER mean {fmt(t['wer_mean'])} (min {fmt(t['wer_min'])}, "
                f"max {fmt(t['wer_max'])})."]
    v = t["agreement"]
    if v:
        out.append(f"Teacher agreement on {v['queries']} public queries (whole transcripts, noiseless, private "
                   f"diagnostics): mean top vote share {v['mean_agreement']:.3f}, "
                   f"unanimous {100 * v['unanimous']:.1f}%, "
                   f"majority {100 * v['majority']:.1f}%, {v['mean_candidates']:.2f} distinct transcripts per query.")
    out += ["", "### PATE aggregations (utterance unit: teachers vote their 1-best transcripts)", "",
            "| mechanism | target eps | queries | answered | kept | sigma | sigma1 | T | eps (data-indep.) | order "
            "| eps (data-dep.) | delta_total | label WER (%) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for nm, p in res["pate"].items():
        out.append(f"| {p['mechanism']} | {p['target_eps']:g} | {fmt(p['queries'], 'd')} | {fmt(p['answered'], 'd')} "
                   f"| {fmt(p['kept'], 'd')} | {fmt(p['sigma'], '.3g')} | {fmt(p['sigma1'], '.3g')} "
                   f"| {fmt(p['threshold'], '.3g')} | {fmt(p['eps'], '.3f')} | {fmt(p['order'], 'g')} "
                   f"| {fmt(p['eps_data_dependent'], '.3f')} | {fmt(p['delta_total'], '.2g')} "
                   f"| {fmt(p['label_wer'])} |")
    out += ["", "### DP-SGD runs (RDP of the Poisson-sampled Gaussian mechanism)", "",
            "| target eps | eps | order | noise multiplier | sampling rate | steps | units |",
            "|---:|---:|---:|---:|---:|---:|---|"]
    for e, d in res["dpsgd"].items():
        out.append(f"| {e} | {fmt(d['eps'], '.3f')} | {fmt(d['order'], 'g')} | {fmt(d['noise_multiplier'], '.3g')} "
                   f"| {fmt(d['sample_rate'], '.3g')} | {fmt(d['steps'], 'd')} | {fmt(d['num_units'], 'd')} "
                   f"{d['unit'] or ''} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--num-teachers", type=int, required=True)
    ap.add_argument("--eps-list", required=True)
    ap.add_argument("--mechanisms", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--delta", type=float, required=True)
    ap.add_argument("--setting", default="within", help="within (asr1's corpus) or farfield (adds asr1's model: base)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    res = collect(a)
    for path, text in ((a.json, json.dumps(res, indent=1) + "\n"), (a.out, table(res))):
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
