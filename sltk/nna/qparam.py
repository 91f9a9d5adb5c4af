"""Quantized parameters: which weights are quantized, at how many bits, and how a quantizer is
attached to a model. Shared by the General Quantizer (:mod:`sltk.nna.gq`), the uniform
baselines (:mod:`sltk.nna.uniform`) and the packed format (:mod:`sltk.nna.pack`).

**Weights.** Every parameter with two or more dimensions (linear and convolution kernels,
LSTM matrices, attention projections, embeddings) is a weight that can be quantized; biases,
norms and buffers always stay in float.

**Bit allocation.** A mapping, usually read from yaml::

    default: 4                  # every weight not named below (1..8 bits, or float)
    layers:                     # glob over weight or module names; the LAST matching rule wins
      decoder.embedding: float  # a module name covers all its weights
      encoder.layers.0.*: 2
      joiner.output.weight: 8

A rule matches a weight when the glob matches its full name (``encoder.layers.0.lstm.weight_ih_l0``)
or one of the modules it belongs to (``encoder.layers.0.lstm``). A rule that matches no weight
of the model, an unknown key, or a bit width outside 1..8 is refused with a
:class:`~sltk.utils.errors.UserError` naming it.

**Attaching.** A quantizer is a module ``q(w) -> w_hat`` registered on the weight with
``torch.nn.utils.parametrize``: the float weight lives on as
``<module>.parametrizations.<name>.original`` and every use of ``<module>.<name>`` sees the
quantized value. LSTMs read their weights from a cached list (``_flat_weights``), so a forward
pre-hook refreshes that list from the parametrized attributes on every call.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch
from sltk.utils.cli import read_yaml
from torch import nn
from torch.nn.utils import parametrize

from sltk.utils.errors import UserError

MAX_BITS = 8
Bits = Optional[int]  # None: left in float


def is_weight(p: torch.Tensor) -> bool:
    """A tensor the quantizers consider: two or more dimensions."""
    return p.dim() >= 2


def weight_names(model: nn.Module) -> List[str]:
    """Names of the quantizable weights of a (float, unquantized) model, in parameter order."""
    return [name for name, p in logical_parameters(model) if is_weight(p)]


# ------------------------------------------------------------------------------- allocation
def _parse_bits(value, where: str) -> Bits:
    if isinstance(value, str) and value.strip().lower() == "float":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BITS:
        raise UserError(f"{where}: bits must be an integer 1..{MAX_BITS} or 'float', got {value!r}")
    return value


@dataclass
class BitAllocation:
    """Bits per weight: a default plus ordered (glob, bits) rules; the last matching rule wins."""

    default: Bits = None
    rules: List[Tuple[str, Bits]] = field(default_factory=list)
    source: str = "bit allocation"  # where it came from, for messages

    KEYS = ("default", "layers")

    @classmethod
    def from_dict(cls, d, source: str = "bit allocation", default_bits: Union[Bits, str] = "unset") -> "BitAllocation":
        """Parse a mapping ``{default: B|float, layers: {glob: B|float}}``. ``default_bits``
        (e.g. from ``--bits``) overrides the mapping's own default when given."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise UserError(f"{source} must be a mapping with keys {', '.join(cls.KEYS)}")
        for k in d:
            if k not in cls.KEYS:
                raise UserError(f"unknown key '{k}' in {source} (valid keys: {', '.join(cls.KEYS)})")
        if default_bits != "unset":
            default = _parse_bits(default_bits, f"{source}: default")
        elif "default" in d:
            default = _parse_bits(d["default"], f"{source}: default")
        else:
            raise UserError(f"{source} has no 'default' bits (give one there or with --bits)")
        layers = d.get("layers") or {}
        if not isinstance(layers, dict):
            raise UserError(f"{source}: 'layers' must be a mapping of name pattern: bits")
        rules = [(str(pat), _parse_bits(b, f"{source}: layers: {pat}")) for pat, b in layers.items()]
        return cls(default=default, rules=rules, source=source)

    @classmethod
    def from_yaml(cls, path, default_bits: Union[Bits, str] = "unset") -> "BitAllocation":
        p = Path(path)
        d = read_yaml(p, "bit allocation")
        return cls.from_dict(d, source=f"bit allocation {p}", default_bits=default_bits)

    @classmethod
    def uniform(cls, bits: Bits) -> "BitAllocation":
        return cls(default=_parse_bits(bits, "--bits"), source=f"--bits {bits}")

    def to_dict(self) -> Dict:
        return {"default": "float" if self.default is None else self.default,
                "layers": {pat: "float" if b is None else b for pat, b in self.rules}}

    @staticmethod
    def _matches(pattern: str, name: str) -> bool:
        parts = name.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)

    def resolve(self, names: List[str]) -> Dict[str, Bits]:
        """Bits of each weight name. A rule matching none of ``names`` is refused."""
        out = {n: self.default for n in names}
        for pattern, bits in self.rules:
            hit = [n for n in names if self._matches(pattern, n)]
            if not hit:
                close = [n for n in names if n.split(".")[0] == pattern.split(".")[0]][:3] or names[:3]
                raise UserError(f"{self.source}: '{pattern}' matches no weight of the model "
                                f"(weights are named like {', '.join(close)}; {len(names)} in all)")
            for n in hit:
                out[n] = bits
        return out

    def for_model(self, model: nn.Module) -> Dict[str, Bits]:
        return self.resolve(weight_names(model))


