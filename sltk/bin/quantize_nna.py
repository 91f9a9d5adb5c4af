"""quantize-nna: sub-8-bit weights for a trained transducer, exported as a packed model file.

Methods: ``gq`` (General Quantizer: quantization-aware fine-tuning with self-adjustable mu-law
centroids, :mod:`sltk.nna.gq`), ``qat`` (uniform per-channel quantization-aware fine-tuning) and
``ptq`` (uniform per-channel min/max, no training) (:mod:`sltk.nna.uniform`). Fine-tuning is
train-transducer's training (same data pipeline, checkpoints and resume) started from the
float checkpoint with the quantizers attached.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import click
import yaml

from sltk.asr.checkpoint import load_model, read_checkpoint
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open

log = logging.getLogger("sltk")

METHODS = ("gq", "qat", "ptq")


def _allocation(bits, allocation):
    from sltk.nna.qparam import BitAllocation

    if allocation:
        return BitAllocation.from_yaml(allocation, default_bits=bits if bits is not None else "unset")
    if bits is None:
        raise UserError("give --bits or --allocation")
    return BitAllocation.uniform(bits)


def _anneal_steps(anneal_steps: int, fraction: float, cfg) -> int:
    """--anneal-steps, or (when 0) ``fraction`` of the training steps, estimated from the
    training audio and --max-duration when --max-steps does not fix them."""
    from sltk.asr.train import load_cuts

    if anneal_steps > 0:
        return anneal_steps
    if not 0 < fraction <= 1:
        raise UserError(f"--anneal-fraction must be in (0, 1], got {fraction}")
    if cfg.max_steps:
        total = cfg.max_steps
    else:
        audio = sum(c.duration for c in load_cuts(cfg.cuts_train, "training"))
        total = cfg.num_epochs * max(1, round(audio / cfg.max_duration))
    return max(1, round(fraction * total))


def _finished(exp: Path, cfg) -> bool:
    """Whether the experiment's newest checkpoint is already the end of the training asked for."""
    from sltk.asr.train import checkpoints

    ckpts = checkpoints(exp)
    if not ckpts:
        return False
    step, last = ckpts[-1]
    if cfg.max_steps and step >= cfg.max_steps:
        return True
    obj = read_checkpoint(last)
    return bool(obj.get("end_of_epoch")) and obj.get("epoch", 0) >= cfg.num_epochs


def _fine_tune(method, checkpoint, alloc, kw):
    """Train with the quantizer hook from the float checkpoint (or resume); returns the newest
    checkpoint of the experiment directory."""
    from sltk.asr.train import TrainConfig, checkpoints, prepare, train
    from sltk.nna.gq import GQHook, TauSchedule
    from sltk.nna.uniform import UniformHook

    if not kw["exp_dir"] or not kw["cuts_train"] or not kw["lang_dir"]:
        raise UserError(f"--method {method} fine-tunes: give --exp-dir, --cuts-train and --lang-dir")
    obj = read_checkpoint(checkpoint)
    train_keys = ("cuts_train", "cuts_dev", "lang_dir", "exp_dir", "loss", "num_epochs", "max_steps", "max_duration",
                  "lr", "warmup_steps", "warm_step", "spec_augment", "save_every_n", "seed", "device", "log_every",
                  "num_workers")
    cfg = TrainConfig(model=dict(obj["model_config"]), init_checkpoint=str(checkpoint),
                      **{k: kw[k] for k in train_keys})
    cfg.average_last = 0  # averaging would mix codebook assignments
    mcfg, backend = prepare(cfg)
    if method == "gq":
        mu = kw["mu"] if kw["mu"] == "auto" else float(kw["mu"])
        sched = TauSchedule(tau0=kw["tau0"], start=kw["anneal_start"],
                            steps=_anneal_steps(kw["anneal_steps"], kw["anneal_fraction"], cfg),
                            shape=kw["anneal_shape"], tau_min=kw["tau_min"])
        hook = GQHook(alloc, sched, mu=mu, learn_mu=kw["learn_mu"])
        log.info("GQ: tau %g annealed (%s) over steps %d..%d, hard from step %d", sched.tau0, sched.shape,
                 sched.start + 1, sched.start + sched.steps, sched.hard_from)
        extra = {"schedule": asdict(sched), "mu": kw["mu"], "learn_mu": kw["learn_mu"]}
    else:
        hook = UniformHook(alloc, learn_scale=kw["scale"] == "lsq")
        extra = {"scale": kw["scale"]}
    with atomic_open(Path(cfg.exp_dir) / "quantize.yaml") as f:
        yaml.safe_dump({"method": method, "checkpoint": str(checkpoint), "allocation": alloc.to_dict(), **extra,
                        "train": {k: v for k, v in asdict(cfg).items() if k != "model"}, "model": mcfg.to_dict()},
                       f, sort_keys=False)
    if _finished(Path(cfg.exp_dir), cfg):
        log.info("%s: fine-tuning already finished; packing its last checkpoint", cfg.exp_dir)
    else:
        train(0, cfg, mcfg, backend, hooks=[hook])
    ckpts = checkpoints(Path(cfg.exp_dir))
    if not ckpts:
        raise UserError(f"{cfg.exp_dir}: training wrote no checkpoint")
    last_step, last = ckpts[-1]
    if method == "gq" and last_step < hook.schedule.hard_from - 1:
        log.warning("training stopped at step %d, before tau reached 0 (step %d): the packed model is the hard "
                    "assignment of weights trained soft; train longer or shorten the annealing", last_step,
                    hook.schedule.hard_from)
    return last


