"""Adapters on a transducer: attach/detach, the base hash, adapter files, checkpoint transforms.

Module layout on a :class:`~sltk.asr.model.Transducer` (the base's parameter names do not
change, so base checkpoints still load)::

    model.adapters        ModuleList, one ModuleDict per adapter: position key -> Adapter
    model.adapter_fusion  ModuleDict position key -> AttentionFusion (method attention only)
    model.adapter_setup   dict: names, configs, method, include_base, positions, base_hash

Position keys are ``encoder_<i>`` (after encoder layer i, via ``model.encoder.layer_hooks``)
and ``decoder`` (the prediction network's output, via ``model.decoder.output_hooks``).

An adapter file (format ``sltk-adapter-v1``) holds one adapter's weights, its config, the
base model's config and the sha256 of the base weights (:func:`base_hash`); it refuses to
load onto a model whose base weights differ. Checkpoints of adapted models record the
transform ``adapter`` (one adapter) or ``adapter_fusion`` (K adapters and how they combine),
so :func:`sltk.asr.checkpoint.load_model` rebuilds them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from sltk.adapters.modules import (DECODER, METHODS, Adapter, AdapterConfig, AdapterSite, AttentionFusion,
                                   EncoderLayerHook)
from sltk.asr.checkpoint import config_diff, register_transform
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_path

log = logging.getLogger("sltk")

ADAPTER_FORMAT = "sltk-adapter-v1"
ADAPTERS = "adapters"
FUSION = "adapter_fusion"
_PREFIXES = (ADAPTERS + ".", FUSION + ".")
_FILE_KEYS = ("name", "config", "base_hash", "base_model_config", "state_dict")


def is_adapter_key(name: str) -> bool:
    """Whether a state_dict / parameter name belongs to the adapters or their fusion."""
    return name.startswith(_PREFIXES)


def has_adapters(model: nn.Module) -> bool:
    return hasattr(model, "adapter_setup")


def base_hash(model_or_state: Union[nn.Module, Dict[str, torch.Tensor]]) -> str:
    """sha256 (hex) of the base model's weights: every state_dict entry except the adapters'
    and the fusion's, sorted by name, each as its name, shape, dtype and raw bytes."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    h = hashlib.sha256()
    for name in sorted(state):
        if is_adapter_key(name):
            continue
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _dim(model: nn.Module, key: str) -> int:
    return model.cfg.decoder_dim if key == DECODER else model.cfg.encoder_dim


def attach(model: nn.Module, specs: Sequence[Tuple[str, AdapterConfig]], method: str = "sum",
           include_base: bool = True, base_hash: Optional[str] = None) -> None:
    """Attach fresh adapters (``specs``: (name, config) each, all at the same positions) to a
    model that has none, combined by ``method`` (sum | average | attention); a fresh model
    computes exactly what the base does. Load weights afterwards (state_dict or
    :func:`load_adapter_state`)."""
    if has_adapters(model):
        raise UserError("the model has adapters already (detach them first, or fuse from the base model)")
    if not specs:
        raise UserError("no adapters to attach")
    if method not in METHODS:
        raise UserError(f"fusion method must be one of {', '.join(METHODS)}, got {method!r}")
    n_layers = model.cfg.num_encoder_layers
    positions = [cfg.positions(n_layers) for _, cfg in specs]
    for (name, cfg), pos in zip(specs[1:], positions[1:]):
        if pos != positions[0]:
            raise UserError(f"adapters {specs[0][0]!r} and {name!r} sit at different positions "
                            f"({', '.join(positions[0])} vs {', '.join(pos)}); fused adapters must share "
                            "their positions (encoder_layers and decoder of the adapter config)")
    keys = positions[0]
    try:
        dev = next(model.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    model.adapters = nn.ModuleList([nn.ModuleDict({k: Adapter(_dim(model, k), cfg.bottleneck) for k in keys})
                                    for _, cfg in specs]).to(dev)
    if method == "attention":
        model.adapter_fusion = nn.ModuleDict({k: AttentionFusion(_dim(model, k), include_base) for k in keys}).to(dev)
    for k in keys:
        site = AdapterSite(k, [a[k] for a in model.adapters], method,
                           model.adapter_fusion[k] if method == "attention" else None)
        if k == DECODER:
            model.decoder.output_hooks.append(site)
        else:
            model.encoder.layer_hooks.append(EncoderLayerHook(int(k.split("_")[1]), site))
    model.adapter_setup = {"names": [n for n, _ in specs], "configs": [c.to_dict() for _, c in specs],
                           "method": method, "include_base": bool(include_base), "positions": keys,
                           "base_hash": base_hash}


def detach(model: nn.Module) -> None:
    """Remove every adapter (and fusion) from the model: it is the base model again."""
    if not has_adapters(model):
        return
    model.encoder.layer_hooks[:] = [h for h in model.encoder.layer_hooks if not isinstance(h, EncoderLayerHook)]
    model.decoder.output_hooks[:] = [h for h in model.decoder.output_hooks if not isinstance(h, AdapterSite)]
    for name in (ADAPTERS, FUSION):
        if hasattr(model, name):
            delattr(model, name)
    del model.adapter_setup


def freeze_all_but(model: nn.Module, prefix: str) -> int:
    """``requires_grad`` True only for the parameters under ``prefix`` (``adapters`` or
    ``adapter_fusion``); returns how many parameters (elements) stay trainable."""
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefix + "."))
        n += p.numel() if p.requires_grad else 0
    if n == 0:
        raise UserError(f"the model has no {prefix} parameters to train")
    return n


