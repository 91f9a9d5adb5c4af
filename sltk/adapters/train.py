"""Training an adapter, or an attention fusion, on a frozen base model.

Both go through :func:`sltk.asr.train.train` (same data pipeline, checkpoints and resume)
with a :class:`~sltk.asr.train.TrainHook` that attaches the adapters in ``on_model``, freezes
everything else (``requires_grad`` False: AdamW skips parameters without gradients) and
records the transform in every checkpoint. :func:`train_adapter` writes the adapter file,
:func:`fuse_adapters` the fused model checkpoint; both check at the end that the base weights
are bit-identical to the base checkpoint's.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

from sltk.adapters.attach import (ADAPTERS, FUSION, base_hash, check_base, freeze_all_but, fuse, read_adapter,
                                  save_adapter, transform_entry)
from sltk.adapters.attach import attach as attach_adapters
from sltk.adapters.modules import METHODS, AdapterConfig
from sltk.asr.checkpoint import load_model, read_checkpoint, save_checkpoint, transform_kinds
from sltk.asr.config import ModelConfig
from sltk.asr.train import TrainConfig, TrainHook, checkpoints, prepare, train
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open

log = logging.getLogger("sltk")


class AdapterHook(TrainHook):
    """Train one adapter (``name``, ``config``) on a frozen base whose hash is ``base_hash``."""

    name = "adapter"

    def __init__(self, adapter_name: str, config: AdapterConfig, base_hash: str):
        self.adapter_name = adapter_name
        self.config = config
        self.base_hash = base_hash

    def on_model(self, model) -> None:
        attach_adapters(model, [(self.adapter_name, self.config)], "sum", base_hash=self.base_hash)
        n = freeze_all_but(model, ADAPTERS)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        log.info("adapter %r at %s: %d trainable parameters; the base's %d are frozen", self.adapter_name,
                 ", ".join(model.adapter_setup["positions"]), n, frozen)

    def checkpoint_meta(self) -> Dict:
        return {"name": self.adapter_name, "config": self.config.to_dict(), "base_hash": self.base_hash}


class FusionHook(TrainHook):
    """Train the attention fusion of adapter files (:func:`read_adapter` objects), adapters
    and base frozen."""

    name = "adapter_fusion"

    def __init__(self, adapters: Sequence[Dict], include_base: bool = True):
        self.adapters = list(adapters)
        self.include_base = include_base

    def on_model(self, model) -> None:
        # the base weights may load only later (resume): the files were checked against the base already
        fuse(model, self.adapters, "attention", self.include_base, check=False)
        n = freeze_all_but(model, FUSION)
        log.info("attention fusion of %d adapters (%s)%s at %s: %d trainable parameters", len(self.adapters),
                 ", ".join(repr(a["name"]) for a in self.adapters), " and the base" if self.include_base else "",
                 ", ".join(model.adapter_setup["positions"]), n)

    def checkpoint_meta(self) -> Dict:
        return {"adapters": [{"name": a["name"], "config": dict(a["config"])} for a in self.adapters],
                "method": "attention", "include_base": self.include_base, "base_hash": self.adapters[0]["base_hash"]}


# ---------------------------------------------------------------------------------- helpers
def read_base(path: PathLike) -> Tuple[Dict, str]:
    """The base checkpoint (an untransformed model) and its base hash."""
    obj = read_checkpoint(path)
    if obj["transforms"]:
        raise UserError(f"--base {path} holds a transformed model ({', '.join(transform_kinds(obj))}); give the "
                        "plain checkpoint the adapters are for")
    return obj, base_hash(obj["model"])


def finished(exp: Path, cfg: TrainConfig) -> Optional[Tuple[int, Path]]:
    """(step, path) of the experiment's newest checkpoint when it already ends the training
    asked for (``max_steps`` reached or ``num_epochs`` done), else None."""
    ckpts = checkpoints(exp)
    if not ckpts:
        return None
    step, last = ckpts[-1]
    if cfg.max_steps and step >= cfg.max_steps:
        return step, last
    obj = read_checkpoint(last)
    if obj.get("end_of_epoch") and obj.get("epoch", 0) >= cfg.num_epochs:
        return step, last
    return None


def check_resume(exp: Path, entry: Dict) -> None:
    """Refuse an experiment directory whose checkpoints record another transform than
    ``entry`` (another adapter config, name, base or fusion): resuming would mix two runs."""
    ckpts = checkpoints(exp)
    if not ckpts:
        return
    got = read_checkpoint(ckpts[-1][1])["transforms"]
    if got == [entry]:
        return
    if len(got) == 1 and got[0].get("kind") == entry["kind"]:
        what = ", ".join(f"{k} {got[0].get(k)!r} vs {entry.get(k)!r}" for k in sorted(set(got[0]) | set(entry))
                         if got[0].get(k) != entry.get(k))
    else:
        what = f"transforms {transform_kinds({'transforms': got}) or 'none'} vs {entry['kind']}"
    raise UserError(f"{exp} holds checkpoints of another run ({what[:300]}); use another --exp-dir")


def _worker(rank: int, cfg: TrainConfig, mcfg: ModelConfig, backend: str, hooks) -> None:
    from sltk.utils.cli import setup_logging

    setup_logging()
    try:
        train(rank, cfg, mcfg, backend, hooks)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _run(cfg: TrainConfig, mcfg: ModelConfig, backend: str, hooks: List[TrainHook]) -> Tuple[int, Path]:
    """Train (one process, or ``world_size`` spawned ones); the newest checkpoint after."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("adapter training does not run under torchrun; give --world-size N instead")
    if cfg.world_size > 1:
        import torch.multiprocessing as mp

        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        mp.spawn(_worker, args=(cfg, mcfg, backend, hooks), nprocs=cfg.world_size, join=True)
    else:
        train(0, cfg, mcfg, backend, hooks)
    ckpts = checkpoints(Path(cfg.exp_dir))
    if not ckpts:
        raise UserError(f"{cfg.exp_dir}: training wrote no checkpoint")
    return ckpts[-1]


