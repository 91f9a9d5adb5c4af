"""A context graph: an Aho-Corasick automaton over token ids that boosts catalog phrases.

:class:`ContextGraph` is built from ``(token_ids, boost)`` pairs (see
:func:`sltk.bias.catalog.encode_catalog`). Each trie arc carries a per-token bonus (the
phrase's own boost, else the graph's default ``boost``; an arc shared by several phrases
gets the largest of their boosts), and each state stores ``node_score``, the bonus summed
from the root. Decoders walk it one token at a time with :meth:`ContextGraph.forward`:

* a token that extends the current partial match earns the arc's bonus;
* a token that breaks it follows failure links (longest proper suffix that is also a trie
  prefix) down to a state that can take it, or to the root: the bonus of the dropped part
  is given back in the same step (``delta = node_score(next) - node_score(state)``);
* reaching the end of a phrase banks its bonus. A phrase end with no longer phrase behind
  it (a leaf) sends the walk back to the root; an end inside a longer phrase ("A B" when
  "A B C" is also listed) keeps the state, whose bonus is then never given back: if the
  longer match breaks, the shorter phrase is banked and matching restarts at the root.
  Likewise a state whose failure chain holds a complete phrase (reached "X A B" of
  "X A B Y" where "A B" is also listed) banks that phrase when its match breaks.
  Matches therefore never overlap: after a match, the next one starts after it.
* :meth:`ContextGraph.finalize` at the end of an utterance gives back an unfinished
  partial match (keeping a completed suffix phrase, as above).

So the total bonus of a token sequence (:meth:`ContextGraph.score_sequence`) is the sum of
the bonuses of the phrases it matched, whatever partial matches happened on the way.

Adaptive (gated) boosting scales each token's bonus by a gate value chosen when the token
is emitted; :meth:`ContextGraph.forward_gated` carries the gates of the current partial
match, so a refund takes back exactly what was granted.

States are small ints (0 = root), transitions dicts: building 10,000 phrases takes a
fraction of a second and :meth:`forward` is O(1) amortised. No torch or k2 here.
"""

from __future__ import annotations

from collections import deque
from typing import Dict, List, Optional, Sequence, Tuple

Phrase = Tuple[Sequence[int], Optional[float]]


