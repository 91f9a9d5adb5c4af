"""fp16 autocast (AMP) against fp32 for one training step of asr1's Conformer transducer on a fixed
batch (48 x 400 frames, 40 tokens, torchaudio loss): encoder, forward and backward times, then a
torch.profiler table of 3 steps each way. Run on a GPU (on CPU: fp32 timing only, a small batch).

    python benchmarks/amp_step.py
"""
import sys, time, yaml, torch
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
d = yaml.safe_load(open("egs/assistant/asr1/conf/model_conformer.yaml")); d["vocab_size"] = 100
m = Transducer(ModelConfig.from_dict(d)).to(dev).train()
g = torch.Generator().manual_seed(0)
N, T, U = (48, 400, 40) if dev.type == "cuda" else (4, 200, 20)
feats = torch.randn(N, T, 80, generator=g).to(dev); lens = torch.full((N,), T, dtype=torch.long).to(dev)
ys = torch.randint(3, 100, (N, U), generator=g).tolist()
def sync():
    if dev.type == "cuda": torch.cuda.synchronize()
for amp in ((False, True, False, True) if dev.type == "cuda" else (False,)):
    res = {}
    for it in range(8):
        sync(); t0 = time.time()
        with torch.autocast(device_type=dev.type, enabled=amp):
            enc, el = m.encode(feats, lens); sync(); t1 = time.time()
            losses = m(feats, lens, ys, backend="torchaudio")
        sync(); t2 = time.time()
        sum(losses.values()).backward(); sync(); t3 = time.time()
        m.zero_grad(set_to_none=True)
        if it >= 3:
            for k, v in (("encode", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2)):
                res[k] = res.get(k, 0) + v / 5
    print(f"amp={amp}: " + " ".join(f"{k} {v*1000:.1f} ms" for k, v in res.items()), f"frames/s {N*T/(res['forward']+res['backward']):.0f}", flush=True)
if dev.type == "cuda":
    from torch.profiler import profile, ProfilerActivity
    for amp in (False, True):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                with torch.autocast(device_type="cuda", enabled=amp):
                    losses = m(feats, lens, ys, backend="torchaudio")
                sum(losses.values()).backward(); m.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
        print(f"--- profile amp={amp}"); print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=50))
