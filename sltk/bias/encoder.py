"""Encoder-side contextual biasing for CTC: a catalog encoder and a contextual adapter.

After Dingliwal et al., "Personalization of CTC speech recognition models" (contextual
adapters): each catalog phrase (its BPE ids) is embedded by a :class:`CatalogEncoder`
(token embedding -> 1-layer BiLSTM -> the forward LSTM's last state and the backward LSTM's
first state, concatenated and projected to ``catalog_dim``), a learned ``<no-bias>`` vector
being entry 0. A :class:`ContextAdapter` lets every encoder frame h_t attend over the
entries of its utterance's catalog::

    alpha_t = softmax_i(W_q h_t . W_k e_i / sqrt(d))          (i = 0 is <no-bias>)
    h'_t    = h_t + W_o sum_i alpha_ti W_v e_i                 (W_o starts at zero)

and ``bias_gate`` = 1 - alpha_t[<no-bias>] says, per frame, how much the adapter attends to
real catalog entries (``bias-decode --adaptive on`` gates its boost with it).

Layout on a :class:`~sltk.asr.model.Transducer` (base parameter names unchanged)::

    model.context_adapter   the ContextAdapter (its parameters: ``context_adapter.*``)
    model.ctc_hooks         holds it: it changes the CTC head's input only; the transducer
                            path (joiner, simple/pruned losses, greedy/beam search) is untouched

Checkpoints of such a model record the transform ``context_adapter`` (config and the hash of
the base weights, :func:`context_base_hash`), so :func:`sltk.asr.checkpoint.load_model`
rebuilds it. Decoding::

    from sltk.asr.checkpoint import load_model
    from sltk.bias.encoder import set_catalog
    model = load_model("exp/ctx/ctx.pt").eval()
    set_catalog(model, [[sp.encode("PROOGIS"), sp.encode("WUSTO")]])   # one catalog per utterance
    enc, lens = model.encode(feats, feat_lens)
    logprobs = model.ctc_logprobs(enc)                                  # biased
    gate = model.context_adapter.bias_gate                              # (N, T) in [0, 1]
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from sltk.asr.checkpoint import config_diff, read_checkpoint, register_transform
from sltk.utils.config import dataclass_from_dict
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike

CONTEXT = "context_adapter"  # attribute, state_dict prefix and checkpoint transform kind

Catalog = Sequence[Sequence[int]]  # one utterance's phrases, each a list of token ids


@dataclass
class ContextAdapterConfig:
    """Sizes: ``embed_dim`` (the catalog encoder's own token embedding), ``lstm_dim`` (per
    direction), ``catalog_dim`` (an entry's vector, D_c), ``attention_dim`` (queries, keys,
    values)."""

    embed_dim: int = 64
    lstm_dim: int = 64
    catalog_dim: int = 128
    attention_dim: int = 128

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"context adapter config: {f.name} must be a positive integer, got {v!r}")

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]], where: str = "context adapter config") -> "ContextAdapterConfig":
        return dataclass_from_dict(cls, d, where)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class CatalogEncoder(nn.Module):
    """Phrases (padded token ids) -> catalog entries: ``<no-bias>`` then one vector per phrase."""

    def __init__(self, vocab_size: int, embed_dim: int, lstm_dim: int, catalog_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, lstm_dim, num_layers=1, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * lstm_dim, catalog_dim)
        self.no_bias = nn.Parameter(torch.randn(catalog_dim) * 0.1)

    def forward(self, ids: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """``ids`` (P, L) token ids, padded; ``lens`` (P,) lengths >= 1 -> (P + 1, catalog_dim),
        row 0 the ``<no-bias>`` vector, row p + 1 phrase p."""
        if ids.size(0) == 0:
            if self.training and torch.is_grad_enabled():
                # every parameter takes part in the graph (zero gradients): data-parallel training
                # without find_unused_parameters needs that even for a batch without catalogs
                return self.no_bias[None] + 0.0 * sum(p.sum() for n, p in self.named_parameters() if n != "no_bias")
            return self.no_bias[None]
        x = self.embed(ids)
        packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (2, P, H): forward's last state, backward's state at the first token
        phrases = self.proj(torch.cat([h[0], h[1]], dim=-1))
        return torch.cat([self.no_bias[None].to(phrases.dtype), phrases], dim=0)


class ContextAdapter(nn.Module):
    """Per-frame cross-attention from the encoder output to the utterance's catalog entries,
    added back residually (a fresh adapter is an identity: ``out`` starts at zero).

    Call :meth:`set_catalog` before each forward. After a forward, ``last_attention``
    (N, T, M) holds the attention over each utterance's entries (column 0 ``<no-bias>``,
    column j >= 1 the utterance's phrase j - 1 in the order given; padding columns are exactly
    0), ``last_entry_mask`` (N, M) which columns are real, and :attr:`bias_gate` (N, T)."""

    def __init__(self, encoder_dim: int, vocab_size: int, config: Optional[ContextAdapterConfig] = None):
        super().__init__()
        self.config = config = config or ContextAdapterConfig()
        self.vocab_size = vocab_size
        self.catalog_encoder = CatalogEncoder(vocab_size, config.embed_dim, config.lstm_dim, config.catalog_dim)
        a = config.attention_dim
        self.query = nn.Linear(encoder_dim, a)
        self.key = nn.Linear(config.catalog_dim, a)
        self.value = nn.Linear(config.catalog_dim, a)
        self.out = nn.Linear(a, encoder_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.base_hash: Optional[str] = None
        self._phrases: List[Tuple[int, ...]] = []   # distinct phrases of the catalogs set
        self._index: List[List[int]] = [[0]]       # per utterance: entry indices (0 = <no-bias>)
        self._cache: Optional[Tuple[Any, torch.Tensor]] = None
        self.last_attention: Optional[torch.Tensor] = None
        self.last_entry_mask: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ catalogs
    def set_catalog(self, catalogs: Optional[Sequence[Catalog]]) -> None:
        """The catalogs of the next forwards: one per utterance of the batch (a list of phrases,
        each a non-empty list of token ids), or a list of one catalog for every utterance; None
        or [] means no catalog (only ``<no-bias>``) for every utterance."""
        phrases: Dict[Tuple[int, ...], int] = {}
        index: List[List[int]] = []
        for u, cat in enumerate(catalogs or [[]]):
            row = [0]
            for p, phrase in enumerate(cat):
                ids = tuple(int(i) for i in phrase)
                if not ids:
                    raise UserError(f"catalog of utterance {u}: phrase {p} has no tokens")
                bad = [i for i in ids if not 0 <= i < self.vocab_size]
                if bad:
                    raise UserError(f"catalog of utterance {u}: phrase {p} has token id {bad[0]} outside the "
                                    f"model's vocabulary (0..{self.vocab_size - 1})")
                row.append(phrases.setdefault(ids, len(phrases) + 1))
            index.append(row)
        self._phrases = list(phrases)
        self._index = index
        self._cache = None

    @property
    def num_catalogs(self) -> int:
        return len(self._index)

    def catalog_sizes(self) -> List[int]:
        """Phrases per catalog set (``<no-bias>`` not counted)."""
        return [len(r) - 1 for r in self._index]

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def entries(self, device: torch.device) -> torch.Tensor:
        """(P + 1, catalog_dim): ``<no-bias>`` and the distinct phrases of the catalogs set.
        Cached while gradients are off and the adapter is in eval mode (decoding many chunks or
        utterances with one catalog)."""
        cacheable = not torch.is_grad_enabled() and not self.training
        key = (device, tuple((p.data_ptr(), p._version) for p in self.catalog_encoder.parameters()))
        if cacheable and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if self._phrases:
            lens = torch.tensor([len(p) for p in self._phrases], dtype=torch.long)
            ids = torch.zeros(len(self._phrases), int(lens.max()), dtype=torch.long)
            for i, p in enumerate(self._phrases):
                ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        else:
            lens = torch.zeros(0, dtype=torch.long)
            ids = torch.zeros(0, 1, dtype=torch.long)
        e = self.catalog_encoder(ids.to(device), lens)
        self._cache = (key, e) if cacheable else None
        return e

    def _gather_index(self, n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        rows = self._index
        if len(rows) == 1 and n != 1:
            rows = rows * n
        if len(rows) != n:
            raise ValueError(f"context adapter: {len(rows)} catalogs set for a batch of {n} utterances "
                             "(call set_catalog with one catalog per utterance)")
        m = max(len(r) for r in rows)
        idx = torch.zeros(n, m, dtype=torch.long)
        mask = torch.zeros(n, m, dtype=torch.bool)
        for u, r in enumerate(rows):
            idx[u, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[u, : len(r)] = True
        return idx.to(device), mask.to(device)

    # ------------------------------------------------------------------ forward
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(N, T, encoder_dim) -> the same shape, biased towards the catalogs set."""
        n = h.size(0)
        e = self.entries(h.device)
        idx, mask = self._gather_index(n, h.device)
        q = self.query(h)                                   # (N, T, A)
        k = self.key(e)[idx]                                # (N, M, A)
        v = self.value(e)[idx]                              # (N, M, A)
        scores = torch.einsum("nta,nma->ntm", q, k.to(q.dtype)) / math.sqrt(q.size(-1))
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        alpha = scores.float().softmax(dim=-1)              # padding columns: exactly 0
        ctx = torch.einsum("ntm,nma->nta", alpha.to(v.dtype), v)
        self.last_attention = alpha.detach()
        self.last_entry_mask = mask
        return h + self.out(ctx).to(h.dtype)

    @property
    def bias_gate(self) -> torch.Tensor:
        """(N, T) 1 - attention on ``<no-bias>`` of the last forward: the attention on real
        catalog entries, in [0, 1]."""
        if self.last_attention is None:
            raise RuntimeError("context adapter: no forward yet (bias_gate comes from the last forward)")
        return (1.0 - self.last_attention[..., 0]).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------- on a model
