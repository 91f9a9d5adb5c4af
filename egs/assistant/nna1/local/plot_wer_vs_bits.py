#!/usr/bin/env python3
"""Plot WER against average bits per weight for every method of the nna1 recipe, one panel per
test set, from the JSON that local/results_table.py writes: the float model (32 bits), uniform
PTQ and GQ at each bit width (lines), uniform QAT, GQ with the mixed allocation, and the NNA
arms (PTQ and AAT on each profile's integer path, at the profile's weight bits)."""

import argparse
import json
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {  # kind: (label, marker, line)
    "ptq": ("uniform PTQ (of the fine-tuned float)", "s", "-"),
    "qat": ("uniform QAT", "D", "-"),
    "gq": ("GQ", "o", "-"),
    "gq_mixed": ("GQ mixed", "*", ""),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", required=True, help="results.json of local/results_table.py")
    ap.add_argument("--out", required=True, help="the PNG to write")
    a = ap.parse_args()
    res = json.loads(Path(a.json).read_text())
    sets, m0 = res["sets"], res["methods"][0]
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.2), squeeze=False)
    for ax, s in zip(axes[0], sets):
        fw = res["float"]["wer"][m0][s]
        if fw is not None:
            ax.axhline(fw, color="grey", lw=0.8, ls=":")
            ax.plot([32], [fw], "k^", ms=8, label="float")
        ftw = (res.get("ft_float") or {}).get("wer", {}).get(m0, {}).get(s)
        if ftw is not None:
            ax.axhline(ftw, color="grey", lw=0.8, ls="--")
            ax.plot([32], [ftw], "kv", ms=8, label="float, fine-tuned (control)")
        for kind, (label, marker, line) in STYLE.items():
            pts = sorted((q["avg_bits"], q["wer"][m0][s]) for q in res["quantizers"].values()
                         if q["kind"] == kind and q["avg_bits"] is not None and q["wer"][m0][s] is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ls=line or "none",
                        ms=9 if marker == "*" else 6, label=label)
        for i, (p, e) in enumerate(res["profiles"].items()):
            for arm, marker in (("ptq", "x"), ("aat", "P")):
                w = e[arm]["wer"][m0][s]
                if w is not None:
                    # a small horizontal offset keeps the NNA points at 8 bits apart
                    ax.plot([e["weight_bits"] * (1 + 0.03 * (i + 1))], [w], marker=marker, ls="none", ms=8,
                            label=f"NNA {p}: {'PTQ' if arm == 'ptq' else 'AAT'}")
        ax.set_xscale("log", base=2)
        ticks = [1, 2, 3, 4, 5, 6, 8, 16, 32]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.set_xlabel("average bits per weight")
        ax.set_ylabel(f"WER (%), {m0}")
        ax.set_title(s)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{res['exp']}: WER against bits per weight")
    fig.tight_layout()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