def _final_model(last: Path, want_hash: str, base: PathLike):
    model = load_model(last)
    got = base_hash(model)
    if got != want_hash:
        raise UserError(f"the base weights in {last} ({got[:12]}) are not those of --base {base} ({want_hash[:12]}): "
                        "the experiment directory holds another run; use another --exp-dir")
    return model


def dev_losses(model, cfg: TrainConfig, backend: str) -> Dict[str, float]:
    """Dev loss per frame (``cfg.cuts_dev``) of ``model``; empty without dev cuts."""
    from sltk.asr.train import Tokenizer, evaluate, filter_cuts, load_cuts, resolve_device

    if not cfg.cuts_dev:
        return {}
    tok = Tokenizer(cfg.lang_dir)
    cuts = filter_cuts(load_cuts(cfg.cuts_dev, "dev"), tok, "dev")
    device = resolve_device(cfg.device, 0)
    model.to(device)
    return evaluate(model, cuts, tok, backend, cfg, device)


def mix_training_cuts(cuts_train: str, mix_cuts: str, frac: float, out: Path, seed: int = 42) -> Tuple[int, int]:
    """Write ``out``: the training cuts plus general cuts drawn from ``mix_cuts`` (ids prefixed
    ``mix-``) so that they make up ``frac`` of the result (repeated when there are too few).
    Deterministic for a seed, so a rerun writes the same set. Returns (training, general) counts."""
    from lhotse import CutSet

    from sltk.asr.train import load_cuts

    if not 0 < frac < 1:
        raise UserError(f"--mix-frac must be in (0, 1) (the share of general cuts in the training set), got {frac}")
    own = list(load_cuts(cuts_train, "training"))
    general = list(load_cuts(mix_cuts, "--mix-cuts"))
    if not own or not general:
        raise UserError(f"{cuts_train if not own else mix_cuts}: no cuts to mix")
    n = max(1, round(frac / (1 - frac) * len(own)))
    rng = random.Random(seed)
    picked = []
    rounds, rest = divmod(n, len(general))
    if rounds:
        log.warning("--mix-cuts %s has %d cuts, fewer than the %d asked for: repeating them", mix_cuts,
                    len(general), n)
    for r in range(rounds):
        picked += [c.with_id(f"mix-{c.id}" + (f"-r{r}" if r else "")) for c in general]
    picked += [c.with_id(f"mix-{c.id}" + (f"-r{rounds}" if rounds else "")) for c in rng.sample(general, rest)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp{os.getpid()}-{out.name}")  # keeps the suffix lhotse reads the format from
    CutSet.from_cuts(own + picked).to_file(tmp)
    os.replace(tmp, out)
    stats = Path(cuts_train).parent / "cmvn.json"  # the base's CMVN is used anyway; spares computing it
    if stats.is_file():
        shutil.copyfile(stats, out.parent / "cmvn.json")
    log.info("training on %s: %d training cuts + %d general cuts from %s (%.0f%%)", out, len(own), len(picked),
             mix_cuts, 100 * len(picked) / (len(own) + len(picked)))
    return len(own), len(picked)


def _prepare(base: PathLike, cfg: TrainConfig) -> Tuple[Dict, str]:
    obj, h = read_base(base)
    cfg.model = dict(obj["model_config"])
    cfg.init_checkpoint = str(base)
    if not cfg.exp_dir:
        raise UserError("--exp-dir is required")
    return obj, h


# ---------------------------------------------------------------------------------- drivers
def train_adapter(base: PathLike, out: PathLike, cfg: TrainConfig, config: Optional[AdapterConfig] = None,
                  name: Optional[str] = None, mix_cuts: str = "", mix_frac: float = 0.0,
                  info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Train one adapter on the frozen base checkpoint ``base`` with the training options
    ``cfg`` (its model and init_checkpoint come from ``base``) and write the adapter file
    ``out`` from the final model. Resumes from ``cfg.exp_dir``; a finished run with ``out``
    present does nothing. Returns a summary (params, bytes, steps, dev losses, skipped)."""
    config = config or AdapterConfig()
    out = Path(out)
    name = name or out.stem
    if mix_frac and not mix_cuts:
        raise UserError("--mix-frac needs --mix-cuts (the general data to mix in)")
    obj, h = _prepare(base, cfg)
    positions = config.positions(ModelConfig.from_dict(obj["model_config"]).num_encoder_layers)
    exp = Path(cfg.exp_dir)
    hook = AdapterHook(name, config, h)
    check_resume(exp, {"kind": hook.name, **hook.checkpoint_meta()})
    cuts_train = cfg.cuts_train
    if mix_cuts:
        mix_training_cuts(cfg.cuts_train, mix_cuts, mix_frac, exp / "cuts_train_mixed.jsonl.gz", seed=cfg.seed)
        cfg.cuts_train = str(exp / "cuts_train_mixed.jsonl.gz")
    mcfg, backend = prepare(cfg)
    with atomic_open(exp / "adapter.yaml") as f:
        yaml.safe_dump({"name": name, "base": str(base), "base_hash": h, "adapter_config": config.to_dict(),
                        "positions": positions, "out": str(out), "cuts_train": cuts_train, "mix_cuts": mix_cuts,
                        "mix_frac": mix_frac, "train": {k: v for k, v in asdict(cfg).items() if k != "model"}},
                       f, sort_keys=False)
    done = finished(exp, cfg)
    if done and out.is_file():
        old = read_adapter(out)
        if old["base_hash"] == h and old["name"] == name:
            log.info("%s: training finished already (step %d) and %s exists: nothing to do", exp, done[0], out)
            return {"name": name, "num_params": old["num_params"], "bytes": out.stat().st_size,
                    "steps": done[0], "dev": {}, "skipped": True}
    if done:
        log.info("%s: training finished already (step %d); writing %s", exp, done[0], out)
        step, last = done
    else:
        step, last = _run(cfg, mcfg, backend, [hook])
    model = _final_model(last, h, base)
    dev = dev_losses(model, cfg, backend)
    base_dev = dev_losses(load_model(base), cfg, backend) if dev else {}
    saved = save_adapter(out, model, 0, info={
        "base": str(base), "cuts_train": cuts_train, "mix_cuts": mix_cuts, "mix_frac": mix_frac, "steps": step,
        "checkpoint": str(last), "dev_loss": dev, "base_dev_loss": base_dev, **(info or {})})
    return {"name": name, "num_params": saved["num_params"], "bytes": out.stat().st_size, "steps": step,
            "dev": dev, "base_dev": base_dev, "skipped": False}


def _adapters_intact(model, objs: Sequence[Dict], where: Path) -> None:
    for i, o in enumerate(objs):
        own = model.adapters[i].state_dict()
        if any(not torch.equal(own[k].cpu(), v) for k, v in o["state_dict"].items()):
            raise UserError(f"the weights of adapter {o['name']!r} in {where} are not those of {o['path']}: the "
                            "experiment directory holds another run; use another --exp-dir")


def fuse_adapters(base: PathLike, adapters: Sequence[PathLike], out: PathLike, method: str = "sum",
                  include_base: bool = True, cfg: Optional[TrainConfig] = None) -> Dict[str, Any]:
    """Fuse adapter files (each checked against the base hash of ``base``) into the model
    checkpoint ``out`` (transform ``adapter_fusion``, or ``adapter`` for one summed adapter).
    sum and average need no training; attention trains the fusion layers (adapters and base
    frozen) with ``cfg`` (cuts_train, lang_dir and exp_dir required; resumable). Returns a
    summary (adapters, params, bytes, steps, dev losses, skipped)."""
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "attention" and (cfg is None or not (cfg.cuts_train and cfg.lang_dir and cfg.exp_dir)):
        raise UserError("attention fusion trains its fusion layers on data: give --cuts-train (general and adapted "
                        "domains mixed), --lang-dir and --exp-dir (and optionally --cuts-dev); sum and average "
                        "need no data")
    if not adapters:
        raise UserError("no adapter files to fuse")
    out = Path(out)
    if any(Path(a).resolve() == out.resolve() for a in [*adapters, base]):
        raise UserError(f"the output {out} is one of the input files")
    _, h = read_base(base)
    model = load_model(base)
    objs = [read_adapter(a) for a in adapters]
    names = [o["name"] for o in objs]
    if len(set(names)) < len(names):
        log.warning("adapters with the same name: %s", ", ".join(names))
    for o in objs:
        check_base(o, model, h, what=f"--base {base}")
    fuse(model, objs, method, include_base, check=False)  # a clear error on mismatched positions, before training
    info = {"base_checkpoint": str(base), "adapter_files": [o["path"] for o in objs]}
    if method != "attention":
        save_checkpoint(out, model, transforms=[transform_entry(model)], **info)
        return {"method": method, "adapters": len(objs), "num_params": _adapter_params(model),
                "bytes": out.stat().st_size, "steps": 0, "dev": {}, "skipped": False}
    _prepare(base, cfg)
    exp = Path(cfg.exp_dir)
    hook = FusionHook(objs, include_base)
    check_resume(exp, {"kind": hook.name, **hook.checkpoint_meta()})
    mcfg, backend = prepare(cfg)
    with atomic_open(exp / "fusion.yaml") as f:
        yaml.safe_dump({"method": method, "include_base": include_base, "base": str(base), "base_hash": h,
                        "adapters": [{"name": o["name"], "file": o["path"]} for o in objs], "out": str(out),
                        "train": {k: v for k, v in asdict(cfg).items() if k != "model"}}, f, sort_keys=False)
    done = finished(exp, cfg)
    if done and out.is_file():
        log.info("%s: training finished already (step %d) and %s exists: nothing to do", exp, done[0], out)
        return {"method": method, "adapters": len(objs), "num_params": _adapter_params(load_model(out)),
                "bytes": out.stat().st_size, "steps": done[0], "dev": {}, "skipped": True}
    step, last = done or _run(cfg, mcfg, backend, [hook])
    model = _final_model(last, h, base)
    _adapters_intact(model, objs, last)
    dev = dev_losses(model, cfg, backend)
    save_checkpoint(out, model, transforms=[transform_entry(model)], step=step, checkpoint=str(last), dev_loss=dev,
                    **info)
    return {"method": method, "adapters": len(objs), "num_params": _adapter_params(model),
            "bytes": out.stat().st_size, "steps": step, "dev": dev, "skipped": False}


def _adapter_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith((ADAPTERS + ".", FUSION + ".")))