def average_bits(bits: Dict[str, Bits], model: nn.Module) -> float:
    """Average bits per quantized weight element (float tensors left out); 32.0 if none."""
    sizes = dict((n, p.numel()) for n, p in logical_parameters(model))
    num = sum(sizes[n] * b for n, b in bits.items() if b is not None)
    den = sum(sizes[n] for n, b in bits.items() if b is not None)
    return num / den if den else 32.0


# ------------------------------------------------------------------------------- attaching
def _refresh_flat_weights(module: nn.RNNBase, _inputs) -> None:
    # nn.LSTM/GRU hand self._flat_weights (a list captured at construction) to the kernel;
    # point it at the current, quantized values of the parametrized weights
    module._flat_weights = [getattr(module, n) if hasattr(module, n) else None
                            for n in module._flat_weights_names]


def attach(model: nn.Module, name: str, quantizer: nn.Module) -> None:
    """Quantize weight ``name`` (e.g. ``encoder.layers.0.lstm.weight_ih_l0``) with ``quantizer``."""
    mod_name, _, pname = name.rpartition(".")
    module = model.get_submodule(mod_name) if mod_name else model
    if parametrize.is_parametrized(module, pname):
        raise ValueError(f"{name} is already quantized")
    parametrize.register_parametrization(module, pname, quantizer)
    if isinstance(module, nn.RNNBase) and not getattr(module, "_sltk_flat_hook", False):
        module.register_forward_pre_hook(_refresh_flat_weights)
        module._sltk_flat_hook = True
        _refresh_flat_weights(module, ())


def quantizers(model: nn.Module) -> Iterator[Tuple[str, nn.Module, nn.Module]]:
    """(weight name, owning module, quantizer) for every quantized weight."""
    for mod_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for pname, plist in module.parametrizations.items():
                yield (f"{mod_name}.{pname}" if mod_name else pname), module, plist[0]


def logical_parameters(model: nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    """(name, float tensor) of every parameter under its unquantized name: a quantized weight
    appears once, as its float original (``...lstm.weight_ih_l0``, not
    ``...lstm.parametrizations.weight_ih_l0.original``); quantizers' own parameters are left out."""
    for name, p in model.named_parameters():
        if ".parametrizations." in name or name.startswith("parametrizations."):
            head, _, tail = name.partition("parametrizations.")
            pname, _, rest = tail.partition(".")
            if rest == "original":
                yield head + pname, p
            continue
        yield name, p


def logical_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The state dict of the float model: quantized weights as their float originals,
    without quantizer parameters, plus every buffer."""
    out = dict(logical_parameters(model))
    for name, b in model.named_buffers():
        if ".parametrizations." not in name and not name.startswith("parametrizations."):
            out[name] = b
    return out


def quantized_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The state dict of the float model with every quantized weight replaced by its quantized
    value (what the forward pass sees)."""
    out = logical_state(model)
    with torch.no_grad():
        for name, module, _ in quantizers(model):
            out[name] = getattr(module, name.rpartition(".")[2]).detach().clone()
    return out