@program(name="quantize-nna", examples=[
    "quantize-nna --method gq --bits 4 --cuts-train exp/fbank/train/cuts.jsonl.gz --lang-dir data/lang_bpe_500 "
    "--exp-dir exp/gq4 exp/rnnt/avg-4-5.pt exp/gq4/model.packed",
    "quantize-nna --method gq --allocation conf/alloc_mixed.yaml ... --report exp/gqmix/size.json "
    "exp/rnnt/avg-4-5.pt exp/gqmix/model.packed",
    "quantize-nna --method ptq --bits 5 exp/rnnt/avg-4-5.pt exp/ptq5/model.packed   # no training data needed",
])
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--method", type=click.Choice(METHODS), default="gq",
              help="gq: General Quantizer QAT; qat: uniform per-channel QAT; ptq: uniform per-channel min/max, "
                   "no training.")
@click.option("--bits", type=click.IntRange(1, 8), default=None,
              help="Bits of every weight (the default of --allocation when both are given).")
@click.option("--allocation", type=click.Path(dir_okay=False), default=None,
              help="YAML bit allocation: {default: B|float, layers: {glob: B|float}} (sltk.nna.qparam).")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write the per-tensor size report (packed vs 8-bit vs float32 bytes) as JSON.")
@click.option("--latency-cuts", default=None,
              help="CutSet with features: also measure per-utterance greedy decoding latency (p50/p90) of the "
                   "packed, 8-bit and float models side by side.")
@click.option("--latency-utterances", default=100, type=int, help="Utterances timed for --latency-cuts.")
# fine-tuning (gq, qat): train-transducer's options
@click.option("--cuts-train", default="", help="gq/qat: training CutSet with features.")
@click.option("--cuts-dev", default="", help="gq/qat: dev CutSet: loss after each epoch.")
@click.option("--lang-dir", default="", help="gq/qat: lang directory with bpe.model.")
@click.option("--exp-dir", default="", help="gq/qat: experiment directory (checkpoints); rerun to resume.")
@click.option("--loss", default="auto", help="RNN-T loss: auto, k2, torchaudio, torch.")
@click.option("--num-epochs", default=2, type=int, help="Fine-tuning epochs.")
@click.option("--max-steps", default=0, type=int, help="Stop after N steps (0: no limit).")
@click.option("--max-duration", default=200.0, type=float, help="Seconds of audio per batch.")
@click.option("--lr", default=2e-4, type=float, help="Peak learning rate of the fine-tuning.")
@click.option("--warmup-steps", default=100, type=int, help="Learning-rate warm-up steps.")
@click.option("--warm-step", default=1, type=int,
              help="k2 loss-weight warm-up steps (the float model is trained already).")
@click.option("--spec-augment/--no-spec-augment", default=True, help="SpecAugment in fine-tuning.")
@click.option("--save-every-n", default=500, type=int, help="Checkpoint every N steps.")
@click.option("--seed", default=42, type=int, help="Random seed.")
@click.option("--device", default="auto", help="auto, cpu or cuda.")
@click.option("--log-every", default=20, type=int, help="Log every N steps.")
@click.option("--num-workers", default=0, type=int, help="DataLoader worker processes.")
# GQ
@click.option("--tau0", default=0.5, type=float, help="gq: initial temperature (in centroid spacings).")
@click.option("--anneal-start", default=0, type=int, help="gq: steps at tau0 before annealing.")
@click.option("--anneal-steps", default=0, type=int,
              help="gq: annealing steps, after which tau is 0 (hard); 0: --anneal-fraction of the training.")
