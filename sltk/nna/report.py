"""Which operators of a transducer leave the NNA, and what that costs in conversions.

The model is traced on a synthetic utterance (nothing is read but the checkpoint): leaf
operator modules are recorded by forward hooks, element-wise and other functional operations
by a :class:`torch.overrides.TorchFunctionMode`, and the provenance of every tensor is followed
through layout operations (view, transpose, slicing, masking, dropout), which move data but do
not compute. Each recorded operator runs on the NNA or falls back to float on the CPU as the
profile says. A tensor produced on one side and consumed on the other is a conversion
(float -> int codes or back), counted once per tensor and direction (a converted tensor is
reused by its other consumers on that side).

Three phases, as greedy search runs them: the **encoder** (with the joiner's encoder
projection) once per utterance, its conversions weighted by the frames of the converted tensor
(the features enter at 4x the encoder's frame rate); the **joiner** core (add, tanh, output
layer) once per encoder frame, its logits going to the search on the CPU; the **prediction
network** (with the joiner's decoder projection) once per emitted token. The per-frame figure
is encoder + joiner; the prediction network's is per token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from sltk.nna.profile import NNAProfile

# leaf modules recorded as one operator (checked in order; emulated modules subclass these)
_MODULE_KINDS: Tuple[Tuple[type, str], ...] = (
    (nn.MultiheadAttention, "attention"), (nn.Linear, "linear"), (nn.Conv1d, "conv"), (nn.Conv2d, "conv"),
    (nn.LSTM, "lstm"), (nn.Embedding, "embedding"), (nn.LayerNorm, "layernorm"), (nn.ReLU, "relu"),
    (nn.SiLU, "silu"), (nn.GLU, "glu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"),
)
# functional operations by name (dunder and in-place spellings included); the rest move data
_FUNC_KINDS = {
    "add": "add", "radd": "add", "iadd": "add", "sub": "add", "rsub": "add", "isub": "add",
    "mul": "mul", "rmul": "mul", "imul": "mul", "div": "mul", "truediv": "mul", "rtruediv": "mul",
    "itruediv": "mul",
    "relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid", "silu": "silu", "glu": "glu", "softmax": "softmax", "log_softmax": "softmax",
    "linear": "linear", "conv1d": "conv", "conv2d": "conv", "layer_norm": "layernorm", "embedding": "embedding",
    "lstm": "lstm", "matmul": "linear", "bmm": "linear",
}
_ELEMENTWISE_NEEDS_TWO = {"add", "mul"}  # with a python scalar these are a requantization, not an operator


def _module_kind(m: nn.Module) -> Optional[str]:
    kind = getattr(m, "nna_kind", None)
    if kind:
        return kind
    for typ, k in _MODULE_KINDS:
        if isinstance(m, typ):
            return k
    return None


def _tensors(obj: Any) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


@dataclass
class Op:
    name: str
    kind: str
    placement: str           # nna | cpu
    phase: str


@dataclass
class Conversion:
    producer: str
    consumer: str
    direction: str           # float->int | int->float
    phase: str
    per_unit: float          # conversions per encoder frame (encoder, joiner) or per token (decoder)


class _Tracer(TorchFunctionMode):
    """Records operators and tensor provenance while a phase runs (see the module doc)."""

    def __init__(self, profile: NNAProfile, model: nn.Module, phase: str, frames: Dict[int, float]):
        super().__init__()
        self.profile, self.phase, self.frames = profile, phase, frames
        self.nodes: List[Op] = []
        self.prov: Dict[int, int] = {}          # id(tensor) -> node index
        self.keep: List[torch.Tensor] = []      # keeps traced tensors alive (their ids stay unique)
        self.edges: List[Tuple[int, int, float]] = []  # (producer node, consumer node, frames)
        self.depth = 0                           # > 0 inside an operator module
        self.scope: List[str] = []
        self.handles = []
        for name, m in model.named_modules():
            kind = _module_kind(m)
            self.handles.append(m.register_forward_pre_hook(self._pre(name, kind)))
            self.handles.append(m.register_forward_hook(self._post(name, kind)))

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def placement(self, kind: str) -> str:
        return "nna" if self.profile.on_nna(kind) else "cpu"

    def node(self, name: str, kind: str, placement: Optional[str] = None) -> int:
        self.nodes.append(Op(name, kind, placement or self.placement(kind), self.phase))
        return len(self.nodes) - 1

    def mark(self, t: torch.Tensor, node: int) -> None:
        self.prov[id(t)] = node
        self.keep.append(t)

    def _frames(self, t: torch.Tensor) -> float:
        for size in t.shape:
            if int(size) in self.frames:
                return self.frames[int(size)]
        return self.frames.get(-1, 1.0)

    def consume(self, node: int, inputs: List[torch.Tensor]) -> None:
        for t in inputs:
            src = self.prov.get(id(t))
            if src is not None:
                self.edges.append((src, node, self._frames(t)))

    # module hooks
    def _pre(self, name: str, kind: Optional[str]):
        def hook(mod, args):
            self.scope.append(name)
            if kind is not None:
                if self.depth == 0:
                    mod._trace_inputs = _tensors(args)
                self.depth += 1
        return hook

    def _post(self, name: str, kind: Optional[str]):
        def hook(mod, args, out):
            self.scope.pop()
            if kind is None:
                return None
            self.depth -= 1
            if self.depth == 0:
                n = self.node(name, kind)
                self.consume(n, mod.__dict__.pop("_trace_inputs", []))
                for t in _tensors(out):
                    self.mark(t, n)
            return None
        return hook

    # functional operations
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth > 0:
            return out
        ins = _tensors(args) + _tensors(kwargs)
        srcs = [self.prov[id(t)] for t in ins if id(t) in self.prov]
        if not srcs:
            return out  # computes on constants only (positions, masks): no data flows through it
        fname = getattr(func, "__name__", "").strip("_")
        kind = _FUNC_KINDS.get(fname)
        if kind in _ELEMENTWISE_NEEDS_TWO and len(ins) < 2:
            kind = None
        outs = _tensors(out)
        if kind is None:  # layout: the output is the input's data
            for t in outs:
                if id(t) not in self.prov:
                    self.mark(t, srcs[0])
            return out
        scope = (self.scope[-1] if self.scope else "") or "(model)"
        n = self.node(f"{scope} {kind}", kind)
        self.consume(n, [t for t in ins if id(t) in self.prov])
        for t in outs:
            self.mark(t, n)
        return out


def _run_phase(model, profile: NNAProfile, phase: str, frames: Dict[int, float], fn, inputs, sink_kind: str):
    """Trace ``fn(*inputs)``: ``inputs`` are (tensor, producing placement) pairs; the result goes
    to a consumer of kind ``sink_kind``. Returns (ops, conversions)."""
    tr = _Tracer(profile, model, phase, frames)
    try:
        for i, (t, place) in enumerate(inputs):
            tr.mark(t, tr.node(f"<input {i}>", "input", place))
        with tr:
            out = fn(*[t for t, _ in inputs])
        sink = tr.node("<search>" if sink_kind == "softmax" else "<joiner add>", sink_kind)
        tr.consume(sink, _tensors(out))
    finally:
        tr.close()
    ops = [n for n in tr.nodes if not n.name.startswith("<")]
    convs: Dict[Tuple[int, str], Conversion] = {}
    for src, dst, fr in tr.edges:
        a, b = tr.nodes[src], tr.nodes[dst]
        if a.placement == b.placement:
            continue
        key = (src, b.placement)
        if key not in convs:  # once per tensor and direction
            direction = "float->int" if b.placement == "nna" else "int->float"
            convs[key] = Conversion(a.name, b.name, direction, phase, fr)
    return ops, list(convs.values())


@torch.no_grad()
def fallback_report(model, profile: NNAProfile, enc_frames: int = 101) -> Dict[str, Any]:
    """Trace ``model`` (a :class:`~sltk.asr.model.Transducer`, emulated or not) under
    ``profile``: its operators, the fallbacks, and the conversions (see the module doc)."""
    from sltk.nna import emulate as E

    was_training = model.training
    model.eval()
    modes = {n: m.nna_mode for n, m in E.emulated_modules(model)}
    E.set_mode(model, "float")
    try:
        t_in = 4 * enc_frames + 3           # subsampled to exactly enc_frames
        t_mid = (t_in - 1) // 2
        frames = {t_in: t_in / enc_frames, t_mid: t_mid / enc_frames, enc_frames: 1.0, -1: 1.0 / enc_frames}
        dev = model.feat_mean.device
        g = torch.Generator().manual_seed(0)
        feats = torch.randn(1, t_in, model.cfg.feat_dim, generator=g).to(dev)
        lens = torch.tensor([t_in], device=dev)
        add = "nna" if profile.on_nna("add") else "cpu"

        def encoder(x):
            enc, _ = model.encode(x, lens)
            return model.joiner.encoder_proj(enc)

        state = model.decoder.init_state(1, dev)

        def decoder():
            out, _ = model.decoder.step(torch.tensor([1 % model.cfg.vocab_size], device=dev), state)
            return model.joiner.decoder_proj(out)

        ops_e, conv_e = _run_phase(model, profile, "encoder", frames, encoder, [(feats, "cpu")], "add")
        ops_d, conv_d = _run_phase(model, profile, "decoder", {-1: 1.0}, decoder, [], "add")
        j = model.cfg.joiner_dim
        enc_t, dec_t = torch.randn(1, j, generator=g).to(dev), torch.randn(1, j, generator=g).to(dev)
        ops_j, conv_j = _run_phase(model, profile, "joiner", {-1: 1.0},
                                   lambda a, b: model.joiner(a, b, project_input=False),
                                   [(enc_t, add), (dec_t, add)], "softmax")
    finally:
        for n, m in E.emulated_modules(model):
            m.nna_mode = modes[n]
        model.train(was_training)
    ops = ops_e + ops_j + ops_d
    seen, uniq = set(), []
    for o in ops:
        if (o.name, o.phase) not in seen:
            seen.add((o.name, o.phase))
            uniq.append(o)
    convs = conv_e + conv_j + conv_d

    def total(phase: str, direction: Optional[str] = None) -> float:
        return round(sum(c.per_unit for c in convs if c.phase == phase and
                         (direction is None or c.direction == direction)), 3)

    per_frame = round(total("encoder") + total("joiner"), 3)
    return {
        "profile": profile.name,
        "profile_description": profile.describe(),
        "operators": [asdict(o) for o in uniq],
        "fallbacks": [asdict(o) for o in uniq if o.placement == "cpu"],
        "fallback_kinds": sorted({o.kind for o in uniq if o.placement == "cpu"}),
        "conversions": {
            "per_encoder_frame": per_frame,
            "encoder_per_frame": total("encoder"),
            "joiner_per_frame": total("joiner"),
            "decoder_per_token": total("decoder"),
            "float_to_int_per_frame": round(total("encoder", "float->int") + total("joiner", "float->int"), 3),
            "int_to_float_per_frame": round(total("encoder", "int->float") + total("joiner", "int->float"), 3),
            "points": [asdict(c) for c in convs],
        },
    }


def format_report(rep: Dict[str, Any], title: str = "") -> str:
    """The report as a text table."""
    lines = []
    if title:
        lines.append(title)
    lines.append(f"NNA profile {rep['profile_description']}")
    ops = rep["operators"]
    w = max([len(o["name"]) for o in ops] + [8])
    lines.append(f"{'phase':<8}  {'operator':<{w}}  {'kind':<10}  runs on")
    for o in ops:
        where = "NNA" if o["placement"] == "nna" else "CPU (float fallback)"
        lines.append(f"{o['phase']:<8}  {o['name']:<{w}}  {o['kind']:<10}  {where}")
    fb = rep["fallbacks"]
    lines.append("")
    if fb:
        lines.append(f"Fallbacks to float on the CPU: {len(fb)} operators "
                     f"({', '.join(rep['fallback_kinds'])}): " + ", ".join(o["name"] for o in fb))
    else:
        lines.append("Fallbacks to float on the CPU: none; every operator runs on the NNA")
    c = rep["conversions"]
    lines.append(f"float<->int conversions per encoder frame: {c['per_encoder_frame']:g} "
                 f"(encoder {c['encoder_per_frame']:g}, joiner {c['joiner_per_frame']:g}; "
                 f"float->int {c['float_to_int_per_frame']:g}, int->float {c['int_to_float_per_frame']:g}); "
                 f"per emitted token (prediction network): {c['decoder_per_token']:g}")
    for p in c["points"]:
        lines.append(f"  {p['phase']:<8} {p['direction']:<10} {p['producer']} -> {p['consumer']}  "
                     f"({p['per_unit']:g} per {'token' if p['phase'] == 'decoder' else 'frame'})")
    return "\n".join(lines)


def to_json(rep: Dict[str, Any]) -> str:
    return json.dumps(rep, indent=2)

