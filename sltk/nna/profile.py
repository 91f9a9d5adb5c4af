"""The description of a neural-network accelerator (NNA): what its integer datapath can do.

A profile is a yaml file (``egs/assistant/nna1/conf/nna/*.yaml``), read strictly: an unknown
key, a missing section or a width the datapath cannot have is refused with a message naming
the file and the key. The schema, with the int8 profile's values::

    name: int8                      # optional; defaults to the file's stem
    weights:
      bits: 8
      granularity: per_channel      # per_channel (one scale per output channel) | per_tensor
    activations:
      bits: 8
      signedness: signed            # signed | auto (unsigned codes where the calibrated range is >= 0)
    accumulator:
      bits: 32
      saturate: true                # false: the register wraps around (two's complement)
      headroom: true                # optional (default true): calibration widens an input range
                                    # where its products would overflow the accumulator
    requant:
      multiplier_bits: 31           # y = acc * m * 2^-n with the integer m < 2^multiplier_bits
    lstm:
      cell_bits: 16                 # precision of the LSTM cell state
    luts:                           # the NNA's non-linearities (LSTM gates, joiner tanh)
      sigmoid: {entries: 256, input_range: 8.0, output_bits: 8}
      tanh: {entries: 256, input_range: 4.0, output_bits: 8}
    calibration:                    # optional
      momentum: 0.9                 # EMA of the observed min/max while calibrating
    operators:                      # nna | cpu; a kind left out falls back to the CPU
      linear: nna
      conv: nna
      ...

Look-up tables: a table of ``entries`` E values covers inputs ``[-R, R)`` with the step
``D = 2R / E``; entry ``i`` holds ``f((i - E/2) * D)``, so an input already requantized to
units of ``D`` (an integer ``k``) reads entry ``clamp(k + E/2, 0, E-1)``. Sigmoid entries are
unsigned ``output_bits`` codes of 1 / (2^b - 1), tanh entries signed codes of
1 / (2^(b-1) - 1).

Operator kinds (``KINDS``): ``linear``, ``conv`` (1-D and 2-D), ``lstm``, ``embedding``,
``layernorm``, the element-wise ``relu``, ``add``, ``mul``, ``tanh``, ``sigmoid``, and kinds
the NNA has no integer implementation of here (``attention``, ``silu``, ``glu``, ``softmax``),
which must stay on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from sltk.utils.cli import read_yaml

from sltk.utils.errors import UserError

# kind -> whether an integer (NNA) implementation exists
KINDS: Dict[str, bool] = {
    "linear": True, "conv": True, "lstm": True, "embedding": True, "layernorm": True,
    "relu": True, "add": True, "mul": True, "tanh": True, "sigmoid": True,
    "attention": False, "silu": False, "glu": False, "softmax": False,
}
GRANULARITIES = ("per_channel", "per_tensor")
SIGNEDNESS = ("signed", "auto")
MAX_BITS = 32


@dataclass(frozen=True)
class LUT:
    """One look-up table of the NNA (see the module doc)."""

    entries: int
    input_range: float
    output_bits: int

    @property
    def step(self) -> float:
        """Input step between entries, ``2R / E``."""
        return 2.0 * self.input_range / self.entries


@dataclass(frozen=True)
class NNAProfile:
    name: str
    weight_bits: int
    weight_granularity: str
    act_bits: int
    act_signedness: str
    acc_bits: int
    acc_saturate: bool
    multiplier_bits: int
    cell_bits: int
    sigmoid: LUT
    tanh: LUT
    momentum: float = 0.9
    operators: Dict[str, str] = field(default_factory=dict)  # every kind of KINDS -> nna | cpu
    acc_headroom: bool = True

    def on_nna(self, kind: str) -> bool:
        if kind not in KINDS:
            raise KeyError(f"unknown operator kind {kind!r}")
        return self.operators.get(kind, "cpu") == "nna"

    @property
    def per_channel(self) -> bool:
        return self.weight_granularity == "per_channel"

    def to_dict(self) -> Dict[str, Any]:
        """The yaml schema's mapping (``from_dict(to_dict())`` is the identity)."""
        return {
            "name": self.name,
            "weights": {"bits": self.weight_bits, "granularity": self.weight_granularity},
            "activations": {"bits": self.act_bits, "signedness": self.act_signedness},
            "accumulator": {"bits": self.acc_bits, "saturate": self.acc_saturate, "headroom": self.acc_headroom},
            "requant": {"multiplier_bits": self.multiplier_bits},
            "lstm": {"cell_bits": self.cell_bits},
            "luts": {k: {"entries": t.entries, "input_range": t.input_range, "output_bits": t.output_bits}
                     for k, t in (("sigmoid", self.sigmoid), ("tanh", self.tanh))},
            "calibration": {"momentum": self.momentum},
            "operators": dict(self.operators),
        }

    def describe(self) -> str:
        return (f"{self.name}: int{self.weight_bits} weights {self.weight_granularity.replace('_', '-')}, "
                f"int{self.act_bits} activations, {self.acc_bits}-bit "
                f"{'saturating' if self.acc_saturate else 'wrapping'} accumulators, "
                f"{self.sigmoid.entries}/{self.tanh.entries}-entry sigmoid/tanh LUTs")

    # ------------------------------------------------------------------ reading and checking
    @classmethod
    def from_yaml(cls, path) -> "NNAProfile":
        p = Path(path)
        d = read_yaml(p, "NNA profile")
        return cls.from_dict(d, where=f"NNA profile {p}", default_name=p.stem)

    @classmethod
    def from_dict(cls, d: Any, where: str = "NNA profile", default_name: str = "nna") -> "NNAProfile":
        if not isinstance(d, dict):
            raise UserError(f"{where} must be a mapping of sections (weights, activations, ...)")
        top = _Section(d, where, "", required=("weights", "activations", "accumulator", "requant", "lstm",
                                               "luts", "operators"),
                       optional=("name", "calibration"))
        w = top.section("weights", required=("bits", "granularity"))
        a = top.section("activations", required=("bits", "signedness"))
        acc = top.section("accumulator", required=("bits", "saturate"), optional=("headroom",))
        rq = top.section("requant", required=("multiplier_bits",))
        ls = top.section("lstm", required=("cell_bits",))
        luts = top.section("luts", required=("sigmoid", "tanh"))
        cal = top.section("calibration", optional=("momentum",)) if "calibration" in d else None
        ops = d["operators"]
        if not isinstance(ops, dict):
            raise UserError(f"{where}: 'operators' must be a mapping of operator kind to nna or cpu")

        def lut(name: str) -> LUT:
            s = luts.section(name, required=("entries", "input_range", "output_bits"))
            e = s.integer("entries", 4, 1 << 16)
            if e & (e - 1):
                raise UserError(f"{where}: luts.{name}.entries must be a power of two, got {e}")
            r = s.number("input_range")
            if not (r > 0 and math.isfinite(r)):
                raise UserError(f"{where}: luts.{name}.input_range must be a positive number, got {r}")
            return LUT(e, float(r), s.integer("output_bits", 2, 16))

        prof = cls(
            name=str(d.get("name", default_name)),
            weight_bits=w.integer("bits", 2, MAX_BITS),
            weight_granularity=w.choice("granularity", GRANULARITIES),
            act_bits=a.integer("bits", 2, MAX_BITS),
            act_signedness=a.choice("signedness", SIGNEDNESS),
            acc_bits=acc.integer("bits", 2, MAX_BITS),
            acc_saturate=acc.boolean("saturate"),
            multiplier_bits=rq.integer("multiplier_bits", 2, MAX_BITS),
            cell_bits=ls.integer("cell_bits", 2, MAX_BITS),
            sigmoid=lut("sigmoid"),
            tanh=lut("tanh"),
            momentum=cal.number("momentum") if cal is not None and "momentum" in d["calibration"] else 0.9,
            operators={},
            acc_headroom=acc.boolean("headroom") if "headroom" in d["accumulator"] else True,
        )
        for kind, place in ops.items():
            if kind not in KINDS:
                raise UserError(f"unknown operator kind '{kind}' in {where} (operators: valid kinds are "
                                f"{', '.join(KINDS)})")
            if place not in ("nna", "cpu"):
                raise UserError(f"{where}: operators.{kind} must be nna or cpu, got {place!r}")
            if place == "nna" and not KINDS[kind]:
                raise UserError(f"{where}: operator '{kind}' cannot run on the NNA (sltk has no integer "
                                "implementation of it); set it to cpu")
        operators = {k: str(ops.get(k, "cpu")) for k in KINDS}
        object.__setattr__(prof, "operators", operators)
        prof._check_widths(where)
        return prof

    def _check_widths(self, where: str) -> None:
        """Widths that no datapath can have: products wider than their register."""
        if not 0.0 < self.momentum < 1.0:
            raise UserError(f"{where}: calibration.momentum must be in (0, 1), got {self.momentum}")
        if self.acc_bits < self.weight_bits + self.act_bits:
            raise UserError(f"{where}: the accumulator ({self.acc_bits} bits) is narrower than one product of a "
                            f"{self.weight_bits}-bit weight and a {self.act_bits}-bit activation "
                            f"({self.weight_bits + self.act_bits} bits)")
        if self.acc_bits + self.multiplier_bits > 63:
            raise UserError(f"{where}: accumulator ({self.acc_bits} bits) times requantization multiplier "
                            f"({self.multiplier_bits} bits) does not fit a 64-bit product (at most 63 bits)")
        s, t = self.sigmoid.output_bits, self.tanh.output_bits
        widest = max(s + self.cell_bits, s + t)  # f * c and i * g in the LSTM cell update
        if widest + self.multiplier_bits > 63:
            raise UserError(f"{where}: the LSTM cell product ({widest} bits: sigmoid output x cell state or "
                            f"tanh output) times the {self.multiplier_bits}-bit multiplier exceeds 63 bits")
        if self.cell_bits < max(s, t):
            raise UserError(f"{where}: lstm.cell_bits ({self.cell_bits}) is narrower than the LUT outputs "
                            f"({max(s, t)} bits)")


