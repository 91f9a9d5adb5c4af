"""The adapter, its configuration, and the ways to combine several at one position."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from sltk.utils.config import dataclass_from_dict
from sltk.utils.errors import UserError

METHODS = ("sum", "average", "attention")
DECODER = "decoder"  # the position key of the prediction network's output


def encoder_key(layer: int) -> str:
    """Position key of the adapter after encoder layer ``layer`` (0-based, resolved)."""
    return f"encoder_{layer}"


@dataclass
class AdapterConfig:
    """Where adapters sit and how big they are.

    ``encoder_layers``: 0-based encoder layers after which an adapter sits (negative: from the
    end); ``decoder``: one on the prediction network's output; ``bottleneck``: hidden size."""

    encoder_layers: List[int] = field(default_factory=lambda: [-1])
    decoder: bool = True
    bottleneck: int = 64

    def __post_init__(self):
        layers = self.encoder_layers
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = [layers]
        if not isinstance(layers, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                            for i in layers):
            raise UserError(f"adapter config: encoder_layers must be a list of integers, got {self.encoder_layers!r}")
        self.encoder_layers = list(layers)
        if not isinstance(self.decoder, bool):
            raise UserError(f"adapter config: decoder must be true or false, got {self.decoder!r}")
        if not isinstance(self.bottleneck, int) or isinstance(self.bottleneck, bool) or self.bottleneck < 1:
            raise UserError(f"adapter config: bottleneck must be a positive integer, got {self.bottleneck!r}")
        if not self.encoder_layers and not self.decoder:
            raise UserError("adapter config places no adapter (encoder_layers is empty and decoder is false)")

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]], where: str = "adapter config") -> "AdapterConfig":
        return dataclass_from_dict(cls, d, where)

    @classmethod
    def from_yaml(cls, path) -> "AdapterConfig":
        from sltk.utils.cli import read_yaml

        return cls.from_dict(read_yaml(path, "adapter config"), where=f"adapter config {path}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def positions(self, num_encoder_layers: int) -> List[str]:
        """The resolved position keys (``encoder_<i>``..., ``decoder``) for an encoder of
        ``num_encoder_layers`` layers; an index out of range or given twice is an error."""
        out = []
        n = num_encoder_layers
        for i in self.encoder_layers:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise UserError(f"adapter config: encoder layer {i} does not exist (the encoder has {n} layers: "
                                f"0..{n - 1}, or -{n}..-1 from the end)")
            key = encoder_key(j)
            if key in out:
                raise UserError(f"adapter config: encoder layer {j} is given twice in encoder_layers "
                                f"{self.encoder_layers}")
            out.append(key)
        out.sort(key=lambda k: int(k.split("_")[1]))
        if self.decoder:
            out.append(DECODER)
        return out


class Adapter(nn.Module):
    """Residual bottleneck adapter: ``forward(h)`` is the residual term
    ``up(relu(down(norm(h))))``; the caller adds it to ``h``. The up-projection starts at zero,
    so a fresh adapter changes nothing."""

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(self.norm(h))))


class AttentionFusion(nn.Module):
    """AdapterFusion: per frame, attention of the query ``W_q h`` over the keys ``W_k o_k`` of
    the adapter outputs ``o_k`` (and, with ``include_base``, of the base itself, ``o_0 = 0``,
    candidate 0); returns ``sum_k alpha_k W_v o_k``. ``W_v`` starts as the identity and
    ``W_q``, ``W_k`` near zero, so the attention starts near uniform. The last weights
    (..., K [+1]) are kept in ``last_weights`` for analysis."""

    def __init__(self, dim: int, include_base: bool = True, init_std: float = 0.01):
        super().__init__()
        self.include_base = include_base
        # no biases: the base candidate (o_0 = 0) then has key 0 and value 0 exactly
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        nn.init.normal_(self.query.weight, std=init_std)
        nn.init.normal_(self.key.weight, std=init_std)
        with torch.no_grad():
            self.value.weight.copy_(torch.eye(dim))
        self.last_weights: Optional[torch.Tensor] = None

    def forward(self, h: torch.Tensor, outs: Sequence[torch.Tensor]) -> torch.Tensor:
        o = torch.stack(list(outs), dim=-2)  # (..., K, D)
        if self.include_base:
            o = torch.cat([torch.zeros_like(o[..., :1, :]), o], dim=-2)
        q = self.query(h)[..., None, :]  # (..., 1, D)
        scores = (q * self.key(o)).sum(-1) / math.sqrt(h.size(-1))  # (..., K)
        alpha = scores.softmax(-1)
        self.last_weights = alpha.detach()
        return (alpha[..., None] * self.value(o)).sum(-2)


class AdapterSite:
    """The adapters at one position and how their outputs combine: ``h + sum_k a_k(h)``
    (sum), ``h + mean_k a_k(h)`` (average) or ``h + fusion(h, [a_k(h)])`` (attention).
    A plain callable (the modules it uses belong to the model), used as a hook."""

    def __init__(self, key: str, adapters: Sequence[Adapter], method: str,
                 fusion: Optional[AttentionFusion] = None):
        if method not in METHODS:
            raise UserError(f"fusion method must be one of {', '.join(METHODS)}, got {method!r}")
        if (method == "attention") != (fusion is not None):
            raise ValueError("an attention fusion module goes with (only) the attention method")
        self.key = key
        self.adapters = list(adapters)
        self.method = method
        self.fusion = fusion

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        outs = [a(h) for a in self.adapters]
        if self.method == "attention":
            return h + self.fusion(h, outs)
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        return h + (total / len(outs) if self.method == "average" and len(outs) > 1 else total)


class EncoderLayerHook:
    """``Encoder.layer_hooks`` entry running ``site`` after encoder layer ``layer``."""

    def __init__(self, layer: int, site: AdapterSite):
        self.layer = layer
        self.site = site

    def __call__(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.site(x) if i == self.layer else x
