"""Transducer training: data, optimisation, checkpoints and resume, data-parallel workers.

One :class:`TrainConfig` holds everything; :func:`train` runs in each worker process (rank)
and is resumable: rerunning with the same exp_dir continues from the newest checkpoint
(model, optimiser, scheduler, sampler position, RNG states, hooks' state), losing nothing
beyond it. ``init_checkpoint`` starts a fresh run (new optimiser and scheduler) from the
weights of another checkpoint: fine-tuning.

:class:`TrainHook` objects change what is trained without a second training loop: they may
rebuild the model before the optimiser exists (accelerator emulation, quantizers), act before
every step (calibration then frozen ranges, temperature annealing), and record in each
checkpoint the transform that :func:`sltk.asr.checkpoint.load_model` replays.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sltk.asr import loss as L
from sltk.asr.checkpoint import (average_checkpoints, config_diff, load_weights, read_checkpoint, save_checkpoint,
                                 transform_kinds)
from sltk.asr.config import ModelConfig
from sltk.asr.data import AsrBatches, FreqWarp, NoiseMixer, SpecAugment, alignable
from sltk.asr.model import Transducer
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path

log = logging.getLogger("sltk")


@dataclass
class TrainConfig:
    cuts_train: str = ""
    cuts_dev: str = ""
    lang_dir: str = ""
    exp_dir: str = ""
    model: Dict = field(default_factory=dict)  # ModelConfig keys
    loss: str = "auto"                  # auto | k2 | torchaudio | torch
    prune_range: int = 5
    simple_loss_scale: float = 0.5
    am_scale: float = 0.0
    lm_scale: float = 0.25
    warm_step: int = 2000               # k2 loss-weight warm-up (steps)
    num_epochs: int = 10
    max_duration: float = 200.0         # seconds of audio per batch (per worker)
    num_buckets: int = 10
    num_workers: int = 0
    lr: float = 1e-3                    # peak learning rate
    warmup_steps: int = 500             # linear warm-up, then inverse square root decay
    weight_decay: float = 1e-6
    clip_grad: float = 5.0
    spec_augment: bool = True
    freq_warp: Tuple[float, float] = (1.0, 1.0)  # VTLP warp-factor range (1 1: off)
    noise_cuts: str = ""                # cuts with features to mix in as noise (MUSAN-style)
    noise_snr: Tuple[float, float] = (10.0, 20.0)
    noise_prob: float = 0.5
    save_every_n: int = 500             # steps between checkpoints (0: epochs only)
    keep_last_k: int = 3                # step checkpoints kept
    average_last: int = 0               # at the end: average the last N epoch checkpoints
    seed: int = 42
    device: str = "auto"                # auto | cpu | cuda
    amp: bool = False                   # mixed precision (fp16 autocast) on CUDA
    world_size: int = 1
    max_steps: int = 0                  # stop after this many steps (0: no limit; for tests)
    log_every: int = 20
    init_checkpoint: str = ""           # fine-tune from these weights when exp_dir has no checkpoint yet
    # DP-SGD (off unless dp_noise_multiplier or dp_target_eps is > 0): Poisson-sampled batches of
    # privacy units, each unit's gradient clipped, Gaussian noise, RDP accounting (sltk.privacy)
    dp_noise_multiplier: float = 0.0    # noise std / dp_max_grad_norm
    dp_target_eps: float = 0.0          # instead: the smallest noise multiplier reaching this eps after the run
    dp_max_grad_norm: float = 1.0       # clipping norm of one unit's gradient
    dp_delta: float = 1e-5
    dp_unit: str = "utterance"          # utterance | speaker: the privacy unit (sampled and clipped as one)
    dp_max_utts: int = 8                # speaker unit: utterances of a sampled speaker used in a step

    @classmethod
    def keys(cls) -> List[str]:
        return [f.name for f in fields(cls)]


class TrainHook:
    """A change to training, called by :func:`train` (the base class does nothing).

    ``name`` is the transform kind recorded in checkpoints: each hook adds
    ``{"kind": name, **checkpoint_meta()}`` to the checkpoint's ``transforms`` (unless
    ``checkpoint_meta()`` returns None: a pure training schedule), and a function registered
    for that kind with :func:`sltk.asr.checkpoint.register_transform` must rebuild the
    module structure from that meta when the checkpoint is loaded. ``state_dict()`` is saved
    in each checkpoint under ``hooks[name]`` and given back to ``load_state_dict`` on resume.
    """

    name = "hook"

    def on_model(self, model: Transducer) -> None:
        """After the model is built and its initial weights loaded (``init_checkpoint``), before
        the optimizer is created (and before a resumed checkpoint's weights are loaded, which
        then fit the structure built here): may replace submodules and add parameters."""

    def on_step(self, step: int, model: Transducer) -> None:
        """Before the forward of each training step (``step`` is 1-based)."""

    def on_batch(self, model: Transducer, batch: Dict) -> None:
        """After :meth:`on_step`, before the forward of the same step: the training batch as
        :class:`sltk.asr.data.AsrBatches` makes it (``feats``, ``feat_lens``, ``texts``, ``ids``),
        e.g. to give the model per-utterance context built from the transcripts."""

    def state_dict(self) -> Dict:
        return {}

    def load_state_dict(self, state: Dict) -> None:
        pass

    def checkpoint_meta(self) -> Optional[Dict]:
        """JSON-able description of the transform, saved as ``{"kind": name, **meta}``."""
        return {}


def hook_transforms(hooks: Sequence[TrainHook]) -> List[Dict]:
    out = []
    for h in hooks:
        meta = h.checkpoint_meta()
        if meta is not None:
            out.append({"kind": h.name, **meta})
    return out


# ---------------------------------------------------------------------------------- helpers
def lr_lambda(warmup: int):
    def f(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step)) if warmup > 0 else 1.0
    return f


def rng_state() -> Dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(s: Dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


def checkpoints(exp_dir: Path) -> List[Tuple[int, Path]]:
    """(step, path) of every checkpoint in exp_dir, oldest first."""
    out = []
    for p in list(exp_dir.glob("checkpoint-*.pt")) + list(exp_dir.glob("epoch-*.pt")):
        try:
            out.append((int(torch.load(p, map_location="cpu", weights_only=False)["step"]), p))
        except Exception:
            log.warning("ignoring unreadable checkpoint %s", p)
    return sorted(out, key=lambda x: (x[0], x[1].name.startswith("epoch")))


class Tokenizer:
    def __init__(self, lang_dir: str):
        import sentencepiece as spm

        model = Path(lang_dir) / "bpe.model"
        if not model.is_file():
            raise UserError(f"{model} does not exist (run prepare-lang first)")
        self.sp = spm.SentencePieceProcessor(model_file=str(model))

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: List[str]) -> List[List[int]]:
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: List[int]) -> str:
        return self.sp.decode(ids)


def load_cuts(path: str, what: str):
    from lhotse import CutSet

    if not path or not Path(path).is_file():
        raise UserError(f"{what} cuts manifest {path!r} does not exist")
    try:
        return CutSet.from_file(path).to_eager()
    except Exception as e:
        raise UserError(f"cannot read {what} cuts {path}: {str(e)[:200]}") from None


def filter_cuts(cuts, tok: Tokenizer, what: str):
    """Drop cuts without features, text, or with fewer frames than tokens; log how many."""
    keep = []
    dropped = 0
    for c in cuts:
        text = " ".join(s.text for s in c.supervisions if s.text)
        if not c.has_features or not text or not alignable(c.num_frames, len(tok.encode([text])[0])):
            dropped += 1
            continue
        keep.append(c)
    if dropped:
        log.warning("%s: dropped %d of %d cuts (no features/text, or too short for their tokens)",
                    what, dropped, len(cuts))
    if not keep:
        raise UserError(f"{what}: no usable cuts")
    from lhotse import CutSet

    return CutSet.from_cuts(keep)


def resolve_device(name: str, rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device")
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def cmvn_for(cuts_path: str, cuts) -> Tuple[torch.Tensor, torch.Tensor]:
    """Global mean/std of the training features: compute-features' cmvn.json beside the cuts
    manifest when there is one, else computed from (the first 2000 of) the cuts."""
    from sltk.audio.extract import feature_stats, read_cmvn_stats

    stats = Path(cuts_path).parent / "cmvn.json"
    if stats.is_file():
        mean, std = read_cmvn_stats(stats)
    else:
        d = feature_stats(cuts, max_cuts=2000)
        mean, std = d["mean"], d["std"]
    return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)


# ---------------------------------------------------------------------------------- DP-SGD
DP_UNITS = ("utterance", "speaker")


def dp_enabled(cfg: TrainConfig) -> bool:
    return cfg.dp_noise_multiplier > 0 or cfg.dp_target_eps > 0


def dp_noise_for_eps(sample_rate: float, steps: int, eps: float, delta: float) -> float:
    """The smallest noise multiplier (to 0.1%) whose ``steps`` sampled-Gaussian steps at
    ``sample_rate`` stay within (eps, delta) (classic RDP conversion, as the PATE reports)."""
    from sltk.privacy.accountant import dp_sgd_epsilon

    def spent(sigma: float) -> float:
        return dp_sgd_epsilon(sample_rate, sigma, steps, delta)[0]

    lo, hi = 0.05, 1.0
    while spent(hi) > eps:
        lo, hi = hi, hi * 2
        if hi > 1e5:
            raise UserError(f"--dp-target-eps {eps}: unreachable with {steps} steps at sampling rate {sample_rate:.4g}")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid) > eps else (lo, mid)
    return hi


@dataclass
class DPPlan:
    """What DP-SGD samples and how much noise it adds: ``groups`` are the privacy units (one
    cut each, or a speaker's cuts); each step keeps every unit with probability ``sample_rate``."""
    groups: List[List]
    sample_rate: float
    steps: int
    noise_multiplier: float
    steps_per_epoch: int

    def describe(self, cfg: TrainConfig, steps_done: int) -> Dict:
        from sltk.privacy.accountant import dp_sgd_epsilon

        eps, order = dp_sgd_epsilon(self.sample_rate, self.noise_multiplier, steps_done, cfg.dp_delta) \
            if steps_done else (0.0, None)
        return {"unit": cfg.dp_unit, "num_units": len(self.groups), "sample_rate": self.sample_rate,
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": cfg.dp_max_grad_norm,
                "target_eps": cfg.dp_target_eps or None, "planned_steps": self.steps, "steps": steps_done,
                "delta": cfg.dp_delta, "eps": eps, "order": order, "conversion": "classic",
                "accounting": "RDP of the Poisson-sampled Gaussian mechanism (add/remove one unit)"}


def dp_plan(cfg: TrainConfig, cuts) -> DPPlan:
    """Privacy units, sampling rate (max_duration / the units' total duration, a speaker
    counting at most dp_max_utts of its utterances: a batch holds max_duration seconds on
    average), number of steps (max_steps, else num_epochs passes of 1 / rate steps) and the
    noise multiplier (given, or calibrated to dp_target_eps)."""
    if cfg.dp_unit not in DP_UNITS:
        raise UserError(f"--dp-unit must be one of {', '.join(DP_UNITS)}, got {cfg.dp_unit!r}")
    if cfg.dp_max_grad_norm <= 0 or not 0 < cfg.dp_delta < 1 or cfg.dp_max_utts < 1:
        raise UserError("DP-SGD needs --dp-max-grad-norm > 0, 0 < --dp-delta < 1 and --dp-max-utts >= 1")
    if cfg.dp_noise_multiplier > 0 and cfg.dp_target_eps > 0:
        raise UserError("give --dp-noise-multiplier or --dp-target-eps, not both")
    if cfg.world_size > 1:
        raise UserError("DP-SGD runs in one process (--world-size 1)")
    cuts = sorted(cuts, key=lambda c: c.id)
    if cfg.dp_unit == "utterance":
        groups = [[c] for c in cuts]
    else:
        by: Dict[str, List] = {}
        for c in cuts:
            spk = c.supervisions[0].speaker if c.supervisions else None
            if not spk:
                raise UserError(f"--dp-unit speaker: cut {c.id} has no speaker")
            by.setdefault(spk, []).append(c)
        groups = [by[k] for k in sorted(by)]
    total = sum(sum(c.duration for c in g) / len(g) * min(len(g), cfg.dp_max_utts) for g in groups)
    q = min(1.0, cfg.max_duration / total)
    per_epoch = max(1, math.ceil(1 / q))
    steps = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * per_epoch
    sigma = cfg.dp_noise_multiplier or dp_noise_for_eps(q, steps, cfg.dp_target_eps, cfg.dp_delta)
    return DPPlan(groups, q, steps, sigma, per_epoch)


def dp_sample(plan: DPPlan, generator: torch.Generator, max_utts: int) -> List[List]:
    """One Poisson batch of units; a speaker with more than ``max_utts`` cuts gives a random
    ``max_utts`` of them (the clipped gradient of a unit is bounded whatever it holds)."""
    from sltk.privacy.dpsgd import poisson_batch

    out = []
    for i in poisson_batch(len(plan.groups), plan.sample_rate, generator).tolist():
        g = plan.groups[i]
        if len(g) > max_utts:
            g = [g[j] for j in sorted(torch.randperm(len(g), generator=generator)[:max_utts].tolist())]
        out.append(g)
    return out


def dp_gradients(model: Transducer, units: List[List], loss_of, plan: DPPlan, cfg: TrainConfig,
                 generator: torch.Generator):
    """The DP-SGD gradient of one step: per-unit gradients (``loss_of(model, cuts)``, a scalar:
    the unit's loss per frame), each clipped to dp_max_grad_norm, summed, plus
    N(0, (noise_multiplier * dp_max_grad_norm)^2), divided by the expected number of units.
    Written into ``.grad``; returns :class:`sltk.privacy.dpsgd.StepStats`."""
    from sltk.privacy.dpsgd import clip_and_noise, per_example_grads

    params = [p for p in model.parameters() if p.requires_grad]
    grads = per_example_grads(model, loss_of, units, params)
    noisy, stats = clip_and_noise(grads, cfg.dp_max_grad_norm, plan.noise_multiplier,
                                  plan.sample_rate * len(plan.groups), generator)
    for p, g in zip(params, noisy):
        p.grad = g.to(p.device, p.dtype)
    return stats


# ---------------------------------------------------------------------------------- training
def prepare(cfg: TrainConfig) -> Tuple[ModelConfig, str]:
    """Validate the config, resolve the model config and the loss backend; write them to exp_dir."""
    exp = Path(cfg.exp_dir)
    if not cfg.exp_dir:
        raise UserError("--exp-dir is required")
    tok = Tokenizer(cfg.lang_dir)
    backend = L.default_backend() if cfg.loss == "auto" else cfg.loss
    if backend not in L.BACKENDS:
        raise UserError(f"--loss must be auto or one of {', '.join(L.BACKENDS)}, got {cfg.loss!r}")
    if backend == "k2" and not L.k2_available():
        raise UserError("--loss k2: k2 cannot be imported here (use --loss torchaudio)")
    if backend == "torchaudio" and not L.torchaudio_rnnt_available():
        raise UserError("--loss torchaudio: this torchaudio has no rnnt_loss (use --loss torch)")
    mdict = dict(cfg.model)
    mdict.setdefault("vocab_size", tok.vocab_size)
    if mdict["vocab_size"] != tok.vocab_size:
        raise UserError(f"model vocab_size {mdict['vocab_size']} differs from the lang dir's {tok.vocab_size}")
    mcfg = ModelConfig.from_dict(mdict, where="the model config")
    exp.mkdir(parents=True, exist_ok=True)
    return mcfg, backend


def train(rank: int, cfg: TrainConfig, mcfg: ModelConfig, backend: str, hooks: Sequence[TrainHook] = ()) -> None:
    """Train in worker ``rank`` (see the module doc); ``hooks``: :class:`TrainHook` objects."""
    world = cfg.world_size
    if world > 1:
        import torch.distributed as dist

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        dev_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dist.init_process_group("nccl" if dev_name == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        _train(rank, cfg, mcfg, backend, list(hooks))
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _init_weights(model: Transducer, path: str, mcfg: ModelConfig) -> None:
    """Fine-tuning: the weights (only) of ``path``, a checkpoint of the same model without
    transforms."""
    obj = read_checkpoint(path)
    diff = config_diff(mcfg.to_dict(), obj["model_config"])
    if diff:
        raise UserError(f"--init-checkpoint {path} is from a different model ({'; '.join(diff[:3])}); "
                        "give the same model config")
    if obj["transforms"]:
        raise UserError(f"--init-checkpoint {path} holds a transformed model ({', '.join(transform_kinds(obj))}); "
                        "start from a float checkpoint")
    load_weights(model, obj["model"], path)


def _train(rank: int, cfg: TrainConfig, mcfg: ModelConfig, backend: str, hooks: List[TrainHook]) -> None:
    from lhotse.dataset import DynamicBucketingSampler

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.world_size) if cfg.world_size > 1
                          else torch.get_num_threads())
    exp = Path(cfg.exp_dir)
    device = resolve_device(cfg.device, rank)
    tok = Tokenizer(cfg.lang_dir)
    train_cuts = filter_cuts(load_cuts(cfg.cuts_train, "training"), tok, "training")
    dev_cuts = filter_cuts(load_cuts(cfg.cuts_dev, "dev"), tok, "dev") if cfg.cuts_dev else None

    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = Transducer(mcfg)
    model.set_cmvn(*cmvn_for(cfg.cuts_train, train_cuts))
    names = [h.name for h in hooks]
    if len(set(names)) != len(names):
        raise UserError(f"two training hooks of the same kind: {', '.join(names)}")
    ckpts = checkpoints(exp)
    last = ckpts[-1][1] if ckpts else None
    resume = read_checkpoint(last) if last is not None else None
    if resume is None and cfg.init_checkpoint:
        _init_weights(model, cfg.init_checkpoint, mcfg)
        if rank == 0:
            log.info("fine-tuning from the weights of %s", cfg.init_checkpoint)
    for h in hooks:
        h.on_model(model)
    if resume is not None:
        diff = config_diff(mcfg.to_dict(), resume["model_config"])
        if diff:
            raise UserError(f"{exp} holds checkpoints of a different model ({'; '.join(diff[:3])}); "
                            "use another --exp-dir or the same model config")
        want = [t["kind"] for t in hook_transforms(hooks)]
        if transform_kinds(resume) != want:
            raise UserError(f"{exp} holds checkpoints with model transforms {transform_kinds(resume) or 'none'}, "
                            f"this run has {want or 'none'}; use another --exp-dir or the same options")
        load_weights(model, resume["model"], str(last))
        for h in hooks:
            h.load_state_dict((resume.get("hooks") or {}).get(h.name, {}))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps))
    dp = dp_plan(cfg, train_cuts) if dp_enabled(cfg) else None
    if dp is not None and hooks:
        raise UserError(f"DP-SGD with training hooks ({', '.join(names)}) is not supported")
    use_amp = cfg.amp and device.type == "cuda" and dp is None
    scaler = (torch.amp.GradScaler("cuda", enabled=use_amp) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=use_amp))

    transforms = []
    if cfg.noise_cuts:
        noises = [torch.from_numpy(c.load_features()) for c in list(load_cuts(cfg.noise_cuts, "noise"))[:500]
                  if c.has_features]
        if not noises:
            raise UserError(f"noise cuts {cfg.noise_cuts} have no features")
        transforms.append(NoiseMixer(noises, snr=tuple(cfg.noise_snr), p=cfg.noise_prob, seed=cfg.seed + rank))
    if tuple(cfg.freq_warp) != (1.0, 1.0):
        transforms.append(FreqWarp(tuple(cfg.freq_warp), sample_rate=next(iter(train_cuts)).sampling_rate,
                                   seed=cfg.seed + 7919 + rank))
    if cfg.spec_augment:
        transforms.append(SpecAugment(seed=cfg.seed + rank))
    dataset = AsrBatches(transforms)
    # lhotse needs 2 buckets at least (fewer than 8 cuts used to fail on its assertion)
    num_buckets = max(2, min(cfg.num_buckets, len(train_cuts) // 4))
    sampler = DynamicBucketingSampler(train_cuts, max_duration=cfg.max_duration, shuffle=True,
                                      num_buckets=num_buckets, drop_last=False, seed=cfg.seed,
                                      world_size=cfg.world_size, rank=rank)

    step, epoch = 0, 1
    if resume is not None:
        obj = resume
        opt.load_state_dict(obj["optimizer"])
        sched.load_state_dict(obj["scheduler"])
        if obj.get("scaler"):
            scaler.load_state_dict(obj["scaler"])
        step, epoch = obj["step"], obj["epoch"]
        if obj.get("end_of_epoch"):
            epoch += 1
        elif obj.get("sampler"):
            sampler.load_state_dict(obj["sampler"])
        set_rng_state(obj["rng"])
        for t, st in zip(transforms, obj["rng"].get("transforms", [])):
            t.rng.setstate(st)
        if rank == 0:
            log.info("resuming from %s (step %d, epoch %d)", last, step, epoch)

    ddp_model = model
    if cfg.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            # the simple-loss projections serve only k2's loss, the CTC head only a CTC weight
            find_unused_parameters=backend != "k2" or mcfg.ctc_weight == 0)

    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(exp / "tensorboard"))
        except Exception as e:  # tensorboard is optional
            log.warning("no TensorBoard logging (%s)", e)

    def save(path: Path, end_of_epoch: bool, at: Optional[Tuple[int, int]] = None) -> None:
        """``at``: (step, epoch) when not this function's (the DP-SGD loop keeps its own)."""
        if rank != 0:
            return
        s_, e_ = at or (step, epoch)
        save_checkpoint(path, model, transforms=hook_transforms(hooks), hooks={h.name: h.state_dict() for h in hooks},
                        step=s_, epoch=e_, end_of_epoch=end_of_epoch,
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                        scaler=scaler.state_dict() if use_amp else None,
                        sampler=None if end_of_epoch else sampler.state_dict(),
                        rng=dict(rng_state(), transforms=[t.rng.getstate() for t in transforms]),
                        train_config=asdict(cfg), loss_backend=backend)
        step_ckpts = sorted(exp.glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        for old in step_ckpts[: max(0, len(step_ckpts) - cfg.keep_last_k)]:
            old.unlink()

    skipped = 0
    # a run resumed from its own last checkpoint at --max-steps has nothing left to do
    stop = bool(cfg.max_steps and step >= cfg.max_steps)
    t_start = time.time()
    frames_seen = 0
    if dp is not None:
        step, epoch, skipped, frames_seen = _train_dp(dp, cfg, model, opt, sched, dataset, tok, backend, mcfg, device,
                                                      rank, step, save, dev_cuts, writer)
    while dp is None and epoch <= cfg.num_epochs and not stop:
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None,
                                             num_workers=cfg.num_workers)
        model.train()
        tot: Dict[str, float] = {}
        tot_frames = 0
        for batch in loader:
            for h in hooks:
                h.on_step(step + 1, model)
            for h in hooks:
                h.on_batch(model, batch)
            feats = batch["feats"].to(device)
            lens = batch["feat_lens"].to(device)
            ys = tok.encode(batch["texts"])
            with torch.autocast(device_type=device.type, enabled=use_amp):
                losses = ddp_model(feats, lens, ys, backend=backend, prune_range=cfg.prune_range,
                                   am_scale=cfg.am_scale, lm_scale=cfg.lm_scale)
            total = L.combine(losses, backend, step, cfg.warm_step, cfg.simple_loss_scale, mcfg.ctc_weight)
            n_frames = int(lens.sum())
            if not torch.isfinite(total):
                skipped += 1
                log.warning("step %d: non-finite loss (%s), batch skipped (%d so far)", step,
                            {k: float(v) for k, v in losses.items()}, skipped)
                opt.zero_grad(set_to_none=True)
                continue
            opt.zero_grad(set_to_none=True)
            scaler.scale(total / max(1, n_frames)).backward()
            scaler.unscale_(opt)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            if not torch.isfinite(gnorm):
                skipped += 1
                log.warning("step %d: non-finite gradient, batch skipped (%d so far)", step, skipped)
                opt.zero_grad(set_to_none=True)
                scaler.update()
                continue
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            frames_seen += n_frames
            tot_frames += n_frames
            for k, v in losses.items():
                tot[k] = tot.get(k, 0.0) + float(v)
            if rank == 0 and step % cfg.log_every == 0:
                per = {k: v / max(1, tot_frames) for k, v in tot.items()}
                fps = frames_seen / max(1e-6, time.time() - t_start)
                log.info("epoch %d step %d lr %.2e loss/frame %s grad-norm %.2f %.0f frames/s", epoch, step,
                         sched.get_last_lr()[0], " ".join(f"{k}={v:.4f}" for k, v in per.items()),
                         float(gnorm), fps)
                if writer:
                    for k, v in per.items():
                        writer.add_scalar(f"train/{k}", v, step)
                    writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                    writer.add_scalar("train/frames_per_s", fps, step)
            if cfg.save_every_n and step % cfg.save_every_n == 0:
                save(exp / f"checkpoint-{step}.pt", end_of_epoch=False)
            if cfg.max_steps and step >= cfg.max_steps:
                stop = True
                break
        if stop:
            save(exp / f"checkpoint-{step}.pt", end_of_epoch=False)
            break
        if rank == 0 and dev_cuts is not None:
            dev = evaluate(model, dev_cuts, tok, backend, cfg, device)
            log.info("epoch %d dev loss/frame %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in dev.items()))
            if writer:
                for k, v in dev.items():
                    writer.add_scalar(f"dev/{k}", v, step)
        save(exp / f"epoch-{epoch}.pt", end_of_epoch=True)
        epoch += 1
    if rank == 0:
        if writer:
            writer.close()
        if cfg.average_last > 0:
            average(exp, cfg.num_epochs if dp is None else step // dp.steps_per_epoch, cfg.average_last)
        summ = {"steps": step, "epochs_done": epoch - 1, "skipped_batches": skipped,
                "train_s": round(time.time() - t_start, 1),  # this run's training loop (not a resumed one's)
                "frames_per_s": frames_seen / max(1e-6, time.time() - t_start),
                "loss_backend": backend, "device": str(device)}
        if device.type == "cuda":
            summ["peak_cuda_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if dp is not None:
            summ["dp"] = dp.describe(cfg, step)
            with atomic_open(exp / "privacy.json") as f:
                json.dump(summ["dp"], f, indent=1)
                f.write("\n")
            log.info("DP-SGD: eps %.4g at delta %g (order %s) after %d steps", summ["dp"]["eps"], cfg.dp_delta,
                     summ["dp"]["order"], step)
        with atomic_open(exp / "train_summary.json") as f:
            json.dump(summ, f, indent=2)
        log.info("training done: %d steps, %d batches skipped", step, skipped)


def _train_dp(dp: DPPlan, cfg: TrainConfig, model: Transducer, opt, sched, dataset, tok: Tokenizer, backend: str,
              mcfg: ModelConfig, device: torch.device, rank: int, step: int, save, dev_cuts, writer):
    """The DP-SGD loop of :func:`_train` (see :func:`dp_plan`): ``dp.steps`` steps, each on a
    Poisson batch of units whose sampling and noise come from a generator seeded by the step
    (a resumed run draws what an uninterrupted one would). Returns (step, epoch, skipped, frames)."""
    from lhotse import CutSet

    exp = Path(cfg.exp_dir)
    params = [p for p in model.parameters() if p.requires_grad]
    acc = {"skipped": 0, "frames": 0, "loss": 0.0, "units": 0, "clipped": 0, "norm": 0.0}
    if rank == 0:
        log.info("DP-SGD: %d %s units, sampling rate %.4g, %d steps, noise multiplier %.4g, clipping norm %g, "
                 "delta %g: eps %.4g at the end", len(dp.groups), cfg.dp_unit, dp.sample_rate, dp.steps,
                 dp.noise_multiplier, cfg.dp_max_grad_norm, cfg.dp_delta, dp.describe(cfg, dp.steps)["eps"])

    def loss_of(m: Transducer, cuts) -> torch.Tensor:
        b = dataset[CutSet.from_cuts(cuts)]
        lens = b["feat_lens"].to(device)
        losses = m(b["feats"].to(device), lens, tok.encode(b["texts"]), backend=backend,
                   prune_range=cfg.prune_range, am_scale=cfg.am_scale, lm_scale=cfg.lm_scale)
        total = L.combine(losses, backend, step, cfg.warm_step, cfg.simple_loss_scale, mcfg.ctc_weight)
        if not torch.isfinite(total):  # this unit contributes nothing (the noise is still added)
            acc["skipped"] += 1
            return sum((p * 0).sum() for p in params)
        n = int(lens.sum())
        acc["frames"] += n
        acc["loss"] += float(total)
        return total / max(1, n)

    epoch = step // dp.steps_per_epoch + 1
    while step < dp.steps:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        units = dp_sample(dp, gen, cfg.dp_max_utts)
        model.train()
        stats = dp_gradients(model, units, loss_of, dp, cfg, gen)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        step += 1
        acc["units"] += stats.batch_size
        acc["clipped"] += stats.clipped
        acc["norm"] += stats.mean_norm * stats.batch_size
        if rank == 0 and step % cfg.log_every == 0:
            log.info("DP step %d lr %.2e loss/frame %.4f units %d clipped %.0f%% mean unit grad-norm %.3g", step,
                     sched.get_last_lr()[0], acc["loss"] / max(1, acc["frames"]), acc["units"],
                     100 * acc["clipped"] / max(1, acc["units"]), acc["norm"] / max(1, acc["units"]))
            if writer:
                writer.add_scalar("train/loss", acc["loss"] / max(1, acc["frames"]), step)
        if cfg.save_every_n and step % cfg.save_every_n == 0:
            save(exp / f"checkpoint-{step}.pt", end_of_epoch=False, at=(step, epoch))
        if step % dp.steps_per_epoch == 0:
            if rank == 0 and dev_cuts is not None:
                d = evaluate(model, dev_cuts, tok, backend, cfg, device)
                log.info("epoch %d dev loss/frame %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in d.items()))
            save(exp / f"epoch-{epoch}.pt", end_of_epoch=True, at=(step, epoch))
            epoch += 1
        if step == dp.steps:  # the last step always as checkpoint-<steps>.pt, like a --max-steps run
            save(exp / f"checkpoint-{step}.pt", end_of_epoch=False, at=(step, epoch))
    return step, epoch, acc["skipped"], acc["frames"]


def average(exp: Path, last_epoch: int, n: int) -> Optional[Path]:
    paths = [exp / f"epoch-{e}.pt" for e in range(last_epoch - n + 1, last_epoch + 1) if e >= 1]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        log.warning("no epoch checkpoints to average")
        return None
    out = exp / f"avg-{paths[0].stem.split('-')[1]}-{last_epoch}.pt"
    obj = average_checkpoints(paths)
    with atomic_path(out) as tmp:
        torch.save(obj, tmp)
    log.info("averaged %s into %s", ", ".join(p.name for p in paths), out)
    return out


@torch.no_grad()
def evaluate(model: Transducer, cuts, tok: Tokenizer, backend: str, cfg: TrainConfig,
             device: torch.device) -> Dict[str, float]:
    from lhotse.dataset import SimpleCutSampler

    model.eval()
    tot: Dict[str, float] = {}
    frames = 0
    for cutset in SimpleCutSampler(cuts, max_duration=cfg.max_duration):
        b = AsrBatches()[cutset]
        losses = model(b["feats"].to(device), b["feat_lens"].to(device), tok.encode(b["texts"]),
                       backend=backend, prune_range=cfg.prune_range, am_scale=cfg.am_scale, lm_scale=cfg.lm_scale)
        frames += int(b["feat_lens"].sum())
        for k, v in losses.items():
            tot[k] = tot.get(k, 0.0) + float(v)
    model.train()
    return {k: v / max(1, frames) for k, v in tot.items()}
