"""A small text-to-SQL generator: a GRU encoder-decoder over ``question <sep> schema`` with
attention and a copy mechanism, trained here from scratch, and beam search for N-best lists.

Each decoding step chooses among the output vocabulary (SQL keywords, operators, aliases,
small numbers: the target tokens that are seldom in the source) and the source positions
(copying a table, a column or a question word): one softmax over both. A target token
that several actions produce (a copy from two positions, or a vocabulary word that is also
in the source) is trained with the sum of their probabilities. Token embeddings add a word
embedding (rare words are <unk>, and words are dropped to <unk> in training), a hashed
character-trigram embedding (``singers`` is close to ``singer``; unseen schemas still get a
useful code) and a segment embedding (question, table, column), so the model works on
databases it never saw.
"""

from __future__ import annotations

import json
import logging
import math
import random
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from sltk.sql import db as dbmod
from sltk.sql.tokens import QUOTE, detokenize, source, sql_tokens
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path
from sltk.utils.progress import progress

log = logging.getLogger("sltk")

PAD, UNK, EOS, BOS = "<pad>", "<unk>", "<eos>", "<bos>"
N_BUCKETS = 4096


def char_ngrams(tok: str, n_buckets: int = N_BUCKETS) -> List[int]:
    w = f"<{tok.lower()}>"
    grams = {w[i: i + 3] for i in range(max(1, len(w) - 2))} | {w}
    return [zlib.crc32(g.encode()) % n_buckets for g in sorted(grams)]


@dataclass
class GenConfig:
    emb_dim: int = 64
    hidden: int = 64
    dropout: float = 0.1
    word_dropout: float = 0.15
    max_len: int = 80