class ContextGraph:
    """Aho-Corasick context graph over token ids (see the module doc for the semantics).

    Args:
      phrases: ``(token_ids, boost)`` pairs; ``boost`` None means the default. Token ids
        must be positive (0 is the CTC blank); empty phrases are ignored.
      boost: default per-token bonus (natural log, added to the log-probabilities).

    Attributes (lists indexed by state): ``children`` (token -> state), ``bonus`` (bonus of
    the arc into the state), ``node_score``, ``depth``, ``parent``, ``fail`` (failure
    state), ``is_end`` (a phrase ends here), ``out`` (the deepest state in ``{s}`` and its
    failure chain where a phrase ends, -1 if none), ``is_leaf_end`` (a phrase ends here and
    no longer phrase continues it: the walk returns to the root).
    """

    def __init__(self, phrases: Sequence[Phrase], boost: float):
        boost = float(boost)
        if boost != boost or boost in (float("inf"), float("-inf")):
            raise ValueError(f"boost must be finite, got {boost}")
        self.default_boost = boost
        self.children: List[Dict[int, int]] = [{}]
        self.bonus: List[float] = [0.0]
        self.parent: List[int] = [-1]
        self.depth: List[int] = [0]
        self.is_end: List[bool] = [False]
        self.num_phrases = 0
        for i, item in enumerate(phrases):
            try:
                ids, b = item
            except (TypeError, ValueError):
                raise ValueError(f"phrase {i}: expected (token_ids, boost), got {item!r}") from None
            b = boost if b is None else float(b)
            if b != b or b in (float("inf"), float("-inf")):
                raise ValueError(f"phrase {i}: boost must be finite, got {b}")
            ids = [int(t) for t in ids]
            if not ids:
                continue
            if min(ids) <= 0:
                raise ValueError(f"phrase {i}: token ids must be > 0 (0 is the blank), got {ids}")
            s = 0
            for t in ids:
                n = self.children[s].get(t)
                if n is None:
                    n = len(self.children)
                    self.children.append({})
                    self.bonus.append(b)
                    self.parent.append(s)
                    self.depth.append(self.depth[s] + 1)
                    self.is_end.append(False)
                    self.children[s][t] = n
                elif b > self.bonus[n]:
                    self.bonus[n] = b
                s = n
            self.is_end[s] = True
            self.num_phrases += 1
        self._link()

    def _link(self) -> None:
        """node_score, failure links and outputs, breadth first."""
        n = len(self.children)
        self.node_score = [0.0] * n
        self.fail = [0] * n
        self.out = [-1] * n
        queue = deque([0])
        while queue:
            u = queue.popleft()
            for t, v in self.children[u].items():
                self.node_score[v] = self.node_score[u] + self.bonus[v]
                if u:
                    f = self.fail[u]
                    while f and t not in self.children[f]:
                        f = self.fail[f]
                    self.fail[v] = self.children[f].get(t, 0)
                self.out[v] = v if self.is_end[v] else self.out[self.fail[v]]
                queue.append(v)
        self.is_leaf_end = [e and not c for e, c in zip(self.is_end, self.children)]

    # ------------------------------------------------------------------ sizes
    @property
    def num_states(self) -> int:
        return len(self.children)

    def __len__(self) -> int:
        return self.num_phrases

    @property
    def is_empty(self) -> bool:
        return len(self.children) == 1

    # ------------------------------------------------------------------ nominal walk
    def forward(self, state: int, token: int) -> Tuple[int, float]:
        """One token: ``(next_state, delta)``; delta includes the refund of a broken match."""
        children = self.children
        cur = state
        banked = 0.0
        while cur and token not in children[cur]:
            o = self.out[cur]
            if o >= 0:  # a phrase completed inside the broken match: bank it, restart at the root
                banked = self.node_score[o]
                cur = 0
                break
            cur = self.fail[cur]
        n = children[cur].get(token, 0)
        if n and self.is_leaf_end[n]:
            return 0, banked + self.node_score[n] - self.node_score[state]
        return n, banked + self.node_score[n] - self.node_score[state]

    def finalize(self, state: int) -> float:
        """End of utterance: the refund of an unfinished match (0 at the root or after a match)."""
        o = self.out[state]
        return (self.node_score[o] if o >= 0 else 0.0) - self.node_score[state]

    def score_sequence(self, tokens: Sequence[int], gates: Optional[Sequence[float]] = None) -> float:
        """Total bonus of a token sequence (finalize included); ``gates``: one per token."""
        state, total = 0, 0.0
        if gates is None:
            for t in tokens:
                state, d = self.forward(state, int(t))
                total += d
            return total + self.finalize(state)
        if len(gates) != len(tokens):
            raise ValueError(f"got {len(gates)} gates for {len(tokens)} tokens")
        g: Tuple[float, ...] = ()
        for t, x in zip(tokens, gates):
            state, g, d = self.forward_gated(state, g, int(t), float(x))
            total += d
        return total + self.finalize_gated(state, g)

    # ------------------------------------------------------------------ gated walk
    def granted(self, state: int, gates: Sequence[float]) -> float:
        """Bonus granted for the partial match ``state`` whose tokens had these gates
        (``len(gates) == depth[state]``); with all gates 1 it is ``node_score[state]``."""
        total = 0.0
        s = state
        i = len(gates) - 1
        while s > 0:
            total += gates[i] * self.bonus[s]
            s = self.parent[s]
            i -= 1
        return total

    def forward_gated(self, state: int, gates: Tuple[float, ...], token: int,
                      gate: float) -> Tuple[int, Tuple[float, ...], float]:
        """Like :meth:`forward`, with the token's bonus scaled by ``gate``.

        ``gates`` are the scales of the tokens of the current partial match (``()`` at the
        root; as returned by the previous call). Tokens that stay in the match after a
        failure keep their own gates, re-priced with the bonuses of the new (suffix) state;
        what is given back is exactly what was granted. Returns ``(next_state, next_gates,
        delta)``.
        """
        children = self.children
        before = self.granted(state, gates)
        cur = state
        banked = 0.0
        while cur and token not in children[cur]:
            o = self.out[cur]
            if o >= 0:
                banked = self.granted(o, gates[len(gates) - self.depth[o]:])
                cur = 0
                break
            cur = self.fail[cur]
        n = children[cur].get(token, 0)
        if not n:
            return 0, (), banked - before
        d = self.depth[cur]
        ng = (tuple(gates[len(gates) - d:]) if d else ()) + (gate,)
        if self.is_leaf_end[n]:
            return 0, (), banked + self.granted(n, ng) - before
        return n, ng, banked + self.granted(n, ng) - before

    def finalize_gated(self, state: int, gates: Sequence[float]) -> float:
        """:meth:`finalize` for a gated partial match."""
        o = self.out[state]
        kept = self.granted(o, gates[len(gates) - self.depth[o]:]) if o >= 0 else 0.0
        return kept - self.granted(state, gates)

    # ------------------------------------------------------------------ export
    def failure_arc(self, state: int) -> Tuple[int, float]:
        """Where a broken match at ``state`` (> 0) goes without consuming a token, and the
        score of that step: to the root banking a completed suffix phrase if there is one,
        else to the failure state, giving back the bonus of the dropped prefix."""
        o = self.out[state]
        if o >= 0:
            return 0, self.node_score[o] - self.node_score[state]
        f = self.fail[state]
        return f, self.node_score[f] - self.node_score[state]

    def __repr__(self) -> str:
        return f"ContextGraph({self.num_phrases} phrases, {self.num_states} states, boost={self.default_boost})"
