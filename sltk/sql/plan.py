"""The query-plan model: from a question and its database schema, which clauses the SQL
has (multi-label: where, group, having, order, limit, join count 0/1/2+, nesting, set
operation none/union/intersect/except; :data:`sltk.sql.sqlparse.PLAN_FIELDS`).

Input: the question's words, where a word that names a table becomes ``<table>`` and one
that names a column becomes ``<column>`` (through the schema: exact, singular/plural or a
part of a column name), so the model sees ``how many <table> per <column>`` and carries over
to unseen databases; hashed unigrams and bigrams, mean-pooled embeddings, an MLP, one
softmax head per field. Trained with Adam; checkpoints ``step-N.pt`` at chosen steps (the
recipe reranks with each, to show how the gain grows with the plan model's accuracy).
"""

from __future__ import annotations

import logging
import random
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from sltk.sql import db as dbmod
from sltk.sql.sqlparse import PLAN_FIELDS, PLAN_SIZES, plan as sql_plan
from sltk.sql.tokens import question_tokens
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_path
from sltk.utils.progress import progress

log = logging.getLogger("sltk")
BUCKETS = 1 << 13


def _singular(w: str) -> str:
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("es") and w[:-2].endswith(("s", "x", "ch", "sh")):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


def abstract_question(question: str, schema: Dict[str, List[str]]) -> List[str]:
    tables = {_singular(t.lower()) for t in schema}
    col_words = set()
    for cols in schema.values():
        for c in cols:
            col_words.add(c.lower())
            col_words.update(p for p in c.lower().split("_") if len(p) > 2 and p != "id")
    out = []
    for w in question_tokens(question.lower()):
        s = _singular(w)
        if s in tables:
            out.append("<table>")
        elif w in col_words or s in col_words:
            out.append("<column>")
        elif w.isdigit():
            out.append("<num>" if len(w) > 1 else w)
        else:
            out.append(w)
    return out


def features(question: str, schema: Dict[str, List[str]]) -> List[int]:
    toks = ["<s>"] + abstract_question(question, schema) + ["</s>"]
    grams = toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
    return [zlib.crc32(g.encode()) % BUCKETS for g in grams]


class PlanModel(nn.Module):
    def __init__(self, dim: int = 64, hidden: int = 128):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.emb = nn.EmbeddingBag(BUCKETS, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.1))
        self.heads = nn.ModuleDict({f: nn.Linear(hidden, PLAN_SIZES[f]) for f in PLAN_FIELDS})

    @property
    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden}

    def forward(self, feats: List[List[int]]) -> Dict[str, torch.Tensor]:
        flat = torch.tensor([i for f in feats for i in f], dtype=torch.long)
        offsets = torch.tensor([0] + [len(f) for f in feats[:-1]], dtype=torch.long).cumsum(0)
        x = self.mlp(self.emb(flat, offsets))
        return {f: torch.log_softmax(h(x), -1) for f, h in self.heads.items()}


def save(path, model: PlanModel, extra: Optional[dict] = None) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": model.config, "state": model.state_dict(), "kind": "plan", **(extra or {})}, tmp)


def load(path) -> PlanModel:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"plan model {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        if ck.get("kind") != "plan":
            raise ValueError("not a plan model")
        m = PlanModel(**ck["config"])
        m.load_state_dict(ck["state"])
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{p} is not a plan model checkpoint: {e}") from None
    return m.eval()


def _labelled(examples: List[dict], db_dir) -> Tuple[List[List[int]], Dict[str, torch.Tensor]]:
    feats, labels = [], {f: [] for f in PLAN_FIELDS}
    for e in examples:
        if "query" not in e:
            raise UserError(f"example {e.get('id', '?')} has no 'query' to learn the plan from")
        sch = dbmod.schema(str(dbmod.db_path(db_dir, e["db"])))
        feats.append(features(e["question"], sch))
        p = sql_plan(e["query"])
        for f in PLAN_FIELDS:
            labels[f].append(p[f])
    return feats, {f: torch.tensor(v) for f, v in labels.items()}


def train(examples: List[dict], db_dir, out_dir, steps: int = 600, save_steps: Sequence[int] = (),
          batch_size: int = 32, lr: float = 3e-3, seed: int = 0) -> Path:
    """Train for ``steps`` steps; ``step-N.pt`` at each of ``save_steps`` and ``final.pt``.
    Resumes from the latest ``step-N.pt`` (its optimizer state is saved with it)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    feats, labels = _labelled(examples, db_dir)
    model = PlanModel()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    done = sorted(out.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if done:
        ck = torch.load(done[-1], map_location="cpu", weights_only=False)
        model.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        start = ck["step"]
        log.info("resuming from %s (step %d)", done[-1], start)
    save_steps = sorted(set(save_steps) | {steps})
    n = len(feats)
    for step in progress(range(start, steps), total=steps - start, desc="plan model", unit="step"):
        rng = random.Random(f"{seed}-{step}")
        idx = [rng.randrange(n) for _ in range(batch_size)]
        model.train()
        out_lp = model([feats[i] for i in idx])
        loss = -sum(out_lp[f][torch.arange(len(idx)), labels[f][idx]].mean() for f in PLAN_FIELDS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 in save_steps:
            save(out / f"step-{step + 1}.pt", model.eval(), {"optimizer": opt.state_dict(), "step": step + 1,
                                                            "loss": float(loss)})
            log.info("plan model step %d: loss %.4f", step + 1, float(loss))
    model.eval()
    save(out / "final.pt", model, {"step": steps})
    return out / "final.pt"


@torch.no_grad()
def predict(model: PlanModel, questions: List[Tuple[str, Dict[str, List[str]]]]) -> List[Dict[str, List[float]]]:
    """Per question: {field: log-probabilities of each value}."""
    if not questions:
        return []
    lp = model([features(q, s) for q, s in questions])
    return [{f: lp[f][i].tolist() for f in PLAN_FIELDS} for i in range(len(questions))]