class _Section:
    """Strict access to one mapping of the profile (unknown keys refused, types checked)."""

    def __init__(self, d: Any, where: str, path: str, required=(), optional=()):
        self.where, self.path = where, path
        name = path or "the top level"
        if not isinstance(d, dict):
            raise UserError(f"{where}: '{path}' must be a mapping")
        allowed = list(required) + list(optional)
        for k in d:
            if k not in allowed:
                raise UserError(f"unknown key '{k}' in {where} (in {name}; valid keys: {', '.join(allowed)})")
        for k in required:
            if k not in d:
                raise UserError(f"{where}: missing key '{k}' (in {name})")
        self.d = d

    def _key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def section(self, k: str, required=(), optional=()) -> "_Section":
        return _Section(self.d[k], self.where, self._key(k), required, optional)

    def integer(self, k: str, lo: int, hi: int) -> int:
        v = self.d[k]
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"{self.where}: {self._key(k)} must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise UserError(f"{self.where}: {self._key(k)} = {v} is impossible (must be in {lo}..{hi})")
        return v

    def number(self, k: str) -> float:
        v = self.d[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"{self.where}: {self._key(k)} must be a number, got {v!r}")
        return float(v)

    def boolean(self, k: str) -> bool:
        v = self.d[k]
        if not isinstance(v, bool):
            raise UserError(f"{self.where}: {self._key(k)} must be true or false, got {v!r}")
        return v

    def choice(self, k: str, options) -> str:
        v = self.d[k]
        if v not in options:
            raise UserError(f"{self.where}: {self._key(k)} must be one of {', '.join(options)}, got {v!r}")
        return v


def load_profile(path) -> NNAProfile:
    """Read and check an NNA profile yaml (:class:`UserError` on any problem)."""
    return NNAProfile.from_yaml(path)


def profile_from_meta(meta: Dict[str, Any], where: str) -> NNAProfile:
    """The profile recorded in a checkpoint's transform entry."""
    d: Optional[Dict[str, Any]] = meta.get("profile")
    if not isinstance(d, dict):
        raise UserError(f"{where}: the nna transform records no profile")
    return NNAProfile.from_dict(d, where=f"the NNA profile recorded in {where}")
