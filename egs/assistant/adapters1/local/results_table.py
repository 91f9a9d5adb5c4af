#!/usr/bin/env python3
"""Collect the numbers of the adapters1 recipe (compute-wer's wer.json with --terms) into one JSON
file, write the results tables (markdown) and plot new-word recall and general WER against the
number of fused adapters.

Tables: every model (base; each adapter alone; sum, average and attention fusion of adapters
1..K; the sum in reverse order; the sequential fine-tuning after each step) with its general
test WER, the relative change against the base, and the new-word recall on every set; the
independence matrix (recall on set k as adapters are added); the sequential baseline's recall
after each step in each order (forgetting, order dependence); adapter size next to the base."""

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from sltk.utils.io import atomic_open


def read_json(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def model_numbers(exp: Path, name: str, n_sets: int, method: str):
    d = exp / "decode" / name
    g = read_json(d / "general" / method / "scoring" / "wer.json")
    out = {"general_wer": None if g is None else g["wer"], "recall": {}, "set_wer": {}, "precision": {}}
    for k in range(1, n_sets + 1):
        w = read_json(d / f"set{k}" / method / "scoring" / "wer.json")
        t = (w or {}).get("terms") or {}
        out["recall"][k] = t.get("recall")
        out["precision"][k] = t.get("precision")
        out["set_wer"][k] = None if w is None else w["wer"]
    return out


def n_params(state) -> int:
    return sum(v.numel() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


def sizes(exp: Path, base_model: str, n_sets: int):
    base = torch.load(base_model, map_location="cpu")
    bp = n_params(base["model"])
    out = {"base_params": bp, "base_bytes_fp32": 4 * bp, "adapters": {}}
    for k in range(1, n_sets + 1):
        f = exp / "adapters" / f"set{k}.adapter"
        if f.is_file():
            obj = torch.load(f, map_location="cpu")
            state = next((obj[key] for key in ("state_dict", "state", "weights") if key in obj), {})
            out["adapters"][k] = {"params": n_params(state), "file_bytes": f.stat().st_size}
    return out


def rel(w, b):
    return None if w is None or b is None or b == 0 else 100.0 * (w - b) / b


def collect(a):
    exp, n = Path(a.exp), a.num_sets
    names = ["base"] + [f"alone{k}" for k in range(1, n + 1)]
    for m in ("sum", "average", "attention"):
        names += [f"{m}_{K}" for K in range(1, n + 1)]
    names.append(f"sum_{n}_reversed")
    for o in a.seq_orders.split():
        names += [f"seq_{o}_step{i}" for i in range(1, len(o) + 1)]
    models = {nm: model_numbers(exp, nm, n, a.method) for nm in names}
    b = models["base"]["general_wer"]
    for nm, r in models.items():
        r["general_rel"] = rel(r["general_wer"], b)
        own = covered_sets(nm, n, a.seq_orders)
        vals = [r["recall"][k] for k in own if r["recall"][k] is not None]
        r["covered_sets"] = own
        r["mean_recall_covered"] = sum(vals) / len(vals) if vals and len(vals) == len(own) else None
    words = {k: (Path(a.data) / "words" / f"set{k}.txt").read_text().split() for k in range(1, n + 1)
             if (Path(a.data) / "words" / f"set{k}.txt").is_file()}
    return {"exp": str(exp), "method": a.method, "num_sets": n, "seq_orders": a.seq_orders.split(),
            "base_model": a.base_model, "adapter_config": Path(a.adapter_config).read_text(),
            "words": words, "models": models, "sizes": sizes(exp, a.base_model, n)}


def covered_sets(name: str, n: int, orders: str):
    """The new-word sets a model was trained for."""
    if name == "base":
        return []
    if name.startswith("alone"):
        return [int(name[5:])]
    if name.startswith("seq_"):
        o, step = name[4:].split("_step")
        return sorted(int(c) for c in o[: int(step)])
    if name.endswith("_reversed"):
        return list(range(1, n + 1))
    return list(range(1, int(name.rsplit("_", 1)[1]) + 1))


LABEL = {"sum": "sum", "average": "average", "attention": "attention"}


def label(name: str) -> str:
    if name == "base":
        return "base (no adapter)"
    if name.startswith("alone"):
        return f"adapter {name[5:]} alone"
    if name.startswith("seq_"):
        o, step = name[4:].split("_step")
        return f"sequential FT, order {'-'.join(o)}, after step {step} (set {o[int(step) - 1]})"
    if name.endswith("_reversed"):
        return f"sum of adapters {name.split('_')[1]}..1 (reverse order)"
    m, K = name.rsplit("_", 1)
    return f"{LABEL[m]} fusion, adapters 1..{K}"


def tables(res) -> str:
    n, ms = res["num_sets"], res["models"]
    out = [f"## {res['exp']}", "", f"Base model: `{res['base_model']}`; decoding: {res['method']}; "
           f"new-word recall per word occurrence (compute-wer --terms); general = asr1's test set.", ""]
    head = "| model | general WER (%) | rel. change (%) | " + " | ".join(f"recall set {k}" for k in range(1, n + 1)) \
        + " | mean recall, own sets |"
    out += [head, "|---|" + "---:|" * (n + 3)]
    for nm, r in ms.items():
        cells = []
        for k in range(1, n + 1):
            c = fmt(r["recall"][k], ".1f")
            cells.append(f"**{c}**" if k in r["covered_sets"] and c != "-" else c)
        out.append(f"| {label(nm)} | {fmt(r['general_wer'])} | {fmt(r['general_rel'], '+.1f')} | "
                   + " | ".join(cells) + f" | {fmt(r['mean_recall_covered'], '.1f')} |")
    out += ["", "Bold: a set the model was trained for. Relative change: of the general WER against the base.", ""]

    out += ["### Independence: recall on set k as adapters 1..K are fused", ""]
    for m in ("sum", "average", "attention"):
        out += [f"{m} fusion:", "", "| set | " + " | ".join(f"K={K}" for K in range(1, n + 1)) + " | alone |",
                "|---|" + "---:|" * (n + 1)]
        for k in range(1, n + 1):
            cells = [fmt(ms[f"{m}_{K}"]["recall"][k], ".1f") if K >= k else "" for K in range(1, n + 1)]
            out.append(f"| {k} | " + " | ".join(cells) + f" | {fmt(ms[f'alone{k}']['recall'][k], '.1f')} |")
        out.append("")
    fwd, rev = ms[f"sum_{n}"], ms[f"sum_{n}_reversed"]
    diffs = [abs(fwd["recall"][k] - rev["recall"][k]) for k in range(1, n + 1)
             if fwd["recall"][k] is not None and rev["recall"][k] is not None]
    if diffs:
        out += [f"Order: sum of adapters 1..{n} against {n}..1: largest recall difference over the sets "
                f"{max(diffs):.2f} points; general WER {fmt(fwd['general_wer'])} vs {fmt(rev['general_wer'])}.", ""]

    out += ["### Sequential fine-tuning of the whole model (the baseline)", ""]
    for o in res["seq_orders"]:
        out += [f"Order {'-'.join(o)}:", "", "| after step | general WER (%) | "
                + " | ".join(f"recall set {k}" for k in range(1, n + 1)) + " |", "|---|" + "---:|" * (n + 1)]
        for i in range(1, len(o) + 1):
            r = ms[f"seq_{o}_step{i}"]
            out.append(f"| {i} (set {o[i - 1]}) | {fmt(r['general_wer'])} | "
                       + " | ".join(fmt(r["recall"][k], ".1f") for k in range(1, n + 1)) + " |")
        out.append("")

    sz = res["sizes"]
    out += ["### Sizes", "", "| what | parameters | bytes |", "|---|---:|---:|",
            f"| base model (float32 weights) | {sz['base_params']} | {sz['base_bytes_fp32']} |"]
    for k, s in sz["adapters"].items():
        out.append(f"| adapter {k} (file) | {s['params']} ({100 * s['params'] / sz['base_params']:.2f}% of the base) "
                   f"| {s['file_bytes']} |")
    out += ["", "Adapter configuration:", "", "```yaml", res["adapter_config"].rstrip(), "```", ""]
    return "\n".join(out) + "\n"


def plot(res, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, ms = res["num_sets"], res["models"]
    Ks = list(range(1, n + 1))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m, mk in (("sum", "o"), ("average", "s"), ("attention", "D")):
        a1.plot(Ks, [ms[f"{m}_{K}"]["mean_recall_covered"] for K in Ks], marker=mk, label=f"{m} fusion")
        a2.plot(Ks, [ms[f"{m}_{K}"]["general_wer"] for K in Ks], marker=mk, label=f"{m} fusion")
    alone = [ms[f"alone{k}"]["recall"][k] for k in Ks]
    a1.plot(Ks, alone, "k^", ls="none", label="adapter k alone (on set k)")
    base_rec = [ms["base"]["recall"][k] for k in Ks]
    a1.plot(Ks, base_rec, "kx", ls="none", label="base (on set k)")
    for o in res["seq_orders"]:
        pts = [(i, ms[f"seq_{o}_step{i}"]["mean_recall_covered"]) for i in range(1, len(o) + 1)]
        a1.plot([p[0] for p in pts], [p[1] for p in pts], ls="--", marker=".", label=f"sequential FT {'-'.join(o)}")
        a2.plot(range(1, len(o) + 1), [ms[f"seq_{o}_step{i}"]["general_wer"] for i in range(1, len(o) + 1)],
                ls="--", marker=".", label=f"sequential FT {'-'.join(o)}")
    bw = ms["base"]["general_wer"]
    if bw is not None:
        a2.axhline(bw, color="grey", ls=":", label="base")
        a2.axhline(bw * 1.01, color="red", lw=0.7, ls=":", label="base + 1% relative")
    a1.set_xlabel("K (adapters fused / sets trained)")
    a1.set_ylabel("new-word recall on the covered sets (%)")
    a2.set_xlabel("K")
    a2.set_ylabel("general test WER (%)")
    for ax in (a1, a2):
        ax.set_xticks(Ks)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{res['exp']}: new words with adapters")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--num-sets", type=int, required=True)
    ap.add_argument("--seq-orders", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--base-model", required=True)
    ap.add_argument("--adapter-config", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", required=True)
    a = ap.parse_args()
    res = collect(a)
    with atomic_open(a.json, "w") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    with atomic_open(a.out, "w") as f:
        f.write(tables(res))
    plot(res, Path(a.plot))


if __name__ == "__main__":
    main()
