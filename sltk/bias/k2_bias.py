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

Adaptive boosting (:func:`k2_adaptive_decode`): the boost of a token is to be scaled by the
encoder adapter's gate at the frame where the token starts, which no static graph can express.
The lattice of HB is searched with the full boost (so that biased alternatives survive the
beams), then candidate paths (best paths with full, gated-per-arc and no bias, plus paths
sampled from the lattice) are rescored exactly: acoustic score (lattice score minus the
``bias_scores`` carried from B) plus the gated walk of the context graph, as the prefix beam
search prices it. tests/bias/test_k2_bias.py checks it against brute force over alignments.

This is the only module of :mod:`sltk.bias` that needs k2.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import k2
import torch

from sltk.bias.context_graph import ContextGraph
from sltk.bias.prefix_beam import gate_values
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


def k2_adaptive_decode(
    logprobs: torch.Tensor,
    lens: Union[torch.Tensor, Sequence[int]],
    HB: k2.Fsa,
    graphs: Union[ContextGraph, Sequence[Optional[ContextGraph]], None],
    gates: torch.Tensor,
    gate_threshold: float = 0.0,
    num_paths: int = 50,
    nbest_scale: float = 0.5,
    search_beam: float = 20.0,
    output_beam: float = 8.0,
    min_active_states: int = 30,
    max_active_states: int = 10000,
    return_scores: bool = False,
):
    """Adaptive boosting on a k2 lattice: the boost of each token gated by ``gates`` at the
    frame where the token starts, as :func:`sltk.bias.prefix_beam.prefix_beam_search` does.

    A k2 graph's arc scores cannot depend on the frame, so the gate is applied after the
    search, on paths of the lattice of HB (searched with the full boost, so that the biased
    alternatives survive the beams). Each candidate path (an alignment) is scored as its
    acoustic score (the lattice score minus the ``bias_scores`` that HB's arcs carry) plus
    the gated bias of its tokens, walked through the context graph with
    :meth:`ContextGraph.score_sequence` (a broken match gives back exactly what it was
    granted). Candidates: the best path with the full boost, the best path without bias,
    the best path with each arc's bias scaled by the gate of its frame (an approximation that
    mis-prices refunds, used only to propose a path), and ``num_paths`` paths sampled from the
    lattice with its scores scaled by ``nbest_scale``. The best candidate wins. With gates of
    1 this is the biased 1-best whenever the walk and the acceptor agree (no competing
    matches, see the module doc); with gates of 0 it is the unbiased best path of the lattice.

    Args:
      logprobs: ``(N, T, V)`` CTC log-probs; lens: ``(N,)`` frames.
      HB: :func:`biased_ctc_graph` of the graph(s) (one FSA, or an FsaVec of N).
      graphs: the :class:`ContextGraph` of HB, or one per sequence (``None``: no bias).
      gates: ``(N, T)`` in [0, 1]; gate_threshold: gates below it count as 0.

    Returns the token ids per sequence (and the ``(N,)`` scores with ``return_scores``;
    -inf where the lattice is empty).
    """
    from sltk.decode.ctc import get_lattice

    N = logprobs.shape[0]
    if isinstance(graphs, ContextGraph) or graphs is None:
        graphs = [graphs] * N
    if len(graphs) != N:
        raise ValueError(f"got {len(graphs)} context graphs for {N} sequences")
    if gates.dim() != 2 or gates.shape[0] != N:
        raise ValueError(f"gates must have shape (N, T) with N = {N}, got {tuple(gates.shape)}")
    if num_paths < 0:
        raise ValueError(f"num_paths must be >= 0, got {num_paths}")
    hyps: List[List[int]] = [[] for _ in range(N)]
    scores = torch.full((N,), float("-inf"))
    if HB.device != logprobs.device:
        HB = HB.to(logprobs.device)
    lattice, index = get_lattice(logprobs, lens, HB, search_beam, output_beam, min_active_states,
                                 max_active_states, frame_idx_name="frame")
    if not index:
        return (hyps, scores) if return_scores else hyps
    dev = lattice.scores.device
    total = lattice.scores.detach().clone()
    bias = lattice.bias_scores.detach().clone() if hasattr(lattice, "bias_scores") else torch.zeros_like(total)
    acoustic = total - bias
    frames = lattice.frame.long()
    shape = lattice.arcs.shape()  # [fsa][state][arc]
    arc_fsa = shape.row_ids(1).long()[shape.row_ids(2).long()]
    gate_lists = [gate_values(gates[i], gate_threshold) for i in index]
    # the per-arc gate of each arc's frame (final arcs: the last frame), for the proposal path
    T = gates.shape[1]
    g_tab = torch.tensor(gate_lists, dtype=torch.float32).reshape(len(index), T)
    g_arc = g_tab.to(dev)[arc_fsa, frames.clamp(max=max(T - 1, 0))] if T else torch.zeros_like(total)

    lattice.arc_id = torch.arange(lattice.num_arcs, dtype=torch.int32, device=dev)
    cands: List[List[List[int]]] = [[] for _ in index]  # [fsa][path][arc id]
    try:
        for variant in (total, acoustic, acoustic + g_arc * bias):
            lattice.scores = variant
            best = k2.shortest_path(lattice, use_double_scores=True)
            per = k2.RaggedTensor(best.arcs.shape().remove_axis(1), best.arc_id.contiguous()).tolist()
            for j, p in enumerate(per):
                if p:
                    cands[j].append(p)
        if num_paths:
            lattice.scores = total * nbest_scale
            for j, ps in enumerate(k2.random_paths(lattice, use_double_scores=True, num_paths=num_paths).tolist()):
                cands[j].extend(p for p in ps if p)
    finally:
        lattice.scores = total
    ac, aux, fr = acoustic.tolist(), lattice.aux_labels.tolist(), frames.tolist()
    for j, i in enumerate(index):
        g, gl = graphs[i], gate_lists[j]
        best_s, best_h = float("-inf"), []
        seen = set()
        for p in cands[j]:
            key = tuple(p)
            if key in seen:
                continue
            seen.add(key)
            toks = [(aux[a], fr[a]) for a in p if aux[a] > 0]
            h = [t for t, _ in toks]
            s = sum(ac[a] for a in p)
            if g is not None:
                s += g.score_sequence(h, [gl[f] for _, f in toks])
            if s > best_s:
                best_s, best_h = s, h
        hyps[i] = best_h
        scores[i] = best_s
    return (hyps, scores) if return_scores else hyps
