"""Training a context adapter (:mod:`sltk.bias.encoder`) on a frozen base transducer.

Training goes through :func:`sltk.asr.train.train` (data pipeline, checkpoints, resume) with
:class:`ContextAdapterHook`: it attaches the adapter and freezes everything else, builds each
batch's catalogs from its transcripts (``on_batch``: the rare words an utterance contains plus
random distractors, :class:`CatalogBuilder`), and replaces the model's training forward by a
CTC-only one: the adapter acts on the CTC path alone, so the transducer losses do not depend
on it and are not computed (reported as 0); the frozen encoder runs without gradients and, like
the rest of the base, in eval mode (no dropout). :func:`train_context_adapter` writes a full
model checkpoint (transform ``context_adapter``) that :func:`sltk.asr.checkpoint.load_model`
loads, after checking the base weights are bit-identical to the base checkpoint's.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

from sltk.adapters.attach import freeze_all_but
from sltk.adapters.train import _run, check_resume, finished, read_base
from sltk.asr import loss as L
from sltk.asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import pad_targets
from sltk.asr.train import TrainConfig, TrainHook, Tokenizer, prepare
from sltk.bias.encoder import (CONTEXT, ContextAdapterConfig, attach, bypassed, check_base, get_adapter,
                               transform_entry)
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open

log = logging.getLogger("sltk")


# ---------------------------------------------------------------------------------- catalogs
def read_rare_words(path: PathLike) -> List[str]:
    """The phrases of a rare-words file (one word, or phrase, per line), normalised like the
    transcripts (upper case, spoken form), without duplicates, in file order."""
    from sltk.data.text_norm import normalize_text

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--rare-words file {p} does not exist")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--rare-words file {p} is not UTF-8 text") from None
    out = list(dict.fromkeys(w for w in (normalize_text(line) for line in lines) if w))
    if not out:
        raise UserError(f"--rare-words file {p} holds no words")
    return out


class CatalogBuilder:
    """Per-utterance training catalogs: the ``phrases`` found (whole words) in the utterance's
    transcript plus ``distractors`` other phrases drawn at random, shuffled. The draw is a
    function of ``seed`` and a key per utterance (e.g. step and cut id), so a rerun or a resumed
    run builds the same catalogs. ``encode`` maps texts to token-id lists (the BPE model)."""

    def __init__(self, phrases: Sequence[str], encode: Callable[[List[str]], List[List[int]]],
                 distractors: int = 20, seed: int = 42):
        if distractors < 0:
            raise UserError(f"--distractors must be >= 0, got {distractors}")
        self.phrases = list(dict.fromkeys(" ".join(p.upper().split()) for p in phrases if p.split()))
        self.ids = [list(x) for x in encode(self.phrases)]
        self.distractors = distractors
        self.seed = seed
        self._by_first: Dict[str, List[Tuple[int, Tuple[str, ...]]]] = {}
        for i, p in enumerate(self.phrases):
            words = tuple(p.split())
            self._by_first.setdefault(words[0], []).append((i, words))

    def find(self, text: str) -> List[int]:
        """Indices of the phrases that occur, as whole words, in ``text`` (upper-cased)."""
        words = text.upper().split()
        found: Dict[int, None] = {}
        for j, w in enumerate(words):
            for i, ph in self._by_first.get(w, ()):
                if tuple(words[j: j + len(ph)]) == ph:
                    found[i] = None
        return list(found)

    def select(self, text: str, key: str) -> List[int]:
        """Phrase indices of the catalog for one utterance (found ones and distractors)."""
        rng = random.Random(f"{self.seed}|{key}")
        present = self.find(text)
        taken = set(present)
        n = len(self.phrases)
        draw = rng.sample(range(n), min(n, self.distractors + len(taken)))
        chosen = present + [i for i in draw if i not in taken][: self.distractors]
        rng.shuffle(chosen)
        return chosen

    def __call__(self, texts: Sequence[str], keys: Sequence[str]) -> List[List[List[int]]]:
        """Token-id catalogs for a batch (one per text), as :meth:`ContextAdapter.set_catalog` takes."""
        return [[self.ids[i] for i in self.select(t, k)] for t, k in zip(texts, keys)]


# ---------------------------------------------------------------------------------- training hook
class ContextAdapterHook(TrainHook):
    """Train a context adapter (``config``) on a frozen base (hash ``base_hash``) with the
    CTC loss of the biased encoder output; catalogs from ``builder``. ``lang_dir``: to read
    the transcripts back from token ids when the model is called without :meth:`on_batch`
    (the dev loss of :func:`sltk.asr.train.evaluate`)."""

    name = CONTEXT

    def __init__(self, config: ContextAdapterConfig, base_hash: str, builder: CatalogBuilder, lang_dir: str):
        self.config = config
        self.base_hash = base_hash
        self.builder = builder
        self.lang_dir = lang_dir
        self.step = 0
        self.pending = False
        self._tok: Optional[Tokenizer] = None

    def __getstate__(self):  # picklable for spawned workers: the tokenizer is rebuilt there
        return {**self.__dict__, "_tok": None}

    def on_model(self, model) -> None:
        attach(model, self.config, base_hash=self.base_hash)
        n = freeze_all_but(model, CONTEXT)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        model.forward = self._ctc_forward(model)  # instance attribute: nn.Module.__call__ uses it
        log.info("context adapter %s: %d trainable parameters; the base's %d are frozen; CTC loss only (the "
                 "transducer losses do not depend on the adapter and are not computed)", self.config.to_dict(), n,
                 frozen)

    def on_step(self, step: int, model) -> None:
        self.step = step
        model.eval()  # the frozen base: no dropout
        get_adapter(model).train()

    def on_batch(self, model, batch: Dict) -> None:
        cats = self.builder(batch["texts"], [f"train|{self.step}|{i}" for i in batch["ids"]])
        get_adapter(model).set_catalog(cats)
        self.pending = True

    def checkpoint_meta(self) -> Dict:
        return {"config": self.config.to_dict(), "base_hash": self.base_hash}

    def _ctc_forward(self, model):
        hook = self

        def forward(feats: torch.Tensor, feat_lens: torch.Tensor, ys: List[List[int]], backend: str = "k2",
                    **_: Any) -> Dict[str, torch.Tensor]:
            """CTC loss of the biased encoder output; the transducer losses as zeros."""
            adapter = get_adapter(model)
            if not hook.pending:  # not a training step (dev loss): catalogs from the transcripts
                if hook._tok is None:
                    hook._tok = Tokenizer(hook.lang_dir)
                texts = [hook._tok.decode(list(y)) for y in ys]
                adapter.set_catalog(hook.builder(texts, [f"eval|{t}" for t in texts]))
            hook.pending = False
            with torch.no_grad():
                enc, lens = model.encode(feats, feat_lens)
            y, y_lens = pad_targets(ys, pad=model.blank_id, device=feats.device)
            zero = torch.zeros((), device=feats.device)
            out = {k: zero for k in L.loss_names(backend)}
            out["ctc"] = L.ctc_loss(model.ctc_logprobs(enc), lens, y, y_lens, model.blank_id)
            return out

        return forward


# ---------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def catalog_ctc_loss(model, cuts, tok: Tokenizer, builder: CatalogBuilder, device: Optional[torch.device] = None,
                     max_duration: float = 200.0) -> Dict[str, float]:
    """CTC loss per (input) frame of ``cuts`` with each utterance's catalog (``ctc``; catalog
    keys ``eval|<cut id>``) and without the adapter (``ctc_base``), and the mean bias gate over
    the frames of utterances whose catalog holds words of their transcript (``gate_rare``) and
    of the others (``gate_none``; NaN when there are none)."""
    from lhotse.dataset import SimpleCutSampler

    from sltk.asr.data import AsrBatches

    adapter = get_adapter(model)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    tot = {"ctc": 0.0, "ctc_base": 0.0}
    gate = {True: [0.0, 0], False: [0.0, 0]}
    frames = 0
    try:
        for cutset in SimpleCutSampler(cuts, max_duration=max_duration):
            b = AsrBatches()[cutset]
            feats, lens = b["feats"].to(device), b["feat_lens"].to(device)
            ys = tok.encode(b["texts"])
            y, y_lens = pad_targets(ys, pad=model.blank_id, device=device)
            adapter.set_catalog(builder(b["texts"], [f"eval|{i}" for i in b["ids"]]))
            enc, enc_lens = model.encode(feats, lens)
            tot["ctc"] += float(L.ctc_loss(model.ctc_logprobs(enc), enc_lens, y, y_lens, model.blank_id))
            g = adapter.bias_gate
            with bypassed(model):
                tot["ctc_base"] += float(L.ctc_loss(model.ctc_logprobs(enc), enc_lens, y, y_lens, model.blank_id))
            frames += int(lens.sum())
            for u, text in enumerate(b["texts"]):
                t = int(enc_lens[u])
                acc = gate[bool(builder.find(text))]
                acc[0] += float(g[u, :t].sum())
                acc[1] += t
    finally:
        model.train(was_training)
    out = {k: v / max(1, frames) for k, v in tot.items()}
    out["gate_rare"] = gate[True][0] / gate[True][1] if gate[True][1] else float("nan")
    out["gate_none"] = gate[False][0] / gate[False][1] if gate[False][1] else float("nan")
    return out


# ---------------------------------------------------------------------------------- driver
def train_context_adapter(base: PathLike, out: PathLike, cfg: TrainConfig, rare_words: PathLike,
                          config: Optional[ContextAdapterConfig] = None, distractors: int = 20) -> Dict[str, Any]:
    """Train a context adapter on the frozen base checkpoint ``base`` with the training options
    ``cfg`` (its model and init_checkpoint come from ``base``), catalogs from the phrases of
    ``rare_words`` plus ``distractors`` random ones per utterance, and write the model
    checkpoint ``out`` (base and adapter; transform ``context_adapter``). Resumes from
    ``cfg.exp_dir``; a finished run with ``out`` present does nothing. Returns a summary
    (params, bytes, steps, dev losses, skipped)."""
    from sltk.asr.train import filter_cuts, load_cuts, resolve_device

    config = config or ContextAdapterConfig()
    out = Path(out)
    words = read_rare_words(rare_words)
    if distractors < 0:
        raise UserError(f"--distractors must be >= 0, got {distractors}")
    if not cfg.exp_dir:
        raise UserError("--exp-dir is required")
    obj, h = read_base(base)
    base_cfg = ModelConfig.from_dict(obj["model_config"], where=f"checkpoint {base}")
    if base_cfg.ctc_weight <= 0:
        raise UserError(f"--base {base} was trained without the CTC loss (ctc_weight {base_cfg.ctc_weight}): its CTC "
                        "head is untrained, and the context adapter biases the CTC path")
    cfg.model = dict(obj["model_config"])
    cfg.init_checkpoint = str(base)
    exp = Path(cfg.exp_dir)
    tok = Tokenizer(cfg.lang_dir)
    builder = CatalogBuilder(words, tok.encode, distractors, seed=cfg.seed)
    hook = ContextAdapterHook(config, h, builder, cfg.lang_dir)
    entry = {"kind": hook.name, **hook.checkpoint_meta()}
    check_resume(exp, entry)
    mcfg, backend = prepare(cfg)
    texts = [" ".join(s.text for s in c.supervisions if s.text) for c in load_cuts(cfg.cuts_train, "training")]
    with_rare = sum(bool(builder.find(t)) for t in texts)
    log.info("catalogs: %d phrases from %s; %d of %d training utterances contain some (the others get %d "
             "distractors only)", len(builder.phrases), rare_words, with_rare, len(texts), distractors)
    if not with_rare:
        log.warning("no training transcript contains a word of %s: the adapter can only learn <no-bias>", rare_words)
    with atomic_open(exp / "context_adapter.yaml") as f:
        yaml.safe_dump({"base": str(base), "base_hash": h, "config": config.to_dict(), "rare_words": str(rare_words),
                        "num_phrases": len(builder.phrases), "distractors": distractors, "out": str(out),
                        "train": {k: v for k, v in asdict(cfg).items() if k != "model"}}, f, sort_keys=False)
    done = finished(exp, cfg)
    if done and out.is_file():
        old = read_checkpoint(out)
        if old["transforms"] == [entry] and old.get("step") == done[0]:
            log.info("%s: training finished already (step %d) and %s exists: nothing to do", exp, done[0], out)
            return {"num_params": _params(old["model"]), "bytes": out.stat().st_size, "steps": done[0], "dev": {},
                    "skipped": True}
    if done:
        log.info("%s: training finished already (step %d); writing %s", exp, done[0], out)
    step, last = done or _run(cfg, mcfg, backend, [hook])
    model = load_model(last)
    check_base(model, h, f"the checkpoint {last} (another run in --exp-dir {exp}?)")
    dev: Dict[str, float] = {}
    if cfg.cuts_dev:
        device = resolve_device(cfg.device, 0)
        model.to(device)
        cuts = filter_cuts(load_cuts(cfg.cuts_dev, "dev"), tok, "dev")
        dev = catalog_ctc_loss(model, cuts, tok, builder, device, cfg.max_duration)
        model.cpu()
    save_checkpoint(out, model, transforms=[transform_entry(model)], step=step, checkpoint=str(last),
                    base_checkpoint=str(base), rare_words=str(rare_words), distractors=distractors, dev_loss=dev)
    return {"num_params": _params(model.state_dict()), "bytes": out.stat().st_size, "steps": step, "dev": dev,
            "skipped": False}


def _params(state: Dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for k, v in state.items() if k.startswith(CONTEXT + "."))