@click.option("--anneal-fraction", default=0.7, type=float,
              help="gq: with --anneal-steps 0, anneal over this fraction of the (estimated) training steps.")
@click.option("--anneal-shape", default="exp", type=click.Choice(["exp", "linear", "cosine"]),
              help="gq: annealing curve (exp: geometric from tau0 to --tau-min).")
@click.option("--tau-min", default=0.01, type=float, help="gq: last temperature of the exp curve before 0.")
@click.option("--mu", default="auto", help="gq: mu-law mu of the centroid layout, or auto (fitted per tensor).")
@click.option("--learn-mu/--no-learn-mu", default=False, help="gq: learn mu along with the scale.")
# QAT
@click.option("--scale", default="lsq", type=click.Choice(["lsq", "minmax"]),
              help="qat: learned step sizes (LSQ) or min/max of the current weights.")
def main(checkpoint, out, method, bits, allocation, report, latency_cuts, latency_utterances, **kw):
    """Quantize a transducer's weights to 1..8 bits (GQ, uniform QAT or PTQ) into a packed model file."""
    from sltk.nna import pack
    from sltk.nna.qparam import average_bits

    if kw["mu"] != "auto":
        try:
            if float(kw["mu"]) <= 0:
                raise ValueError
        except ValueError:
            raise UserError(f"--mu must be auto or a positive number, got {kw['mu']!r}") from None
    alloc = _allocation(bits, allocation)
    obj = read_checkpoint(checkpoint)  # a clear error before any work
    if obj.get("transforms"):
        kinds = ", ".join(t.get("kind", "?") for t in obj["transforms"])
        raise UserError(f"{checkpoint} is already quantized ({kinds}); give the float checkpoint")
    if method == "ptq":
        from sltk.nna.uniform import apply_ptq

        model = load_model(checkpoint)
        resolved = apply_ptq(model, alloc)
        quant = {"method": "ptq", "bits": resolved, "allocation": alloc.to_dict()}
    else:
        last = _fine_tune(method, checkpoint, alloc, kw)
        log.info("packing %s", last)
        model = load_model(last)
        transforms = read_checkpoint(last).get("transforms") or []
        quant = {"method": method, **(transforms[-1] if transforms else {})}
        resolved = quant.get("bits", {})
    obj = pack.save_packed(out, model, "gq" if method == "gq" else "uniform", quant)
    rep = pack.size_report(obj, pack.file_size(out))
    log.info("size report (bytes):\n%s", pack.format_report(rep))
    if report:
        with atomic_open(report) as f:
            json.dump(rep, f, indent=2)
    if latency_cuts:
        _latency(checkpoint, out, obj, latency_cuts, latency_utterances, report)
    t = rep["total"]
    n_q = sum(1 for b in resolved.values() if b is not None)
    summary(n_q, len(resolved), what="weight tensors quantized",
            extra=f"{average_bits(resolved, model):.2f} bits/weight on average; {out}: {t['file_bytes']} bytes "
                  f"({t['bytes']} of weights) vs {t['file_bytes_8bit']} ({t['bytes_8bit']}) for the 8-bit model: "
                  f"{100 * t['vs_8bit']:+.2f}% weights, {100 * t['vs_8bit_file']:+.2f}% file")


def _latency(checkpoint, out, obj, cuts_path, n, report) -> None:
    from sltk.asr.config import ModelConfig
    from sltk.asr.model import Transducer
    from sltk.asr.train import load_cuts
    from sltk.nna import pack
    from sltk.nna.latency import decoding_latency

    ref = pack.reference_object(obj)
    eight = Transducer(ModelConfig.from_dict(ref["model_config"]))
    eight.load_state_dict(pack.unpack_state(ref))
    models = {"packed": pack.load_packed(out), "8bit": eight, "float": load_model(checkpoint)}
    lat = decoding_latency(models, load_cuts(cuts_path, "latency"), max_utterances=n)
    for name, r in lat.items():
        log.info("latency %-6s p50 %.1f ms p90 %.1f ms (%d utterances)", name, r["p50_ms"], r["p90_ms"],
                 r["utterances"])
    if report:
        rep = json.loads(Path(report).read_text())
        rep["latency"] = lat
        with atomic_open(report) as f:
            json.dump(rep, f, indent=2)


if __name__ == "__main__":
    main()
