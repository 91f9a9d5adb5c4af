#!/usr/bin/env python3
"""Decoding real-time factor per method, side by side on the same model and cuts.

Runs decode-transducer once with every method (one process, 1 torch thread) and tabulates the
rtf.json files it writes, with the WER of each method against the cuts' transcripts.

    tools/venv/bin/python benchmarks/decode_rtf.py --checkpoint exp/.../avg-3-4.pt \
        --cuts .../fbank/test/cuts.jsonl.gz --lang-dir .../lang_bpe_500 --num-cuts 200
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = "greedy modified_beam fast_beam fast_beam_LG ctc_greedy ctc_H ctc_HLG ctc_HLG_nbest"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--cuts", required=True)
    ap.add_argument("--lang-dir", required=True)
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--num-cuts", type=int, default=200)
    args = ap.parse_args()
    from lhotse import CutSet

    from sltk.decode.scoring import compute_wer

    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "cuts.jsonl.gz"
        CutSet.from_file(args.cuts).subset(first=args.num_cuts).to_file(sub)
        cmd = [sys.executable, "-m", "sltk.bin.decode_transducer", "--checkpoint", args.checkpoint,
               "--cuts", str(sub), "--lang-dir", args.lang_dir, "--out-dir", tmp, "--num-threads", "1"]
        for m in args.methods.split():
            cmd += ["--method", m]
        subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        print(f"{args.num_cuts} utterances of {args.cuts}, 1 torch thread\n")
        print("| method | RTF | WER (%) |")
        print("|---|---:|---:|")
        for m in args.methods.split():
            rtf = json.loads((Path(tmp) / m / "rtf.json").read_text())
            read = lambda p: dict((l.split(" ", 1) + [""])[:2] for l in p.read_text().splitlines())
            wer = compute_wer(read(Path(tmp) / m / "ref.txt"), read(Path(tmp) / m / "hyp.txt")).total.wer
            print(f"| {m} | {rtf['rtf']:.4f} | {wer:.2f} |")


if __name__ == "__main__":
    main()