def fusion_weights(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Position key -> the attention weights of the last forward (..., K [+1]; with
    include_base, candidate 0 is the base), for an attention-fused model."""
    if not hasattr(model, FUSION):
        return {}
    return {k: f.last_weights for k, f in model.adapter_fusion.items() if f.last_weights is not None}


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------- adapter files
def save_adapter(path: PathLike, model: nn.Module, index: int = 0, info: Optional[Dict[str, Any]] = None) -> Dict:
    """Write adapter ``index`` of ``model`` to its own file (atomically), with the base hash of
    ``model``; returns the saved object."""
    if not has_adapters(model):
        raise UserError("the model has no adapter to save")
    s = model.adapter_setup
    obj = {"format": ADAPTER_FORMAT, "name": s["names"][index], "config": dict(s["configs"][index]),
           "positions": list(s["positions"]), "base_hash": base_hash(model),
           "base_model_config": model.cfg.to_dict(),
           "state_dict": {k: v.detach().cpu().clone() for k, v in model.adapters[index].state_dict().items()},
           "num_params": num_params(model.adapters[index]), "info": dict(info or {})}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return obj


def read_adapter(path: PathLike) -> Dict:
    """An adapter file's content, checked (format, keys, config); ``path`` is recorded in it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"adapter file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"adapter file {p} cannot be read ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(obj, dict) or obj.get("format") != ADAPTER_FORMAT:
        what = " (a model checkpoint)" if isinstance(obj, dict) and "model_config" in obj else ""
        raise UserError(f"{p} is not an sltk adapter file{what}")
    missing = [k for k in _FILE_KEYS if k not in obj]
    if missing:
        raise UserError(f"adapter file {p} lacks {', '.join(missing)}")
    obj["config"] = AdapterConfig.from_dict(obj["config"], where=f"the adapter config in {p}").to_dict()
    obj["path"] = str(p)
    return obj


def check_base(obj: Dict, model: nn.Module, model_hash: Optional[str] = None, what: str = "this model") -> None:
    """Refuse an adapter file trained on another base model than ``model``."""
    where = obj.get("path", "adapter")
    h = model_hash or base_hash(model)
    if obj["base_hash"] == h:
        return
    diff = config_diff(obj["base_model_config"], model.cfg.to_dict())
    extra = f"; the model configs differ too ({'; '.join(diff[:3])})" if diff else ""
    raise UserError(f"adapter {where} ({obj['name']!r}) was trained on base model {obj['base_hash'][:12]}, "
                    f"{what} is {h[:12]}: an adapter refuses to load onto another base model{extra}")


def load_adapter_state(model: nn.Module, index: int, obj: Dict) -> None:
    """Load an adapter file's weights into adapter ``index`` of ``model``."""
    target = model.adapters[index]
    own = target.state_dict()
    state = obj["state_dict"]
    bad = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise UserError(f"adapter {obj.get('path', obj['name'])}: its weights do not fit the adapter built from "
                        f"its config (e.g. {bad[0]})")
    target.load_state_dict(state)


def load_adapter(model: nn.Module, path_or_obj: Union[PathLike, Dict]) -> Dict:
    """Attach the adapter of a file to a base model (checked against its base hash)."""
    return fuse(model, [path_or_obj], "sum")[0]


def fuse(model: nn.Module, adapters: Sequence[Union[PathLike, Dict]], method: str = "sum",
         include_base: bool = True, check: bool = True) -> List[Dict]:
    """Attach K adapter files (paths or :func:`read_adapter` objects) to a base model,
    combined by ``method``; each is checked against the model's base hash (unless not
    ``check``: a model whose base weights are loaded later). Returns the file objects."""
    objs = [a if isinstance(a, dict) else read_adapter(a) for a in adapters]
    if not objs:
        raise UserError("no adapter files to fuse")
    h = base_hash(model)
    if check:
        for o in objs:
            check_base(o, model, h)
    attach(model, [(o["name"], AdapterConfig.from_dict(o["config"])) for o in objs], method, include_base,
           base_hash=objs[0]["base_hash"] if not check else h)
    try:
        for i, o in enumerate(objs):
            load_adapter_state(model, i, o)
    except BaseException:
        detach(model)
        raise
    return objs


# ---------------------------------------------------------------------------------- checkpoint transforms
def transform_entry(model: nn.Module) -> Dict[str, Any]:
    """The checkpoint transform (``{"kind": ..., **meta}``) that rebuilds the model's adapters:
    ``adapter`` for one adapter added to the base, else ``adapter_fusion``."""
    s = model.adapter_setup
    if len(s["names"]) == 1 and s["method"] == "sum":
        return {"kind": "adapter", "name": s["names"][0], "config": dict(s["configs"][0]),
                "base_hash": s.get("base_hash")}
    return {"kind": "adapter_fusion", "adapters": [{"name": n, "config": dict(c)} for n, c in
                                                   zip(s["names"], s["configs"])],
            "method": s["method"], "include_base": s["include_base"], "base_hash": s.get("base_hash")}


def apply_transform(model: nn.Module, meta: Dict[str, Any]) -> None:
    """Checkpoint transforms ``adapter`` and ``adapter_fusion``: rebuild the adapters (fresh;
    the checkpoint's weights load next)."""
    if "adapters" in meta:
        specs = [(a["name"], AdapterConfig.from_dict(a["config"], where="the checkpoint's adapter config"))
                 for a in meta["adapters"]]
        method, include_base = meta.get("method", "sum"), meta.get("include_base", True)
    else:
        specs = [(meta["name"], AdapterConfig.from_dict(meta["config"], where="the checkpoint's adapter config"))]
        method, include_base = "sum", True
    attach(model, specs, method, include_base, base_hash=meta.get("base_hash"))


register_transform("adapter", apply_transform)
register_transform("adapter_fusion", apply_transform)
