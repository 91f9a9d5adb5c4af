"""k2 decoding graphs: the CTC topology H, the lexicon L, the LM acceptor G, and HLG.

This module imports k2 at the top: import it only where k2 is needed (it is absent on
torch 2.x installs). The composition follows icefall's ``local/compile_hlg.py``:
``L_disambig o G`` is determinized, its disambiguation symbols are turned into epsilons
and removed, and the result is composed with the CTC topology.

Conventions of the graphs (all k2 FSAs, saved with ``torch.save(fsa.as_dict())``):

* labels of H, L and HLG are token ids (0 = blank in H / epsilon in L, -1 on final arcs);
  aux_labels of H are token ids, of L and HLG word ids (0 = epsilon);
* G is an acceptor over word ids with backoff arcs labelled ``#0`` (the word id of the
  first disambiguation symbol), like the output of kaldilm / arpa2fst;
* scores are natural-log probabilities (ARPA log10 values times ln 10).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple

import k2
import torch

from sltk.decode.ngram import BOS, EOS, NgramLM

log = logging.getLogger("sltk")

LN10 = math.log(10.0)


def fsa_from_arcs(arcs: List[Tuple[int, int, int, float]], aux_labels: Optional[List[int]] = None) -> k2.Fsa:
    """A k2 FSA from ``(src, dst, label, score)`` arcs (any order; the final state must be
    the largest state id and be reached by label -1 arcs only)."""
    if not arcs:
        raise ValueError("an FSA needs at least one arc")
    order = sorted(range(len(arcs)), key=lambda i: arcs[i][0])  # stable: keeps arc order per state
    src = torch.tensor([arcs[i][0] for i in order], dtype=torch.int32)
    dst = torch.tensor([arcs[i][1] for i in order], dtype=torch.int32)
    lab = torch.tensor([arcs[i][2] for i in order], dtype=torch.int32)
    score = torch.tensor([arcs[i][3] for i in order], dtype=torch.float32).view(torch.int32)
    fsa = k2.Fsa(torch.stack([src, dst, lab, score], dim=1).contiguous())
    if aux_labels is not None:
        fsa.aux_labels = torch.tensor([aux_labels[i] for i in order], dtype=torch.int32)
    return fsa


# ------------------------------------------------------------------------------ H
def build_ctc_topo(max_token_id: int, modified: bool = False) -> k2.Fsa:
    """The CTC topology over token ids 0..max_token_id (0 = blank), arc-sorted."""
    return k2.arc_sort(k2.ctc_topo(max_token_id, modified=modified))


# ------------------------------------------------------------------------------ L
def build_lexicon_fst(
    lexicon: Sequence[Tuple[int, Sequence[int]]],
    token_disambig0: Optional[int] = None,
    word_disambig0: Optional[int] = None,
) -> k2.Fsa:
    """L: token ids -> word ids, one loop state, like icefall's ``lexicon_to_fst_no_sil``.

    Args:
      lexicon: ``(word_id, token_ids)`` pairs; token_ids may end in disambiguation tokens.
      token_disambig0, word_disambig0: ids of ``#0`` in tokens.txt and words.txt; when
        given, a ``#0:#0`` self-loop is added to the loop state so that G's backoff arcs
        can be followed after composition (L_disambig).
    """
    arcs: List[Tuple[int, int, int, float]] = []
    aux: List[int] = []
    loop = 0
    next_state = 1
    for word, toks in lexicon:
        if not toks:
            raise ValueError(f"word id {word} has no tokens")
        cur = loop
        for i, t in enumerate(toks):
            last = i == len(toks) - 1
            dst = loop if last else next_state
            if not last:
                next_state += 1
            arcs.append((cur, dst, int(t), 0.0))
            aux.append(int(word) if i == 0 else 0)
            cur = dst
    if token_disambig0 is not None:
        arcs.append((loop, loop, token_disambig0, 0.0))
        aux.append(word_disambig0 if word_disambig0 is not None else 0)
    final = next_state
    arcs.append((loop, final, -1, 0.0))
    aux.append(-1)
    return k2.arc_sort(fsa_from_arcs(arcs, aux))


# ------------------------------------------------------------------------------ G
def arpa_to_fsa(lm: NgramLM, word2id: Dict[str, int], backoff_id: int) -> Tuple[k2.Fsa, Dict[str, int]]:
    """G: an acceptor over word ids for a backoff n-gram LM (as kaldilm / arpa2fst build it).

    One state per history (an n-gram that is the context of a longer n-gram) plus the
    empty history; the start state is the history ``<s>``. An n-gram ``h w`` is an arc
    from the state of ``h`` to the state of the longest suffix of ``h w`` that is a
    history, with score ``ln P(w | h)``; ``h </s>`` is an arc labelled -1 to the final
    state; each history ``h`` has a backoff arc labelled ``backoff_id`` (``#0``) to its
    longest proper suffix that is a history, with score ``ln bow(h)``.

    N-grams with words missing from ``word2id`` are skipped. Returns ``(G, stats)``.
    """
    N = lm.order
    # Histories: contexts of the n-grams of orders 2..N, and the empty history.
    hist = {(): 0}
    for k in range(2, N + 1):
        for g in lm.probs.get(k, {}):
            h = g[:-1]
            if h not in hist:
                hist[h] = 0
    start_hist = (BOS,) if (BOS,) in hist else ()
    ids: Dict[Tuple[str, ...], int] = {start_hist: 0}
    for h in hist:
        if h not in ids:
            ids[h] = len(ids)
    final = len(ids)

    def state_of(g: Tuple[str, ...]) -> int:
        g = g[-(N - 1):] if N > 1 else ()
        while g not in ids:
            g = g[1:]
        return ids[g]

    arcs: List[Tuple[int, int, int, float]] = []
    skipped = 0
    for k in range(1, N + 1):
        for g, lp in lm.probs.get(k, {}).items():
            w = g[-1]
            if w == BOS or lp <= -99.0:
                continue
            if any(x not in word2id and x not in (BOS, EOS) for x in g):
                skipped += 1
                continue
            src = ids[g[:-1]]
            if w == EOS:
                arcs.append((src, final, -1, lp * LN10))
            else:
                arcs.append((src, state_of(g), word2id[w], lp * LN10))
    backoff = 0
    for h, sid in ids.items():
        if not h:
            continue
        if any(x not in word2id and x != BOS for x in h):
            continue  # unreachable state of a skipped word
        bow = lm.bows.get(len(h), {}).get(h, 0.0)
        arcs.append((sid, state_of(h[1:]), backoff_id, bow * LN10))
        backoff += 1
    G = k2.arc_sort(k2.connect(fsa_from_arcs(arcs)))
    stats = {"states": G.shape[0], "arcs": G.num_arcs, "histories": len(ids), "skipped_ngrams": skipped,
             "backoff_arcs": backoff}
    return G, stats


def sentence_score(G: k2.Fsa, word_ids: Sequence[int], backoff_id: int) -> float:
    """The best path score (natural log) of a word sequence in G with its backoff arcs
    taken as epsilons; ``-inf`` when G does not accept the sentence."""
    g = G.clone()
    labels = g.labels.clone()
    labels[labels == backoff_id] = 0
    g.labels = labels
    g = k2.arc_sort(g)
    lin = k2.linear_fsa(list(word_ids))
    inter = k2.intersect(lin, g, treat_epsilons_specially=True)
    inter = k2.connect(inter)
    if inter.num_arcs == 0:
        return float("-inf")
    vec = k2.create_fsa_vec([k2.top_sort(inter)])
    return float(vec.get_tot_scores(use_double_scores=True, log_semiring=False)[0])


# ------------------------------------------------------------------------------ HLG
def compile_hlg(H: k2.Fsa, L_disambig: k2.Fsa, G: k2.Fsa, first_token_disambig: int,
                first_word_disambig: int) -> k2.Fsa:
    """HLG = H o det(L_disambig o G) with disambiguation symbols and epsilons removed.

    The steps of icefall's compile_hlg: arc-sort, compose, connect, determinize, connect,
    disambiguation symbols -> epsilon (labels >= first_token_disambig, word aux_labels >=
    first_word_disambig), remove epsilons, connect, compose with H, connect, arc-sort.
    HLG gets an ``lm_scores`` attribute (G's part of its scores; H and L have none), so a
    decoder can use ``scores - lm_scores + lm_scale * lm_scores``.
    """
    L = k2.arc_sort(L_disambig)
    G = G.clone()  # attributes are changed below: leave the caller's G alone
    if hasattr(G, "aux_labels"):
        del G.aux_labels  # an acceptor: compose matches L's words against G's labels
    if not hasattr(G, "lm_scores"):
        G.lm_scores = G.scores.clone()  # carried into HLG, so that the LM can be rescaled
    G = k2.arc_sort(G)
    log.info("HLG: composing L (%d arcs) and G (%d arcs)", L.num_arcs, G.num_arcs)
    LG = k2.connect(k2.compose(L, G))
    log.info("HLG: determinizing LG (%d arcs)", LG.num_arcs)
    LG = k2.connect(k2.determinize(LG))
    labels = LG.labels.clone()
    labels[labels >= first_token_disambig] = 0
    LG.labels = labels
    aux = LG.aux_labels
    if isinstance(aux, k2.RaggedTensor):
        values = aux.values.clone()
        values[values >= first_word_disambig] = 0
        LG.aux_labels = k2.RaggedTensor(aux.shape, values)
    else:
        aux = aux.clone()
        aux[aux >= first_word_disambig] = 0
        LG.aux_labels = aux
    log.info("HLG: removing epsilons of LG (%d arcs)", LG.num_arcs)
    LG = k2.connect(k2.remove_epsilon(LG))
    if isinstance(LG.aux_labels, k2.RaggedTensor):
        LG.aux_labels = LG.aux_labels.remove_values_eq(0)
    LG = k2.arc_sort(LG)
    log.info("HLG: composing H (%d arcs) and LG (%d arcs)", H.num_arcs, LG.num_arcs)
    HLG = k2.connect(k2.compose(H, LG, inner_labels="tokens"))
    HLG = k2.arc_sort(HLG)
    log.info("HLG: %d states, %d arcs", HLG.shape[0], HLG.num_arcs)
    return HLG


def save_fsa(fsa: k2.Fsa, path) -> None:
    """torch.save(fsa.as_dict()) atomically."""
    from sltk.utils.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(fsa.as_dict(), tmp)


def load_fsa(path, device: Optional[torch.device] = None) -> k2.Fsa:
    fsa = k2.Fsa.from_dict(torch.load(path, map_location="cpu", weights_only=False))
    return fsa.to(device) if device is not None else fsa
