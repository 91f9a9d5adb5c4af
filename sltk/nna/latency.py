"""Per-utterance decoding latency of several models, measured side by side in one run.

Each utterance is decoded (encoder + greedy search, batch of one, no gradient) by every model in
turn, the order rotating from one utterance to the next so that drifts of the machine (other
load, frequency scaling, caches) fall on every model alike. The first ``warmup`` utterances are
decoded but not timed.

Note: the models are ordinary float-weight PyTorch models (a packed model is dequantized when
loaded), so on a CPU their latencies differ only where their structure differs; the packed
format saves memory and load time, not arithmetic, unless a runtime computes on the codes.
"""

from __future__ import annotations

import time
from typing import Dict, List

import numpy as np
import torch

from sltk.asr.model import Transducer
from sltk.asr.search import greedy_search


def _decode(model: Transducer, feats: torch.Tensor) -> List[int]:
    lens = torch.tensor([feats.size(0)])
    enc, enc_lens = model.encode(feats[None], lens)
    return greedy_search(model, enc, enc_lens)[0]


@torch.no_grad()
def decoding_latency(models: Dict[str, Transducer], cuts, max_utterances: int = 100,
                     warmup: int = 2) -> Dict[str, Dict[str, float]]:
    """{model name: {"p50_ms", "p90_ms", "mean_ms", "utterances"}} over the first
    ``max_utterances`` cuts with features."""
    for m in models.values():
        m.eval()
    names = list(models)
    times: Dict[str, List[float]] = {n: [] for n in names}
    utts = [c for c in cuts if c.has_features][: max_utterances + warmup]
    for i, cut in enumerate(utts):
        feats = torch.from_numpy(np.asarray(cut.load_features(), dtype=np.float32))
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            _decode(models[name], feats)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(1000.0 * dt)
    out = {}
    for name, ts in times.items():
        a = np.asarray(ts) if ts else np.zeros(1)
        out[name] = {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
                     "mean_ms": float(a.mean()), "utterances": len(ts)}
    return out
