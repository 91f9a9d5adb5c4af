"""train-transducer: train an RNN-T (LSTM or Conformer encoder) with k2's pruned loss."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import fields
from typing import List

import click
import yaml

from sltk.asr.train import TrainConfig, TrainHook, prepare, train
from sltk.utils.cli import program, setup_logging
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

HELP = {
    "cuts_train": "Training CutSet with features (compute-features output).",
    "cuts_dev": "Dev CutSet with features: loss after each epoch.",
    "lang_dir": "Lang directory with bpe.model (prepare-lang output).",
    "exp_dir": "Experiment directory: checkpoints, logs, TensorBoard; rerun to resume.",
    "loss": "RNN-T loss: auto (k2 if importable, else torchaudio, else torch), k2, torchaudio, torch.",
    "prune_range": "k2 pruned loss: symbols kept per frame.",
    "simple_loss_scale": "k2: final weight of the simple loss after warm-up.",
    "am_scale": "k2 smoothed loss: am-only scale.",
    "lm_scale": "k2 smoothed loss: lm-only scale.",
    "warm_step": "k2: steps over which the loss weights warm up.",
    "num_epochs": "Epochs.",
    "max_duration": "Seconds of audio per batch (per process).",
    "num_buckets": "Duration buckets of the dynamic bucketing sampler.",
    "num_workers": "DataLoader worker processes.",
    "lr": "Peak learning rate (AdamW).",
    "warmup_steps": "Linear learning-rate warm-up, then inverse square-root decay.",
    "weight_decay": "AdamW weight decay.",
    "clip_grad": "Gradient-norm clipping.",
    "spec_augment": "SpecAugment (frequency and time masks).",
    "freq_warp": "VTLP: per-utterance frequency-warp factor drawn from this range, e.g. --freq-warp 0.9 1.1 "
                 "(1 1: off); applied to the log-mel features as Kaldi's VTLN warps the filter bank.",
    "noise_cuts": "CutSet of noise recordings with features, mixed in at random SNR.",
    "noise_snr": "SNR range in dB for noise mixing, e.g. --noise-snr 10 20.",
    "noise_prob": "Probability of mixing noise into an utterance.",
    "save_every_n": "Save a checkpoint every N steps (and at every epoch end).",
    "keep_last_k": "Step checkpoints kept.",
    "average_last": "At the end, average the last N epoch checkpoints into avg-A-B.pt.",
    "seed": "Random seed.",
    "device": "auto, cpu or cuda.",
    "amp": "Mixed precision (fp16 autocast) on CUDA; off by default: the small Conformer trained 6x slower with it on an H200 (asr1 RESULTS.md).",
    "world_size": "Data-parallel processes (torch.distributed; gloo on CPU, nccl on GPU).",
    "max_steps": "Stop after N steps (0: no limit).",
    "log_every": "Log (and TensorBoard) every N steps.",
    "init_checkpoint": "Fine-tune from the weights of this checkpoint (fresh optimizer and schedule) when "
                       "--exp-dir has no checkpoint yet.",
    "dp_noise_multiplier": "DP-SGD: Gaussian noise std / clipping norm (> 0 turns DP-SGD on: Poisson-sampled batches "
                           "of rate max-duration / the units' duration, per-unit clipping, RDP accounting into "
                           "EXP_DIR/privacy.json).",
    "dp_target_eps": "DP-SGD: instead of --dp-noise-multiplier, the smallest noise reaching this eps (at --dp-delta) "
                     "after the run's steps (--max-steps, else num-epochs passes).",
    "dp_max_grad_norm": "DP-SGD: clipping norm of one privacy unit's gradient.",
    "dp_delta": "DP-SGD: delta of the (eps, delta) guarantee.",
    "dp_unit": "DP-SGD privacy unit, sampled and clipped as one: utterance or speaker.",
    "dp_max_utts": "DP-SGD, --dp-unit speaker: utterances of a sampled speaker used in one step.",
}


def _options(f):
    for fld in reversed([x for x in fields(TrainConfig) if x.name != "model"]):
        default = fld.default if fld.default is not fld.default_factory else None  # type: ignore
        name = "--" + fld.name.replace("_", "-")
        if isinstance(default, bool):
            f = click.option(f"{name}/--no-{fld.name.replace('_', '-')}", default=default, help=HELP[fld.name])(f)
        elif isinstance(default, tuple):
            f = click.option(name, nargs=len(default), type=type(default[0]), default=default,
                             help=HELP[fld.name])(f)
        else:
            f = click.option(name, type=type(default), default=default, help=HELP[fld.name])(f)
    return f


def _worker(rank: int, cfg: TrainConfig, mcfg, backend: str, hooks) -> None:
    setup_logging()
    try:
        train(rank, cfg, mcfg, backend, hooks)
    except UserError as e:
        print(f"train-transducer: error: {e}", file=sys.stderr)
        sys.exit(2)


@program(name="train-transducer", examples=[
    "train-transducer --config conf/train.yaml --model-config conf/model_lstm.yaml "
    "--cuts-train exp/fbank/train/cuts.jsonl.gz --lang-dir data/lang_bpe_500 --exp-dir exp/rnnt",
    "train-transducer ... --world-size 2            # 2 data-parallel processes (gloo on CPU)",
    "torchrun --nproc-per-node 4 -m sltk.bin.train_transducer ...   # or under torchrun",
    "train-transducer ... --exp-dir exp/rnnt_aat_int8 --init-checkpoint exp/rnnt/avg-4-5.pt "
    "--nna-config conf/nna/int8.yaml --calib-steps 50 --num-epochs 1   # accelerator-aware fine-tuning",
    "train-transducer ... --exp-dir exp/dpsgd_eps4 --dp-target-eps 4 --dp-unit speaker --max-steps 2000   # DP-SGD",
])
@click.option("--model-config", type=click.Path(dir_okay=False), default=None,
              help="YAML of model settings (sltk.asr.config.ModelConfig keys); vocab_size from the lang dir.")
@click.option("--nna-config", type=click.Path(dir_okay=False), default=None,
              help="NNA profile yaml: accelerator-aware training, with the NNA's fixed-point operators emulated "
                   "(calibration steps first, then fake quantization); checkpoints record the profile.")
@click.option("--calib-steps", type=int, default=50,
              help="--nna-config: steps that calibrate the activation ranges (float forward) before they freeze.")
@_options
def main(model_config, nna_config, calib_steps, **kw):
    """Train a transducer (RNN-T) with k2's pruned loss or torchaudio's full loss; resumable."""
    model = {}
    if model_config:
        if not os.path.isfile(model_config):
            raise UserError(f"model config {model_config} does not exist")
        try:
            model = yaml.safe_load(open(model_config)) or {}
        except yaml.YAMLError as e:
            raise UserError(f"model config {model_config} is not valid yaml: {str(e).splitlines()[0]}")
        if not isinstance(model, dict):
            raise UserError(f"model config {model_config} must be a mapping")
    cfg = TrainConfig(model=model, **kw)
    if cfg.init_checkpoint and not os.path.isfile(cfg.init_checkpoint):
        raise UserError(f"--init-checkpoint {cfg.init_checkpoint} does not exist")
    hooks: List[TrainHook] = []
    if nna_config:
        from sltk.nna.aat import NNAHook
        from sltk.nna.profile import load_profile

        hooks.append(NNAHook(load_profile(nna_config), calib_steps=calib_steps, source=nna_config))
        if not cfg.init_checkpoint:
            log.warning("--nna-config without --init-checkpoint: accelerator-aware training from random weights")
    mcfg, backend = prepare(cfg)
    log.info("model %s; loss backend %s", mcfg.to_dict(), backend)
    saved = {"train": {k: v for k, v in vars(cfg).items() if k != "model"}, "model": mcfg.to_dict()}
    if nna_config:
        saved["nna"] = {"nna_config": nna_config, "calib_steps": calib_steps, "profile": hooks[0].profile.to_dict()}
    with open(os.path.join(cfg.exp_dir, "config.yaml"), "w") as f:
        yaml.safe_dump(saved, f, sort_keys=False)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:  # under torchrun
        cfg.world_size = int(os.environ["WORLD_SIZE"])
        train(int(os.environ["RANK"]), cfg, mcfg, backend, hooks)
    elif cfg.world_size > 1:
        import torch.multiprocessing as mp

        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        mp.spawn(_worker, args=(cfg, mcfg, backend, hooks), nprocs=cfg.world_size, join=True)
    else:
        train(0, cfg, mcfg, backend, hooks)


if __name__ == "__main__":
    main()