def has_context_adapter(model: nn.Module) -> bool:
    return isinstance(getattr(model, CONTEXT, None), ContextAdapter)


def get_adapter(model: nn.Module) -> ContextAdapter:
    if not has_context_adapter(model):
        raise UserError("the model has no context adapter (load a checkpoint trained by train-context-adapter)")
    return getattr(model, CONTEXT)


def is_context_key(name: str) -> bool:
    """Whether a state_dict / parameter name belongs to the context adapter."""
    return name.startswith(CONTEXT + ".")


def context_base_hash(model_or_state) -> str:
    """:func:`sltk.adapters.base_hash` of the base weights: every entry but the context adapter's."""
    from sltk.adapters.attach import base_hash

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return base_hash({k: v for k, v in state.items() if not is_context_key(k)})


def attach(model: nn.Module, config: Optional[ContextAdapterConfig] = None,
           base_hash: Optional[str] = None) -> ContextAdapter:
    """Attach a fresh context adapter to a transducer that has none: ``model.context_adapter``,
    applied by ``model.ctc_hooks`` (the model computes exactly what it did before)."""
    if has_context_adapter(model):
        raise UserError("the model has a context adapter already")
    if not hasattr(model, "ctc_hooks"):
        raise UserError(f"{type(model).__name__} has no ctc_hooks: a context adapter needs a Transducer")
    try:
        dev = next(model.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    adapter = ContextAdapter(model.cfg.encoder_dim, model.cfg.vocab_size, config).to(dev).train(model.training)
    adapter.base_hash = base_hash
    setattr(model, CONTEXT, adapter)
    model.ctc_hooks.append(adapter)
    return adapter


def detach(model: nn.Module) -> None:
    """Remove the context adapter: the model is its base again."""
    if not has_context_adapter(model):
        return
    adapter = getattr(model, CONTEXT)
    model.ctc_hooks[:] = [h for h in model.ctc_hooks if h is not adapter]
    delattr(model, CONTEXT)


@contextlib.contextmanager
def bypassed(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model.ctc_logprobs`` skips the context adapter (the base's CTC)."""
    adapter = get_adapter(model)
    hooks = list(model.ctc_hooks)
    model.ctc_hooks[:] = [h for h in hooks if h is not adapter]
    try:
        yield
    finally:
        model.ctc_hooks[:] = hooks


def set_catalog(model: nn.Module, catalogs: Optional[Sequence[Catalog]]) -> None:
    """:meth:`ContextAdapter.set_catalog` of the model's context adapter."""
    get_adapter(model).set_catalog(catalogs)


def biased_ctc(model: nn.Module, feats: torch.Tensor, feat_lens: torch.Tensor,
               catalogs: Optional[Sequence[Catalog]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode, bias with ``catalogs`` (one per utterance, or one for all) and return the CTC
    log-probs (N, T, V), the encoder lengths (N,) and the per-frame bias gate (N, T)."""
    adapter = get_adapter(model)
    adapter.set_catalog(catalogs)
    enc, lens = model.encode(feats, feat_lens)
    lp = model.ctc_logprobs(enc)
    return lp, lens, adapter.bias_gate


def transform_entry(model: nn.Module) -> Dict[str, Any]:
    """The checkpoint transform that rebuilds the model's context adapter."""
    a = get_adapter(model)
    return {"kind": CONTEXT, "config": a.config.to_dict(), "base_hash": a.base_hash}


def check_base(model: nn.Module, want: Optional[str], where: str = "the context adapter",
               base_config: Optional[Dict[str, Any]] = None) -> str:
    """Refuse to put a context adapter trained on base ``want`` onto ``model`` (its base
    weights hash to something else); returns the model's base hash."""
    got = context_base_hash(model)
    if want is not None and got != want:
        diff = config_diff(base_config, model.cfg.to_dict()) if base_config else []
        extra = f"; the model configs differ too ({'; '.join(diff[:3])})" if diff else ""
        raise UserError(f"{where} was trained on base model {want[:12]}, this model is {got[:12]}: a context "
                        f"adapter refuses to load onto another base model{extra}")
    return got


def load_context_adapter(model: nn.Module, path: PathLike) -> ContextAdapter:
    """Attach the context adapter of a checkpoint written by train-context-adapter to a base
    model (checked against the base hash recorded in it) and load its weights."""
    obj = read_checkpoint(path)
    entries = [t for t in obj["transforms"] if t.get("kind") == CONTEXT]
    if not entries:
        raise UserError(f"{path} holds no context adapter (transforms: "
                        f"{', '.join(t.get('kind', '?') for t in obj['transforms']) or 'none'})")
    meta = entries[0]
    check_base(model, meta.get("base_hash"), f"the context adapter in {path}", obj.get("model_config"))
    config = ContextAdapterConfig.from_dict(meta.get("config"), where=f"the context adapter config in {path}")
    adapter = attach(model, config, base_hash=meta.get("base_hash"))
    state = {k[len(CONTEXT) + 1:]: v for k, v in obj["model"].items() if is_context_key(k)}
    own = adapter.state_dict()
    bad = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if bad:
        detach(model)
        raise UserError(f"the context adapter weights in {path} do not fit the adapter built from its config "
                        f"(e.g. {bad[0]})")
    adapter.load_state_dict(state)
    return adapter


def apply_transform(model: nn.Module, meta: Dict[str, Any]) -> None:
    """Checkpoint transform ``context_adapter``: a fresh adapter (the checkpoint's weights load next)."""
    attach(model, ContextAdapterConfig.from_dict(meta.get("config"), where="the checkpoint's context adapter config"),
           base_hash=meta.get("base_hash"))


register_transform(CONTEXT, apply_transform)
