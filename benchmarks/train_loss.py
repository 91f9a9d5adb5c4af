#!/usr/bin/env python3
"""Training throughput and peak memory: k2's pruned RNN-T loss vs torchaudio's full loss (and
the pure-torch reference) on the same model and the same batches.

Each backend runs in its own subprocess (so peak RSS is its own): W warm-up steps, then N
timed steps of forward + backward + optimizer step on identical batches drawn from a CutSet
with features (or random features when none is given). Prints a markdown table.

    tools/venv/bin/python benchmarks/train_loss.py \
        --cuts egs/assistant/asr1/data/full/fbank/train/cuts.jsonl.gz \
        --lang-dir egs/assistant/asr1/data/full/lang_bpe_500 \
        --model-config egs/assistant/asr1/conf/model_conformer.yaml
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def worker(args):
    import torch
    import yaml

    from sltk.asr.config import ModelConfig
    from sltk.asr.data import AsrBatches
    from sltk.asr.model import Transducer
    from sltk.asr.train import Tokenizer, load_cuts

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = Tokenizer(args.lang_dir)
    mdict = yaml.safe_load(open(args.model_config)) if args.model_config else {}
    mdict["vocab_size"] = tok.vocab_size
    model = Transducer(ModelConfig.from_dict(mdict))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cuts = load_cuts(args.cuts, "benchmark").subset(first=args.batch_size * (args.steps + args.warmup))
    cuts = list(cuts)
    ds = AsrBatches()
    from lhotse import CutSet

    batches = [ds[CutSet.from_cuts(cuts[i * args.batch_size:(i + 1) * args.batch_size])]
               for i in range(args.steps + args.warmup)]
    frames = 0
    t0 = None
    for i, b in enumerate(batches):
        if i == args.warmup:
            t0 = time.perf_counter()
        losses = model(b["feats"], b["feat_lens"], tok.encode(b["texts"]), backend=args.backend, prune_range=5)
        total = sum(losses.values())
        opt.zero_grad()
        (total / b["feat_lens"].sum()).backward()
        opt.step()
        if i >= args.warmup:
            frames += int(b["feat_lens"].sum())
    elapsed = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"backend": args.backend, "frames_per_s": frames / elapsed, "peak_rss_mb": peak_mb,
                      "steps": args.steps, "batch_size": args.batch_size,
                      "params_m": sum(p.numel() for p in model.parameters()) / 1e6}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuts", required=True)
    ap.add_argument("--lang-dir", required=True)
    ap.add_argument("--model-config", default="")
    ap.add_argument("--backends", default="k2,torchaudio,torch")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.backend:
        return worker(args)
    rows = []
    for b in args.backends.split(","):
        cmd = [sys.executable, __file__, "--backend", b] + [a for a in sys.argv[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            rows.append({"backend": b, "error": r.stderr.strip().splitlines()[-1][:100]})
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} torch thread(s); batch {args.batch_size} utterances, {args.steps} timed steps\n")
    print("| RNN-T loss | frames/s (train step) | peak RSS (MB) |")
    print("|---|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | failed: {r['error']} | |")
        else:
            print(f"| {r['backend']} | {r['frames_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
