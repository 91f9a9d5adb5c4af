#!/usr/bin/env python3
"""What a DP-SGD step costs against a non-private step on the same utterances.

`train-transducer --dp-unit speaker` computes one gradient per privacy unit (a speaker's
sampled utterances) by a forward and backward pass per unit (:func:`sltk.privacy.dpsgd.
per_example_grads`), clips each, sums and adds noise. The non-private step does one forward
and backward over the same utterances together, or in length-sorted batches of
``--max-duration`` seconds as train-transducer's sampler makes them. This times all three on
the same units (and the clipping and noise on their own), so the overhead of per-unit gradients -- what vectorised
per-unit gradients could at best remove -- is measured, not guessed.

    tools/venv/bin/python benchmarks/dpsgd_step.py \
        --cuts egs/assistant/pate1/data/full/split/private/cuts.jsonl.gz \
        --lang-dir egs/assistant/pate1/data/full/lang_bpe_100 \
        --model-config egs/assistant/pate1/conf/model_small.yaml --units 38 --utts-per-unit 4
"""

import argparse
import json
import platform
import resource
import time
from collections import defaultdict


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuts", required=True, help="CutSet with features and speakers")
    ap.add_argument("--lang-dir", required=True)
    ap.add_argument("--model-config", default="")
    ap.add_argument("--units", type=int, default=38, help="speakers per step")
    ap.add_argument("--utts-per-unit", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="timed steps of each kind (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-duration", type=float, default=20.0, help="seconds per bucketed batch (train-transducer's)")
    args = ap.parse_args()

    import torch
    import yaml
    from lhotse import CutSet

    from sltk.asr import loss as L
    from sltk.asr.config import ModelConfig
    from sltk.asr.data import AsrBatches
    from sltk.asr.model import Transducer
    from sltk.asr.train import Tokenizer, load_cuts
    from sltk.privacy.dpsgd import clip_and_noise, per_example_grads

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = Tokenizer(args.lang_dir)
    mdict = yaml.safe_load(open(args.model_config)) if args.model_config else {}
    mdict["vocab_size"] = tok.vocab_size
    model = Transducer(ModelConfig.from_dict(mdict)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    backend = L.default_backend()
    by_spk = defaultdict(list)
    for c in load_cuts(args.cuts, "benchmark"):
        by_spk[c.supervisions[0].speaker].append(c)
    units = [cs[: args.utts_per_unit] for _, cs in sorted(by_spk.items())][: args.units]
    if len(units) < args.units:
        raise SystemExit(f"only {len(units)} speakers in {args.cuts}")
    ds = AsrBatches()

    def loss_of(m, cuts):
        b = ds[CutSet.from_cuts(cuts)]
        losses = m(b["feats"], b["feat_lens"], tok.encode(b["texts"]), backend=backend, prune_range=5)
        # the objective after the loss-weight warm-up (step past warm_step; simple-loss scale 0.5)
        total = L.combine(losses, backend, step=10_000, warm_step=1000, simple_scale=0.5, ctc_weight=m.cfg.ctc_weight)
        return total / b["feat_lens"].sum()

    everything = [c for u in units for c in u]

    def private_step():
        t0 = time.perf_counter()
        grads = per_example_grads(model, loss_of, units, params)
        t1 = time.perf_counter()
        clip_and_noise(grads, 1.0, 1.0, float(len(units)), torch.Generator().manual_seed(0))
        return t1 - t0, time.perf_counter() - t1, sum(g.numel() for g in grads) * 4 / 2 ** 20

    def plain_step():
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        loss_of(model, everything).backward()
        return time.perf_counter() - t0

    # the same utterances as train-transducer batches them: by length, up to --max-duration seconds
    chunks, cur = [], []
    for c in sorted(everything, key=lambda c: c.duration):
        if cur and sum(x.duration for x in cur) + c.duration > args.max_duration:
            chunks.append(cur)
            cur = []
        cur.append(c)
    chunks.append(cur)

    def bucketed_step():
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        for ch in chunks:
            (loss_of(model, ch) * len(ch) / len(everything)).backward()
        return time.perf_counter() - t0

    private_step(), plain_step(), bucketed_step()  # warm-up
    priv = [private_step() for _ in range(args.steps)]
    plain = [plain_step() for _ in range(args.steps)]
    bucketed = [bucketed_step() for _ in range(args.steps)]
    grads_s = sum(p[0] for p in priv) / args.steps
    clip_s = sum(p[1] for p in priv) / args.steps
    plain_s = sum(plain) / args.steps
    bucketed_s = sum(bucketed) / args.steps
    frames = sum(c.num_frames for c in everything)
    print(json.dumps({
        "machine": platform.processor() or platform.machine(), "threads": args.threads, "backend": backend,
        "params_m": sum(p.numel() for p in params) / 1e6, "units": len(units), "utterances": len(everything),
        "frames": frames, "per_unit_grads_s": grads_s, "clip_noise_s": clip_s, "one_batch_s": plain_s,
        "bucketed_batches_s": bucketed_s, "num_bucketed_batches": len(chunks),
        "overhead_vs_one_batch": (grads_s + clip_s) / plain_s,
        "overhead_vs_bucketed": (grads_s + clip_s) / bucketed_s, "stacked_grads_mb": priv[0][2],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
