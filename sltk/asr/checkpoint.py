"""Self-describing checkpoints: the model config travels with the weights.

A checkpoint is a dict saved with torch.save (atomically)::

    {"format": "sltk-transducer-v1", "model_config": {...}, "model": state_dict,
     "transforms": [{"kind": "nna", ...}, ...], "step": int, "epoch": int,
     "optimizer": ..., "scheduler": ..., "sampler": ..., "rng": ..., "hooks": {...}, ...}

:func:`load_model` rebuilds the model from the config inside, applies the recorded model
transforms in order (they rebuild the module structure: accelerator emulation, quantizers),
then loads the weights; loading weights into a model of another config is refused with a
message naming the differing keys. A transform kind is a function registered with
:func:`register_transform`; the modules that register the known kinds are imported on demand
(``TRANSFORM_MODULES``). A packed model file (format ``sltk-packed-v1``) is loaded by
:func:`sltk.nna.pack.load_packed`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_path

FORMAT = "sltk-transducer-v1"
PACKED_FORMAT = "sltk-packed-v1"

# transform kind -> fn(model, meta) that rebuilds the module structure before weights load
_TRANSFORMS: Dict[str, Callable[[torch.nn.Module, Dict[str, Any]], None]] = {}
# kind -> module whose import registers it
TRANSFORM_MODULES = {"nna": "sltk.nna.emulate", "gq": "sltk.nna.gq", "uniform": "sltk.nna.uniform",
                     "adapter": "sltk.adapters.attach", "adapter_fusion": "sltk.adapters.attach",
                     "context_adapter": "sltk.bias.encoder"}


def register_transform(kind: str, fn: Callable[[torch.nn.Module, Dict[str, Any]], None]) -> None:
    """Make checkpoints that record a transform of ``kind`` loadable: ``fn(model, meta)``
    rebuilds the structure of a freshly built model (e.g. swaps modules) so that the
    checkpoint's state_dict fits it; ``meta`` is the transform's entry without ``kind``."""
    _TRANSFORMS[kind] = fn


def transform_fn(kind: str, where: str = "") -> Callable[[torch.nn.Module, Dict[str, Any]], None]:
    if kind not in _TRANSFORMS and kind in TRANSFORM_MODULES:
        importlib.import_module(TRANSFORM_MODULES[kind])
    if kind not in _TRANSFORMS:
        raise UserError(f"{where or 'checkpoint'} records the model transform {kind!r}, which this sltk does not "
                        f"know (known: {', '.join(sorted(set(_TRANSFORMS) | set(TRANSFORM_MODULES)))})")
    return _TRANSFORMS[kind]


def apply_transforms(model: torch.nn.Module, transforms: Sequence[Dict[str, Any]], where: str = "") -> None:
    """Apply a checkpoint's transforms, in order, to a freshly built model."""
    for t in transforms:
        if not isinstance(t, dict) or "kind" not in t:
            raise UserError(f"{where}: malformed transform entry {t!r}")
        transform_fn(t["kind"], where)(model, {k: v for k, v in t.items() if k != "kind"})


def transform_kinds(obj: Dict[str, Any]) -> List[str]:
    return [t.get("kind", "?") for t in obj.get("transforms") or []]


def save_checkpoint(path: PathLike, model: torch.nn.Module, transforms: Optional[List[Dict[str, Any]]] = None,
                    **state: Any) -> None:
    """Save ``model`` with its config; ``transforms``: the entries (``{"kind": ..., **meta}``)
    that :func:`load_model` applies before loading the weights."""
    m = model.module if hasattr(model, "module") else model
    obj = {"format": FORMAT, "model_config": m.cfg.to_dict(), "model": m.state_dict(),
           "transforms": list(transforms or []), **state}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _is_packed_file(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(len(PACKED_FORMAT)) == PACKED_FORMAT.encode()


def _torch_load(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"checkpoint {p} cannot be read ({type(e).__name__}: {str(e)[:100]})") from None


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist")
    return _checked(_torch_load(p), p)


def _checked(obj: Any, p: Path) -> Dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        what = " (a packed model: load it with load_model)" if isinstance(obj, dict) and \
            obj.get("format") == PACKED_FORMAT else ""
        raise UserError(f"{p} is not an sltk transducer checkpoint{what}")
    obj.setdefault("transforms", [])
    return obj


def config_diff(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def load_model(path: PathLike, expect: Optional[ModelConfig] = None) -> Transducer:
    """Build the model a checkpoint describes, apply its transforms and load its weights. With
    ``expect``, refuse a checkpoint whose config differs (e.g. resuming with another model
    config). A packed model file goes to :func:`sltk.nna.pack.load_packed`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist")
    if _is_packed_file(p):
        return _load_packed(p)
    obj = _torch_load(p)
    if isinstance(obj, dict) and obj.get("format") == PACKED_FORMAT:
        return _load_packed(p)
    obj = _checked(obj, p)
    cfg = ModelConfig.from_dict(obj["model_config"], where=f"checkpoint {path}")
    if expect is not None:
        diff = config_diff(expect.to_dict(), cfg.to_dict())
        if diff:
            raise UserError(f"checkpoint {path} is from a different model ({'; '.join(diff[:4])})")
    model = Transducer(cfg)
    apply_transforms(model, obj["transforms"], f"checkpoint {path}")
    load_weights(model, obj["model"], str(path))
    return model


def _load_packed(p: Path) -> Transducer:
    from sltk.nna.pack import load_packed

    return load_packed(p)


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
    integer and boolean buffers (e.g. counters) are taken from the last. The checkpoints must
    record the same transforms, which the average keeps."""
    if not paths:
        raise UserError("no checkpoints to average")
    objs = [read_checkpoint(p) for p in paths]
    cfg0 = objs[0]["model_config"]
    tr0 = json.dumps(objs[0]["transforms"], sort_keys=True, default=str)
    for p, o in zip(paths[1:], objs[1:]):
        diff = config_diff(cfg0, o["model_config"])
        if diff:
            raise UserError(f"cannot average {paths[0]} with {p}: different models ({diff[0]})")
        if json.dumps(o["transforms"], sort_keys=True, default=str) != tr0:
            raise UserError(f"cannot average {paths[0]} with {p}: different model transforms "
                            f"({transform_kinds(objs[0]) or 'none'} vs {transform_kinds(o) or 'none'})")
    avg = {}
    for k, v in objs[-1]["model"].items():
        if v.is_floating_point():
            avg[k] = sum(o["model"][k].double() for o in objs).div(len(objs)).to(v.dtype)
        else:
            avg[k] = v
    out = dict(objs[-1])
    out["model"] = avg
    out["averaged_from"] = [str(p) for p in paths]
    for k in ("optimizer", "scheduler", "sampler", "rng", "hooks"):
        out.pop(k, None)
    return out
