"""Word n-gram language models: an interpolated Kneser-Ney trainer, ARPA writing and reading.

Pure python (no k2, no torch): counting is done with dictionaries, which is fast enough for
the corpora of a recipe (a few hundred thousand sentences, a vocabulary of a few thousand
words). The model is written in backoff (ARPA) form, which :func:`sltk.decode.graphs.arpa_to_fsa`
turns into the G of HLG.

The trainer implements interpolated Kneser-Ney with one absolute discount per order,
``D = n1 / (n1 + 2 n2)`` (Ney, Essen & Kneser 1994), where ``n1``, ``n2`` count the
n-grams seen once and twice at that order::

    p_k(w | h) = max(a_k(h w) - D_k, 0) / a_k(h .) + gamma_k(h) p_{k-1}(w | h')
    gamma_k(h) = D_k * |{w : a_k(h w) > 0}| / a_k(h .)

where ``h'`` drops the oldest word of ``h``, ``a_N`` are raw counts at the highest order and
``a_k`` (k < N) are continuation counts ``|{v : c(v g) > 0}|``, except for n-grams that start
with ``<s>`` (they have no left context), which keep their raw counts as in SRILM. The
unigram distribution is interpolated with the uniform distribution over the vocabulary, so
every word of the vocabulary (including ones only given in ``extra_vocab``) gets mass.

In ARPA form the probability of a seen n-gram is the interpolated ``p_k`` and the backoff
weight of a history is ``gamma_k(h)``; every conditional distribution sums to one.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open

BOS = "<s>"
EOS = "</s>"
LOG10_ZERO = -99.0  # what ARPA files write for log10(0), e.g. the unigram <s>

NGram = Tuple[str, ...]


@dataclass
class NgramLM:
    """A backoff n-gram LM: ``probs[k][ngram]`` and ``bows[k][history]`` are log10 values
    for n-grams of order ``k`` (1-based); absent backoff weights are 0 (log10 1)."""

    order: int
    probs: Dict[int, Dict[NGram, float]] = field(default_factory=dict)
    bows: Dict[int, Dict[NGram, float]] = field(default_factory=dict)

    @property
    def vocab(self) -> List[str]:
        """Words with a unigram entry (including ``<s>`` and ``</s>``), in file order."""
        return [g[0] for g in self.probs.get(1, {})]

    def num_ngrams(self, k: int) -> int:
        return len(self.probs.get(k, {}))

    def logprob(self, word: str, history: Sequence[str] = ()) -> float:
        """log10 P(word | history) with backoff (the history is truncated to order - 1)."""
        h = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        bow = 0.0
        while True:
            k = len(h) + 1
            p = self.probs.get(k, {}).get(h + (word,))
            if p is not None:
                return bow + p
            if not h:
                return LOG10_ZERO  # not in the vocabulary
            bow += self.bows.get(len(h), {}).get(h, 0.0)
            h = h[1:]

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """log10 P(words </s> | <s>)."""
        hist: List[str] = [BOS]
        total = 0.0
        for w in list(words) + [EOS]:
            total += self.logprob(w, hist)
            hist.append(w)
        return total


# ---------------------------------------------------------------------------- training
def _discount(counts: Dict[NGram, int]) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2.0 * n2), 0.05), 0.95)


def train_kneser_ney(
    sentences: Iterable[Sequence[str]],
    order: int = 3,
    extra_vocab: Iterable[str] = (),
) -> NgramLM:
    """Train an interpolated Kneser-Ney word n-gram LM on tokenised sentences.

    Args:
      sentences: word sequences, without ``<s>`` and ``</s>`` (empty ones are skipped).
      order: the n-gram order N >= 1.
      extra_vocab: words that get unigram mass (from the uniform floor) even if unseen.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw: List[Dict[NGram, int]] = [defaultdict(int) for _ in range(order + 1)]  # raw[k]
    num_sent = 0
    for words in sentences:
        if not words:
            continue
        num_sent += 1
        toks = (BOS, *words, EOS)
        n = len(toks)
        for k in range(1, order + 1):
            rk = raw[k]
            for i in range(n - k + 1):
                g = toks[i:i + k]
                if k == 1 and g[0] == BOS:
                    continue
                rk[g] += 1
    if num_sent == 0:
        raise UserError("no sentences to train the n-gram LM on")

    # a[k]: the counts used at order k (raw at the top order and for <s>-initial n-grams,
    # continuation counts otherwise).
    a: List[Dict[NGram, int]] = [dict() for _ in range(order + 1)]
    a[order] = dict(raw[order])
    for k in range(order - 1, 0, -1):
        cont: Dict[NGram, int] = defaultdict(int)
        for g in raw[k + 1]:
            cont[g[1:]] += 1
        ak: Dict[NGram, int] = {}
        for g, c in raw[k].items():
            ak[g] = c if g[0] == BOS else cont.get(g, 0)
        a[k] = {g: c for g, c in ak.items() if c > 0}

    vocab = {g[0] for g in a[1]} | set(extra_vocab)
    vocab.discard(BOS)
    vocab.add(EOS)

    lm = NgramLM(order=order)
    P: Dict[int, Dict[NGram, float]] = {}  # p_k of the stored k-grams, as probabilities
    Gm: Dict[int, Dict[NGram, float]] = {}  # gamma_k(h) of the histories at order k

    def p_backoff(g: NGram) -> float:
        """p_{len(g)}(w | h) for g = h w by backoff through the orders computed so far."""
        bow = 1.0
        while g:
            p = P.get(len(g), {}).get(g)
            if p is not None:
                return bow * p
            bow *= Gm.get(len(g), {}).get(g[:-1], 1.0)
            g = g[1:]
        return bow / len(vocab)

    for k in range(1, order + 1):
        ak = a[k]
        D = _discount(ak)
        ctx_total: Dict[NGram, int] = defaultdict(int)
        ctx_types: Dict[NGram, int] = defaultdict(int)
        for g, c in ak.items():
            ctx_total[g[:-1]] += c
            ctx_types[g[:-1]] += 1
        gamma = {h: D * ctx_types[h] / ctx_total[h] for h in ctx_total}

        def p_lower(g: NGram) -> float:
            return 1.0 / len(vocab) if k == 1 else p_backoff(g[1:])

        probs: Dict[NGram, float] = {}
        for g, c in ak.items():
            h = g[:-1]
            probs[g] = max(c - D, 0.0) / ctx_total[h] + gamma[h] * p_lower(g)
        if k == 1:  # words of the vocabulary without a count: the uniform floor only
            for w in vocab:
                if (w,) not in probs:
                    probs[(w,)] = gamma[()] / len(vocab)
        lm.probs[k] = {g: math.log10(p) for g, p in sorted(probs.items())}
        if k == 1:
            lm.probs[1][(BOS,)] = LOG10_ZERO
        if k > 1:
            lm.bows[k - 1] = {h: math.log10(gm) for h, gm in gamma.items() if gm > 0}
        P[k], Gm[k] = probs, gamma
    return lm


