"""A context graph as a k2 acceptor, composed with the CTC topology for biased lattice decoding.

:func:`context_graph_fsa` writes a :class:`~sltk.bias.context_graph.ContextGraph` as a k2
acceptor over token ids:

* one state per trie state (a phrase end with no longer phrase behind it is not a state:
  its arc goes back to the root, keeping the bonus);
* per trie child an arc labelled with the token, score = the token's bonus;
* from each non-root state an epsilon arc (label 0) for a broken match
  (:meth:`ContextGraph.failure_arc`): to the failure state with score
  ``-(node_score(state) - node_score(fail))`` (the refund of the dropped prefix), or to the
  root banking a phrase that ended inside the match;
* self-loops on the root for every token 1..V-1 with score 0, so any sequence is accepted;
* every state final, with the refund of its partial match (:meth:`ContextGraph.finalize`).

Why Viterbi (tropical, one-best) decoding over epsilon failure arcs gives the
failure-transition semantics of :meth:`ContextGraph.forward`: the deterministic walk is one
path of this acceptor (it takes failure arcs exactly where forward() follows failure links),
so the best path scores at least as high. Any other path differs by taking a failure arc, or
a root self-loop, where a trie arc for the token exists. With one boost for all phrases the
bias of a path is its banked phrases plus ``b * depth(state)``; the walk is always in the
deepest state (the longest suffix that is a trie prefix), from which every phrase that a
shallower state could still complete can be completed too, so taking the failure arc
early only gives bonus back: it scores lower, never higher. This holds as long as matches do
not compete. They compete when a phrase's end overlaps the start of another ("A B" and
"B C D" on "A B C D": the walk banks "A B" and restarts, the acceptor may skip "A B" to bank
the longer "B C D"), when a phrase inside a longer partial match is lost as that match breaks
("B" inside "A B C D" on "A B C X"), or when per-phrase boosts favour a shorter suffix. There
the acceptor picks the best set of non-overlapping matches and the beam search the greedy
one: k2 never gives less bias (tests/bias/test_k2_bias.py checks both cases).

k2's ``intersect_dense_pruned`` reads label 0 as the CTC blank (it consumes a frame), so the
decoding graph must have no epsilons. :func:`context_graph_fsa` with ``epsilon_free=True``
removes them exactly (tropical semiring), backwards: a token arc into a state ``s`` is also
copied to each state of the failure chain of ``s`` with the failure arcs' scores added, and
the final score of ``s`` is the best over its chain. The chain is short (at most the phrase
length), so the acceptor stays about (1 + mean chain length) x the trie size, plus the V
root self-loops, instead of the states x V arcs that forward epsilon removal
(``k2.remove_epsilon``) would give here. :func:`biased_ctc_graph` composes the CTC
topology H (tokens on its output side, blank = epsilon there) with that acceptor:
``HB = connect(compose(H, B))`` whose labels are CTC symbols and aux_labels token ids, like H.

Sizes and times (one CPU thread, V = 500, 10,000 random phrases of 2-8 tokens): trie 40k
states in 0.2-0.5 s, epsilon-free acceptor 130k arcs in 0.6-0.9 s, HB 61k states and 848k
arcs (H alone: 250k arcs) in about 1.1 s with the acceptor. Decoding T = 200 frames of peaky
posteriors on the CPU (search_beam 20): about 0.5 s per utterance with H, 0.6 s with HB.

This is the only module of :mod:`sltk.bias` that needs k2.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import k2
import torch

from sltk.bias.context_graph import ContextGraph
from sltk.decode.ctc import ctc_k2_decode
from sltk.decode.graphs import fsa_from_arcs


def _state_map(graph: ContextGraph) -> Dict[int, int]:
    """Trie state -> FSA state (leaf phrase ends are not states)."""
    ids: Dict[int, int] = {}
    for s in range(graph.num_states):
        if not graph.is_leaf_end[s]:
            ids[s] = len(ids)
    return ids


def context_graph_fsa(graph: ContextGraph, vocab_size: int, epsilon_free: bool = False) -> k2.Fsa:
    """The context graph as a k2 acceptor over token ids 1..vocab_size-1 (module doc).

    Args:
      graph: the context graph (may be empty: one state with the root self-loops).
      vocab_size: V, the number of model outputs (blank 0 included).
      epsilon_free: remove the epsilon failure arcs (needed for decoding with k2).

    The FSA has an attribute ``bias_scores`` (a copy of its scores), carried through
    composition so that the bias part of a path's score can be read back.
    """
    V = int(vocab_size)
    if V < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    if any(t >= V for ch in graph.children for t in ch):
        raise ValueError(f"the context graph has token ids >= vocab_size {V}")
    ids = _state_map(graph)
    final = len(ids)

    def dest(n: int) -> int:
        return ids[0] if graph.is_leaf_end[n] else ids[n]

    arcs: List[Tuple[int, int, int, float]] = []
    finals: Dict[int, float] = {}
    if not epsilon_free:
        for s, fs in ids.items():
            for t, n in graph.children[s].items():
                arcs.append((fs, dest(n), t, graph.bonus[n]))
            if s:
                f, score = graph.failure_arc(s)
                arcs.append((fs, ids[f], 0, score))
            finals[fs] = graph.finalize(s)
    else:
        # chain[s]: the (state, score) reached from s by failure arcs, s itself first; and
        # final[s]: the best final score over that chain. Failure arcs go to shallower
        # states, so computing by increasing depth needs no recursion.
        chain: Dict[int, List[Tuple[int, float]]] = {0: [(0, 0.0)]}
        final_score: Dict[int, float] = {0: 0.0}
        for s in sorted(ids, key=graph.depth.__getitem__):
            if s:
                f, score = graph.failure_arc(s)
                chain[s] = [(s, 0.0)] + [(x, score + y) for x, y in chain[f]]
                final_score[s] = max(graph.finalize(s), score + final_score[f])
        for s, fs in ids.items():
            for t, n in graph.children[s].items():
                b = graph.bonus[n]
                if graph.is_leaf_end[n]:
                    if s or b > 0.0:  # (at the root, a bonus <= 0 is beaten by the self-loop)
                        arcs.append((fs, ids[0], t, b))
                    continue
                for x, e in chain[n]:
                    if x == 0 and s == 0 and b + e <= 0.0:
                        continue
                    arcs.append((fs, ids[x], t, b + e))
            finals[fs] = final_score[s]
    root = ids[0]
    for t in range(1, V):
        arcs.append((root, root, t, 0.0))
    for fs, score in finals.items():
        arcs.append((fs, final, -1, score))
    fsa = k2.arc_sort(fsa_from_arcs(arcs))
    fsa.bias_scores = fsa.scores.clone()
    return fsa


def biased_ctc_graph(H: k2.Fsa, graph: Union[ContextGraph, k2.Fsa], vocab_size: Optional[int] = None) -> k2.Fsa:
    """HB: the CTC topology composed with a context graph, for :func:`k2_biased_decode`.

    Args:
      H: the CTC topology (``build_ctc_topo`` / ``Lang.graph("H")``): labels CTC symbols,
        aux_labels token ids (0 on blank and repeat arcs).
      graph: a :class:`ContextGraph`, or an acceptor from :func:`context_graph_fsa` (its
        epsilons are removed with ``k2.remove_epsilon`` if it has any: prefer passing the
        ContextGraph, which removes them compactly).
      vocab_size: V (default: H's largest label + 1).

    Returns HB on the CPU, arc-sorted, with ``bias_scores`` on its arcs.
    """
    H = H.to("cpu")
    if vocab_size is None:
        vocab_size = int(H.labels.max()) + 1
    if isinstance(graph, ContextGraph):
        B = context_graph_fsa(graph, vocab_size, epsilon_free=True)
    else:
        B = graph.to("cpu")
        if bool((B.labels == 0).any()):
            B = k2.remove_epsilon(B)
            B = k2.connect(B)
        if not hasattr(B, "bias_scores"):
            B.bias_scores = B.scores.clone()
    B = k2.arc_sort(B)
    HB = k2.compose(H, B, treat_epsilons_specially=True)
    HB = k2.arc_sort(k2.connect(HB))
    return HB


def k2_biased_decode(
    logprobs: torch.Tensor,
    lens: Union[torch.Tensor, Sequence[int]],
    HB: k2.Fsa,
    search_beam: float = 20.0,
    output_beam: float = 8.0,
    min_active_states: int = 30,
    max_active_states: int = 10000,
    subsampling_factor: int = 1,
    return_scores: bool = False,
):
    """One-best token ids of each sequence decoded with HB (or plain H, or one graph per
    sequence as an FsaVec): :func:`sltk.decode.ctc.ctc_k2_decode` with ``method="1best"``.

    The scores (``return_scores``) include the bias of the best path."""
    if HB.device != logprobs.device:
        HB = HB.to(logprobs.device)
    return ctc_k2_decode(logprobs, lens, HB, search_beam=search_beam, output_beam=output_beam,
                         min_active_states=min_active_states, max_active_states=max_active_states,
                         subsampling_factor=subsampling_factor, method="1best", return_scores=return_scores)
