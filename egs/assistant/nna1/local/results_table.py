#!/usr/bin/env python3
"""Collect the numbers of the nna1 recipe into one JSON file and write the results tables
(markdown): per NNA profile the three arms (float/float, float-trained on the NNA = PTQ,
accelerator-aware trained on the NNA), each float arm also after the same-budget float
fine-tuning (the control: the float model is not converged, so fine-tuning alone lowers the
WER), with the fine-tuning cost next to the ASR training's and
the operators that fall back to the CPU; the quantizers (WER, bits per weight, packed bytes
against the 8-bit model, fine-tuning cost); the decoding latency of packed vs 8-bit vs float.

Reads compute-wer's wer.json, train-transducer's train_summary.json and logs, nna-report's
JSON and quantize-nna's size report (--report). A number that is missing shows as "-"."""

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import yaml


def read_json(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def wer(d: Path, sets, method):
    out = {}
    for s in sets:
        w = read_json(d / f"decode_{s}" / method / "scoring" / "wer.json")
        out[s] = None if w is None else w["wer"]
    return out


def train_cost(exp_dir: Path, log: Path):
    """Steps and seconds of a training run: train_summary.json's steps and train_s, else the
    wall time sltk-queue logged (# Accounting: time=N) for the program."""
    summ = read_json(exp_dir / "train_summary.json") or {}
    steps = summ.get("steps")
    if summ.get("train_s") is not None:
        return {"steps": steps, "time_s": float(summ["train_s"]), "time_source": "training loop"}
    times = re.findall(r"^# Accounting: time=(\d+)", log.read_text(), re.M) if log.is_file() else []
    if times:
        return {"steps": steps, "time_s": float(sum(map(int, times))), "time_source": "program wall time (log)"}
    return {"steps": steps, "time_s": None, "time_source": None}


def fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def fmt_time(s):
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 600 else f"{s / 60:.1f} min"


def collect(a):
    exp = Path(a.exp)
    sets, methods = a.sets.split(), a.methods.split()
    m0 = methods[0]
    asr_exp = Path(a.asr_exp)
    res = {"exp": str(exp), "sets": sets, "methods": methods, "float_model": a.float_model,
           "asr_training": train_cost(asr_exp, asr_exp / "log" / "train.log"),
           "float": {"wer": {m: wer(exp / "float", sets, m) for m in methods}},
           "ft_float": {"wer": {m: wer(exp / "ft_float", sets, m) for m in methods},
                        **train_cost(exp / "ft_float", exp / "ft_float" / "log" / "train.log")},
           "profiles": {}, "quantizers": {}}
    for p in a.profiles.split():
        prof = yaml.safe_load(Path(f"conf/nna/{p}.yaml").read_text())
        aat = exp / f"aat_{p}"
        rep = read_json(aat / "nna_report.json")
        entry = {"weight_bits": prof["weights"]["bits"], "activation_bits": prof["activations"]["bits"],
                 "accumulator_bits": prof["accumulator"]["bits"],
                 "ptq": {"wer": {m: wer(exp / f"ptq_{p}", sets, m) for m in methods}},
                 "ptq_ft": {"wer": {m: wer(exp / "ft_float" / f"ptq_{p}", sets, m) for m in methods}},
                 "aat": {"wer": {m: wer(aat, sets, m) for m in methods}, **train_cost(aat, aat / "log" / "train.log")},
                 "report": None}
        if rep:
            c = rep["conversions"]
            entry["report"] = {"description": rep["profile_description"], "operators": len(rep["operators"]),
                               "fallbacks": len(rep["fallbacks"]), "fallback_kinds": rep["fallback_kinds"],
                               "conversions_per_frame": c["per_encoder_frame"],
                               "conversions_per_token": c["decoder_per_token"]}
        # share of the PTQ degradation that AAT recovers, per set (first method): against the
        # same-budget control (fine-tuned float, its PTQ), and against the model before fine-tuning
        rec, rec0 = {}, {}
        for s in sets:
            t = entry["aat"]["wer"][m0][s]
            f, q = res["ft_float"]["wer"][m0][s], entry["ptq_ft"]["wer"][m0][s]
            rec[s] = (q - t) / (q - f) if None not in (f, q, t) and q - f > 1e-9 else None
            f, q = res["float"]["wer"][m0][s], entry["ptq"]["wer"][m0][s]
            rec0[s] = (q - t) / (q - f) if None not in (f, q, t) and q - f > 1e-9 else None
        entry["recovered"] = rec
        entry["recovered_vs_unfinetuned"] = rec0
        res["profiles"][p] = entry
    for arm in a.arms.split():
        d = exp / "quant" / arm
        size = read_json(d / "size.json") or {}
        t = size.get("total", {})
        kind = "gq" if arm.startswith("gq") else arm[:3]
        label = {"gq": "GQ", "qat": "uniform QAT", "ptq": "uniform PTQ of the fine-tuned float"}[kind]
        label += " mixed" if arm == "gq_mixed" else f" {arm[len(kind):]}-bit"
        cost = train_cost(d / "train", d / "log" / "quantize.log") if kind != "ptq" else \
            {"steps": 0, "time_s": 0.0, "time_source": "no training"}
        res["quantizers"][arm] = {
            "label": label, "kind": "gq_mixed" if arm == "gq_mixed" else kind,
            "wer": {m: wer(d, sets, m) for m in methods},
            **{k: t.get(k) for k in ("avg_bits", "avg_bits_with_tables", "bytes", "bytes_8bit", "bytes_float32",
                                     "vs_8bit", "file_bytes", "file_bytes_8bit", "vs_8bit_file")},
            "packed_file": str(d / "model.packed"), "latency": size.get("latency"), **cost}
    floats = [q["bytes_float32"] for q in res["quantizers"].values() if q["bytes_float32"]]
    res["float"]["bytes_float32"] = floats[0] if floats else None
    return res


def wer_cells(w, sets, methods):
    return [fmt(w[m][s]) for m in methods for s in sets]


def tables(res) -> str:
    sets, methods = res["sets"], res["methods"]
    one = len(methods) == 1
    wer_head = " | ".join(f"WER {s} (%)" if one else f"WER {s} {m} (%)" for m in methods for s in sets)
    nw = len(sets) * len(methods)
    asr = res["asr_training"]
    out = [f"## {res['exp']}", "",
           f"Float model: `{res['float_model']}`, trained in {asr['steps'] if asr['steps'] is not None else '-'} "
           f"steps, {fmt_time(asr['time_s'])} ({asr['time_source'] or 'time unknown'}). "
           f"Decoding: {', '.join(methods)}.", ""]
    fw = res["float"]["wer"]
    for p, e in res["profiles"].items():
        out += [f"### NNA profile {p}", ""]
        if e["report"]:
            out += [f"{e['report']['description']}", ""]
        out += [f"| arm | weights | decoded on | {wer_head} | fine-tuning steps | fine-tuning time |",
                "|---|---|---|" + "---:|" * nw + "---:|---:|"]
        out.append("| float / float | float | float (CPU) | " + " | ".join(wer_cells(fw, sets, methods))
                   + " | - | - |")
        out.append(f"| float-trained / NNA (PTQ) | float, ranges calibrated on dev | NNA integer path | "
                   + " | ".join(wer_cells(e["ptq"]["wer"], sets, methods)) + " | 0 | 0 s |")
        ft = res["ft_float"]
        ft_cost = f" | {ft['steps'] if ft['steps'] is not None else '-'} | {fmt_time(ft['time_s'])} |"
        out.append("| fine-tuned float / float (control) | float fine-tuned, same steps as AAT | float (CPU) | "
                   + " | ".join(wer_cells(ft["wer"], sets, methods)) + ft_cost)
        out.append("| fine-tuned float / NNA (PTQ, control) | float fine-tuned, ranges calibrated on dev | "
                   "NNA integer path | " + " | ".join(wer_cells(e["ptq_ft"]["wer"], sets, methods)) + ft_cost)
        aat = e["aat"]
        out.append(f"| AAT / NNA | accelerator-aware fine-tuned | NNA integer path | "
                   + " | ".join(wer_cells(aat["wer"], sets, methods))
                   + f" | {aat['steps'] if aat['steps'] is not None else '-'} | {fmt_time(aat['time_s'])} |")
        out.append("")
        rec = ", ".join(f"{s} {fmt(100 * r, '.0f')}%" if r is not None else f"{s} - (no PTQ degradation)"
                        for s, r in e["recovered"].items())
        out.append(f"- PTQ degradation recovered by AAT ({methods[0]}), against the same-budget control "
                   f"(fine-tuned float, its PTQ): {rec}")
        rec0 = ", ".join(f"{s} {fmt(100 * r, '.0f')}%" if r is not None else f"{s} -"
                         for s, r in e["recovered_vs_unfinetuned"].items())
        out.append(f"- against the float model before fine-tuning (flattered by the extra training): {rec0}")
        if asr["steps"] and aat["steps"] is not None:
            pct_t = f", {100 * aat['time_s'] / asr['time_s']:.0f}% of its time" if aat["time_s"] and asr["time_s"] \
                else ""
            out.append(f"- AAT fine-tuning cost: {aat['steps']} steps, {fmt_time(aat['time_s'])} "
                       f"({aat['time_source'] or '-'}), against the ASR training's {asr['steps']} steps, "
                       f"{fmt_time(asr['time_s'])}: {100 * aat['steps'] / asr['steps']:.0f}% of its steps{pct_t}")
        if e["report"]:
            r = e["report"]
            kinds = ", ".join(r["fallback_kinds"]) or "none"
            out.append(f"- nna-report: {r['fallbacks']} of {r['operators']} operators fall back to float on the CPU "
                       f"({kinds}); {r['conversions_per_frame']:g} float<->int conversions per encoder frame, "
                       f"{r['conversions_per_token']:g} per emitted token")
        out.append("")

    out += ["### Quantizers (quantize-nna): weights only, activations in float", "",
            f"| method | bits/weight | with codebooks/scales | weight bytes | vs 8-bit | file bytes | file vs 8-bit "
            f"| {wer_head} | fine-tuning steps | fine-tuning time |",
            "|---|" + "---:|" * (6 + nw + 2)]
    q8 = next((q for q in res["quantizers"].values() if q["bytes_8bit"]), None)
    ff = res["float"]["bytes_float32"]
    out.append(f"| float | 32 | 32 | {ff if ff else '-'} | "
               f"{fmt(100 * (ff / q8['bytes_8bit'] - 1), '+.1f') + '%' if ff and q8 else '-'} | - | - | "
               + " | ".join(wer_cells(fw, sets, methods)) + " | - | - |")
    ft = res["ft_float"]
    out.append(f"| float, fine-tuned (control) | 32 | 32 | {ff if ff else '-'} | - | - | - | "
               + " | ".join(wer_cells(ft["wer"], sets, methods))
               + f" | {ft['steps'] if ft['steps'] is not None else '-'} | {fmt_time(ft['time_s'])} |")
    for q in res["quantizers"].values():
        out.append(f"| {q['label']} | {fmt(q['avg_bits'])} | {fmt(q['avg_bits_with_tables'])} | "
                   f"{q['bytes'] if q['bytes'] is not None else '-'} | "
                   f"{fmt(None if q['vs_8bit'] is None else 100 * q['vs_8bit'], '+.1f')}% | "
                   f"{q['file_bytes'] if q['file_bytes'] is not None else '-'} | "
                   f"{fmt(None if q['vs_8bit_file'] is None else 100 * q['vs_8bit_file'], '+.1f')}% | "
                   + " | ".join(wer_cells(q["wer"], sets, methods))
                   + f" | {q['steps'] if q['steps'] is not None else '-'} | {fmt_time(q['time_s'])} |")
    if q8:
        out += ["", f"The 8-bit model: every weight uniform 8-bit per output channel, {q8['bytes_8bit']} bytes of "
                    f"weights ({q8['file_bytes_8bit']} bytes as a file); biases and norms stay float in every row."]
    lat = [(q["label"], q["latency"]) for q in res["quantizers"].values() if q["latency"]]
    if lat:
        out += ["", "### Decoding latency per utterance (greedy, 1 thread, ms), measured side by side in one run", "",
                "| packed model | packed p50 | packed p90 | 8-bit p50 | 8-bit p90 | float p50 | float p90 "
                "| utterances |", "|---|" + "---:|" * 7]
        for label, L in lat:
            cells = [fmt(L[k][p], ".1f") for k in ("packed", "8bit", "float") for p in ("p50_ms", "p90_ms")]
            out.append(f"| {label} | " + " | ".join(cells) + f" | {L['packed']['utterances']} |")
        out += ["", "The packed model is dequantized when loaded, so the three compute the same float operations: "
                    "the packed format saves storage and memory, not arithmetic."]
    return "\n".join(out) + "\n"


def write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True, help="exp/<size> of this recipe")
    ap.add_argument("--asr-exp", required=True, help="asr1's experiment directory (training cost)")
    ap.add_argument("--float-model", required=True)
    ap.add_argument("--profiles", required=True)
    ap.add_argument("--arms", required=True, help="quantizer arms, e.g. 'qat8 ptq8 gq4 gq_mixed'")
    ap.add_argument("--sets", required=True)
    ap.add_argument("--methods", required=True)
    ap.add_argument("--json", required=True, help="write every number here (the plot reads it)")
    ap.add_argument("--out", required=True, help="the markdown tables")
    a = ap.parse_args()
    res = collect(a)
    write_atomic(Path(a.json), json.dumps(res, indent=2) + "\n")
    write_atomic(Path(a.out), tables(res))
    missing = [k for k, v in [("float", res["float"]["wer"]), ("ft_float", res["ft_float"]["wer"])]
               + [(p, e["aat"]["wer"]) for p, e in
                                                                 res["profiles"].items()]
               + [(k, q["wer"]) for k, q in res["quantizers"].items()]
               if any(x is None for m in v.values() for x in m.values())]
    if missing:
        print(f"results_table.py: no WER yet for: {', '.join(missing)}", file=sys.stderr)


if __name__ == "__main__":
    main()