# ---------------------------------------------------------------------------- ARPA io
def _fmt(x: float) -> str:
    return f"{x:.7f}"


def write_arpa(lm: NgramLM, path: PathLike) -> None:
    """Write ``lm`` as an ARPA file (atomically). N-grams are in sorted order per section."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n\\data\\\n")
        for k in range(1, lm.order + 1):
            f.write(f"ngram {k}={lm.num_ngrams(k)}\n")
        for k in range(1, lm.order + 1):
            f.write(f"\n\\{k}-grams:\n")
            bows = lm.bows.get(k, {}) if k < lm.order else {}
            items = lm.probs.get(k, {})
            for g in sorted(items):
                line = f"{_fmt(items[g])}\t{' '.join(g)}"
                b = bows.get(g)
                if b is not None:
                    line += f"\t{_fmt(b)}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


_SECTION = re.compile(r"^\\(\d+)-grams:\s*$")


def read_arpa(path: PathLike) -> NgramLM:
    """Read an ARPA file. Raises :class:`UserError` naming the file and line on bad input."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"ARPA file {p} does not exist")
    declared: Dict[int, int] = {}
    lm = NgramLM(order=0)
    k = 0
    state = "start"
    try:
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if state == "start":
                    if line == "\\data\\":
                        state = "data"
                    continue  # text before \data\ is allowed (comments)
                if line == "\\end\\":
                    state = "end"
                    break
                m = _SECTION.match(line)
                if m:
                    k = int(m.group(1))
                    if k not in declared:
                        raise UserError(f"{p}:{lineno}: section {k}-grams not declared in \\data\\")
                    lm.probs.setdefault(k, {})
                    lm.bows.setdefault(k, {})
                    state = "grams"
                    continue
                if state == "data":
                    if not line.startswith("ngram "):
                        raise UserError(f"{p}:{lineno}: expected 'ngram K=COUNT', got {line[:60]!r}")
                    kk, cnt = line[6:].split("=")
                    declared[int(kk)] = int(cnt)
                    continue
                fields = line.split()
                if len(fields) == k + 1:
                    bow = None
                elif len(fields) == k + 2:
                    bow = float(fields[-1])
                else:
                    raise UserError(f"{p}:{lineno}: expected a {k}-gram line, got {line[:60]!r}")
                g = tuple(fields[1:k + 1])
                lm.probs[k][g] = float(fields[0])
                if bow is not None:
                    lm.bows[k][g] = bow
    except (ValueError, IndexError):
        raise UserError(f"{p}:{lineno}: cannot parse {line[:60]!r}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text") from None
    if state == "start" or not declared:
        raise UserError(f"{p} is not an ARPA file (no \\data\\ section)")
    if 1 not in lm.probs:
        raise UserError(f"{p} has no 1-grams")
    lm.order = max(declared)
    for kk, cnt in declared.items():
        if len(lm.probs.get(kk, {})) != cnt:
            raise UserError(f"{p}: \\data\\ declares {cnt} {kk}-grams but the file has "
                            f"{len(lm.probs.get(kk, {}))} (truncated file?)")
    return lm