class Seq2SQL(nn.Module):
    def __init__(self, in_vocab: List[str], out_vocab: List[str], cfg: GenConfig):
        super().__init__()
        self.cfg = cfg
        self.in_vocab, self.out_vocab = in_vocab, out_vocab
        self.in_index = {w: i for i, w in enumerate(in_vocab)}
        self.out_index = {w: i for i, w in enumerate(out_vocab)}
        d, h = cfg.emb_dim, cfg.hidden
        self.word = nn.Embedding(len(in_vocab), d, padding_idx=0)
        self.chars = nn.EmbeddingBag(N_BUCKETS, d, mode="mean")
        self.seg = nn.Embedding(5, d)
        self.out_emb = nn.Embedding(len(out_vocab), d)
        self.enc = nn.GRU(d, h, batch_first=True, bidirectional=True)
        self.enc_proj = nn.Linear(2 * h, 2 * h)
        self.init_h = nn.Linear(2 * h, 2 * h)
        self.dec = nn.GRU(d, 2 * h, batch_first=True)
        self.att = nn.Linear(2 * h, 2 * h, bias=False)
        self.mix = nn.Linear(4 * h, 2 * h)
        self.vocab_out = nn.Linear(2 * h, len(out_vocab))
        self.copy_q = nn.Linear(2 * h, 2 * h, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def config(self) -> dict:
        return {"gen": asdict(self.cfg), "in_vocab": self.in_vocab, "out_vocab": self.out_vocab}

    # ---- embeddings
    def tok_embed(self, toks: Sequence[str], word_dropout: float = 0.0) -> torch.Tensor:
        ids = []
        for t in toks:
            i = self.in_index.get(t.lower(), 1)
            if word_dropout and random.random() < word_dropout:
                i = 1
            ids.append(i)
        grams = [char_ngrams(t) for t in toks]
        flat = torch.tensor([g for gs in grams for g in gs], dtype=torch.long)
        offsets = torch.tensor([0] + [len(g) for g in grams[:-1]], dtype=torch.long).cumsum(0)
        return self.word(torch.tensor(ids, dtype=torch.long)) + self.chars(flat, offsets)

    def encode(self, srcs: List[List[str]], segs: List[List[int]], word_dropout: float = 0.0):
        B, S = len(srcs), max(len(s) for s in srcs)
        d = self.cfg.emb_dim
        flat = [t for s in srcs for t in s]
        emb_flat = self.tok_embed(flat, word_dropout)
        emb = torch.zeros(B, S, d)
        mask = torch.zeros(B, S, dtype=torch.bool)
        seg = torch.zeros(B, S, dtype=torch.long)
        # the embedding of each source token as a decoder input (no segment), and its vocabulary id
        src_out_ids = torch.full((B, S), self.out_index[UNK], dtype=torch.long)
        k = 0
        for b, s in enumerate(srcs):
            n = len(s)
            emb[b, :n] = emb_flat[k: k + n]
            k += n
            mask[b, :n] = True
            seg[b, :n] = torch.tensor(segs[b])
            for j, t in enumerate(s):
                src_out_ids[b, j] = self.out_index.get(t, self.out_index[UNK])
        dec_src_emb = emb + self.out_emb(src_out_ids)
        x = self.drop(emb + self.seg(seg))
        lengths = mask.sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.enc(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=S)
        enc = torch.tanh(self.enc_proj(out))
        mean = (enc * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(-1)
        h0 = torch.tanh(self.init_h(mean))
        return enc, mask, h0, dec_src_emb

    def vocab_embed(self) -> torch.Tensor:
        return self.out_emb.weight + self.tok_embed(self.out_vocab)

    def decode(self, prev_emb, h, enc, mask):
        """Decoder steps for the inputs ``prev_emb`` (B, T, d) from state ``h`` (B, 2h):
        log-probabilities (B, T, V + S) over the vocabulary and the source positions, and
        the last state. (No input feeding: the GRU runs over all steps at once.)"""
        out, hn = self.dec(prev_emb, h.unsqueeze(0))
        scores = torch.bmm(self.att(out), enc.transpose(1, 2)).masked_fill(~mask.unsqueeze(1), -1e9)
        ctx = torch.bmm(torch.softmax(scores, -1), enc)
        o = self.drop(torch.tanh(self.mix(torch.cat([out, ctx], -1))))
        v = self.vocab_out(o)
        c = torch.bmm(self.copy_q(o), enc.transpose(1, 2)).masked_fill(~mask.unsqueeze(1), -1e9)
        return torch.log_softmax(torch.cat([v, c], -1), -1), hn[0]


# ---- data

def _example_schema(e: dict, db_dir) -> Dict[str, List[str]]:
    return dbmod.schema(str(dbmod.db_path(db_dir, e["db"])))


def build_vocabs(examples: List[dict], db_dir, min_count: int = 2) -> Tuple[List[str], List[str]]:
    inc, outc = Counter(), Counter()
    for e in examples:
        src, _ = source(e["question"], _example_schema(e, db_dir))
        inc.update(t.lower() for t in src)
        srcset = set(src)
        for t in sql_tokens(e.get("surface_query") or e["query"]):
            if t not in srcset:
                outc[t] += 1
    in_vocab = [PAD, UNK] + sorted(w for w, c in inc.items() if c >= min_count)
    out_vocab = [UNK, EOS, BOS, QUOTE] + sorted(w for w, c in outc.items() if c >= min_count and w != QUOTE)
    return in_vocab, out_vocab


def _targets(model: Seq2SQL, src: List[str], tgt: List[str]):
    """Per target step: the list of gold actions and the decoder-input action."""
    V = len(model.out_vocab)
    gold, feed = [], []
    for t in tgt + [EOS]:
        acts = []
        if t in model.out_index:
            acts.append(model.out_index[t])
        pos = [j for j, s in enumerate(src) if s == t]
        if not pos:
            pos = [j for j, s in enumerate(src) if s.lower() == t.lower()] if not acts else []
        acts += [V + j for j in pos]
        if not acts:
            acts = [model.out_index[UNK]]
        gold.append(acts)
        feed.append(acts[0])
    return gold, feed


def _loss(model: Seq2SQL, batch: List[Tuple[List[str], List[int], List[str]]], word_dropout: float):
    srcs = [b[0] for b in batch]
    enc, mask, h, dec_src_emb = model.encode(srcs, [b[1] for b in batch], word_dropout)
    B, S = mask.shape
    V = len(model.out_vocab)
    tg = [_targets(model, b[0], b[2]) for b in batch]
    T = max(len(g) for g, _ in tg)
    gold_mask = torch.zeros(B, T, V + S, dtype=torch.bool)
    step_mask = torch.zeros(B, T, dtype=torch.bool)
    feed_act = torch.full((B, T), model.out_index[BOS], dtype=torch.long)
    for b, (g, f) in enumerate(tg):
        for t, acts in enumerate(g):
            gold_mask[b, t, acts] = True
        step_mask[b, : len(g)] = True
        feed_act[b, 1: len(f)] = torch.tensor(f[:-1], dtype=torch.long)
    table = torch.cat([model.vocab_embed().unsqueeze(0).expand(B, -1, -1), dec_src_emb], 1)  # B, V+S, d
    prev = table.gather(1, feed_act.unsqueeze(-1).expand(-1, -1, table.shape[-1]))  # B, T, d
    logp, _ = model.decode(prev, h, enc, mask)
    lp = torch.logsumexp(logp.masked_fill(~gold_mask, -1e9), -1)
    return -(lp * step_mask).sum() / step_mask.sum()


def save_checkpoint(path, model: Seq2SQL, extra: Optional[dict] = None) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": model.config, "state": model.state_dict(), **(extra or {})}, tmp)


def load_model(path) -> Tuple[Seq2SQL, dict]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        c = ck["config"]
        model = Seq2SQL(c["in_vocab"], c["out_vocab"], GenConfig(**c["gen"]))
        model.load_state_dict(ck["state"])
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{p} is not a text-to-SQL generator checkpoint: {e}") from None
    return model.eval(), ck


def train(train_jsonl, db_dir, out_dir, epochs: int = 10, batch_size: int = 32, lr: float = 2e-3,
          cfg: Optional[GenConfig] = None, seed: int = 0, max_examples: int = 0) -> Path:
    """Train on the examples of ``train_jsonl`` (targets: ``surface_query``); checkpoints
    ``epoch-N.pt`` and ``final.pt`` in ``out_dir``; resumes from the last ``epoch-N.pt``."""
    from sltk.sql.data import read_examples

    cfg = cfg or GenConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exs = read_examples(train_jsonl)
    if max_examples:
        exs = exs[:max_examples]
    for e in exs:
        if "query" not in e:
            raise UserError(f"{train_jsonl}: example {e.get('id', '?')} has no 'query' to train on")
    torch.manual_seed(seed)
    random.seed(seed)
    in_vocab, out_vocab = build_vocabs(exs, db_dir)
    model = Seq2SQL(in_vocab, out_vocab, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    done = sorted(out.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if done:
        ck = torch.load(done[-1], map_location="cpu", weights_only=False)
        if ck["config"] != model.config:
            raise UserError(f"{done[-1]} has another configuration or vocabulary; use a new directory")
        model.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        start = ck["epoch"]
        random.setstate(_decode_state(ck["py_random"]))
        log.info("resuming from %s (epoch %d)", done[-1], start)
    data = []
    for e in exs:
        src, segs = source(e["question"], _example_schema(e, db_dir))
        data.append((src, segs, sql_tokens(e.get("surface_query") or e["query"])[: cfg.max_len]))
    log.info("generator: %d examples, input vocab %d, output vocab %d, %d parameters", len(data), len(in_vocab),
             len(out_vocab), sum(p.numel() for p in model.parameters()))
    total_steps = epochs * math.ceil(len(data) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: max(0.1, 1.0 - (s + start * math.ceil(len(data) / batch_size)) / max(1, total_steps)))
    for epoch in range(start, epochs):
        model.train()
        order = list(range(len(data)))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        tot, n = 0.0, 0
        for idx in progress(batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch"):
            loss = _loss(model, [data[j] for j in idx], cfg.word_dropout)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            tot += float(loss) * len(idx)
            n += len(idx)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, tot / max(n, 1))
        save_checkpoint(out / f"epoch-{epoch + 1}.pt", model,
                        {"optimizer": opt.state_dict(), "epoch": epoch + 1, "loss": tot / max(n, 1),
                         "py_random": _encode_state(random.getstate())})
    model.eval()
    save_checkpoint(out / "final.pt", model, {"epoch": epochs})
    return out / "final.pt"


def _encode_state(st):
    return json.dumps([st[0], list(st[1]), st[2]])


def _decode_state(s):
    a, b, c = json.loads(s)
    return (a, tuple(b), c)


# ---- beam search

@torch.no_grad()
def beam_search(model: Seq2SQL, question: str, schema: Dict[str, List[str]], beam: int = 10,
                nbest: int = 10, max_len: Optional[int] = None) -> List[Tuple[str, float]]:
    """The ``nbest`` best distinct SQL strings with their log-probabilities (sum over tokens,
    no length normalization); when fewer than ``nbest`` hypotheses end within ``max_len``
    steps, the best unfinished ones fill the list."""
    model.eval()
    max_len = max_len or model.cfg.max_len
    src, segs = source(question, schema)
    enc, mask, h, dec_src_emb = model.encode([src], [segs])
    V = len(model.out_vocab)
    table = torch.cat([model.vocab_embed(), dec_src_emb[0]], 0)  # V+S, d
    eos = model.out_index[EOS]
    hyps = [([], 0.0)]
    hs = h
    prev = table[model.out_index[BOS]].unsqueeze(0)
    finished: Dict[str, float] = {}

    def tok(a):
        return model.out_vocab[a] if a < V else src[a - V]

    for _ in range(max_len):
        k = len(hyps)
        logp, hs = model.decode(prev.unsqueeze(1), hs, enc.expand(k, -1, -1), mask.expand(k, -1))
        logp = logp[:, 0]
        base = torch.tensor([s for _, s in hyps]).unsqueeze(1)
        tot = (logp + base).view(-1)
        top = torch.topk(tot, min(2 * beam, tot.numel()))
        new, rows, acts = [], [], []
        for sc, flat in zip(top.values.tolist(), top.indices.tolist()):
            r, a = divmod(flat, logp.shape[1])
            if a == eos:
                s = detokenize([tok(x) for x in hyps[r][0]])
                if s and (s not in finished or finished[s] < sc):
                    finished[s] = sc
                continue
            if len(new) < beam:
                new.append((hyps[r][0] + [a], sc))
                rows.append(r)
                acts.append(a)
        best_fin = sorted(finished.values(), reverse=True)
        if not new or (len(best_fin) >= nbest and best_fin[nbest - 1] > new[0][1]):
            break
        hyps = new
        ri = torch.tensor(rows)
        hs = hs[ri]
        prev = table[torch.tensor(acts)]
    if len(finished) < nbest:  # too few ended within max_len: the best unfinished ones fill the list
        for acts, sc in hyps:
            s = detokenize([tok(x) for x in acts])
            if s and s not in finished:
                finished[s] = sc
    out = sorted(finished.items(), key=lambda kv: -kv[1])[:nbest]
    return [(s, float(v)) for s, v in out]


def nbest(model_path, examples: List[dict], db_dir, out_jsonl, beam: int = 10, n: int = 10) -> int:
    """Write one JSON line per example: id, db, question, (query, hardness when known), and
    ``candidates``: [{"sql", "score"}] best first."""
    model, _ = load_model(model_path)
    for e in examples:  # a missing database is an error before any work
        dbmod.db_path(db_dir, e["db"])
    with atomic_open(out_jsonl, "w", encoding="utf-8") as f:
        for e in progress(examples, desc="nbest", unit="question"):
            sch = dbmod.schema(str(dbmod.db_path(db_dir, e["db"])))
            cands = beam_search(model, e["question"], sch, beam=beam, nbest=n)
            rec = {k: e[k] for k in ("id", "db", "question", "query", "hardness") if k in e}
            rec["candidates"] = [{"sql": s, "score": round(sc, 5)} for s, sc in cands]
            f.write(json.dumps(rec) + "\n")
    return len(examples)
