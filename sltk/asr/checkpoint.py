"""Self-describing checkpoints: the model config travels with the weights.

A checkpoint is a dict saved with torch.save (atomically)::

    {"format": "sltk-transducer-v1", "model_config": {...}, "model": state_dict,
     "step": int, "epoch": int, "optimizer": ..., "scheduler": ..., "sampler": ...,
     "rng": ..., "extra": {...}}

:func:`load_model` rebuilds the model from the config inside; loading weights into a model
of another config is refused with a message naming the differing keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_path

FORMAT = "sltk-transducer-v1"


def save_checkpoint(path: PathLike, model: torch.nn.Module, **state: Any) -> None:
    m = model.module if hasattr(model, "module") else model
    obj = {"format": FORMAT, "model_config": m.cfg.to_dict(), "model": m.state_dict(), **state}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu")
    except Exception as e:
        raise UserError(f"checkpoint {p} cannot be read ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{p} is not an sltk transducer checkpoint")
    return obj


def config_diff(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def load_model(path: PathLike, expect: Optional[ModelConfig] = None) -> Transducer:
    """Build the model a checkpoint describes and load its weights. With ``expect``, refuse a
    checkpoint whose config differs (e.g. resuming with another model config)."""
    obj = read_checkpoint(path)
    cfg = ModelConfig.from_dict(obj["model_config"], where=f"checkpoint {path}")
    if expect is not None:
        diff = config_diff(expect.to_dict(), cfg.to_dict())
        if diff:
            raise UserError(f"checkpoint {path} is from a different model ({'; '.join(diff[:4])})")
    model = Transducer(cfg)
    load_weights(model, obj["model"], str(path))
    return model


def load_weights(model: torch.nn.Module, state: Dict[str, torch.Tensor], where: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} tensors of other shapes, e.g. {k} {tuple(state[k].shape)} "
                         f"vs {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise UserError(f"weights in {where} do not fit this model: {'; '.join(parts)}")
    model.load_state_dict(state)


def average_checkpoints(paths: List[PathLike]) -> Dict[str, Any]:
    """Average the model weights of several checkpoints of the same model (icefall's averaging);
    integer buffers (e.g. counters) are taken from the last."""
    if not paths:
        raise UserError("no checkpoints to average")
    objs = [read_checkpoint(p) for p in paths]
    cfg0 = objs[0]["model_config"]
    for p, o in zip(paths[1:], objs[1:]):
        diff = config_diff(cfg0, o["model_config"])
        if diff:
            raise UserError(f"cannot average {paths[0]} with {p}: different models ({diff[0]})")
    avg = {}
    for k, v in objs[-1]["model"].items():
        if v.is_floating_point():
            avg[k] = sum(o["model"][k].double() for o in objs).div(len(objs)).to(v.dtype)
        else:
            avg[k] = v
    out = dict(objs[-1])
    out["model"] = avg
    out["averaged_from"] = [str(p) for p in paths]
    for k in ("optimizer", "scheduler", "sampler", "rng"):
        out.pop(k, None)
    return out
