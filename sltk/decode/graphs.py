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
    unk: Optional[Tuple[int, int]] = None,
) -> k2.Fsa:
    """L: token ids -> word ids, one loop state, like icefall's ``lexicon_to_fst_no_sil``.

    Args:
      lexicon: ``(word_id, token_ids)`` pairs; token_ids may end in disambiguation tokens.
      token_disambig0, word_disambig0: ids of ``#0`` in tokens.txt and words.txt; when
        given, a ``#0:#0`` self-loop is added to the loop state so that G's backoff arcs
        can be followed after composition (L_disambig).
      unk: ``(unk_token, unk_word)``: an open-vocabulary L_disambig. The word ``<unk>`` gets
        the one-token pronunciation ``#unk`` (a symbol after the disambiguation tokens), so
        that ``L o G`` stays determinizable; :func:`expand_unk` replaces each ``#unk`` arc
        of the determinized LG by the token loop that spells a new word.
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
    if unk is not None:
        arcs.append((loop, loop, int(unk[0]), 0.0))
        aux.append(int(unk[1]))
    if token_disambig0 is not None:
        arcs.append((loop, loop, token_disambig0, 0.0))
        aux.append(word_disambig0 if word_disambig0 is not None else 0)
    final = next_state
    arcs.append((loop, final, -1, 0.0))
    aux.append(-1)
    return k2.arc_sort(fsa_from_arcs(arcs, aux))


# ------------------------------------------------------------------------------ G
def arpa_to_fsa(lm: NgramLM, word2id: Dict[str, int], backoff_id: int,
                short_history: Optional[str] = None) -> Tuple[k2.Fsa, Dict[str, int]]:
    """G: an acceptor over word ids for a backoff n-gram LM (as kaldilm / arpa2fst build it).

    One state per history (an n-gram that is the context of a longer n-gram) plus the
    empty history; the start state is the history ``<s>``. An n-gram ``h w`` is an arc
    from the state of ``h`` to the state of the longest suffix of ``h w`` that is a
    history, with score ``ln P(w | h)``; ``h </s>`` is an arc labelled -1 to the final
    state; each history ``h`` has a backoff arc labelled ``backoff_id`` (``#0``) to its
    longest proper suffix that is a history, with score ``ln bow(h)``.

    N-grams with words missing from ``word2id`` are skipped. ``short_history``: a word after
    which the history is that word alone (the n-grams ``... w x`` of longer contexts ending in
    it are skipped; the next word gets the bigram ``w x``, itself a normalised distribution):
    ``<unk>`` in an open-vocabulary G, so that every spelled word returns to one state.
    Returns ``(G, stats)``.
    """
    N = lm.order
    # Histories: contexts of the n-grams of orders 2..N, and the empty history.
    def cut(h: Tuple[str, ...]) -> bool:
        return short_history is not None and len(h) > 1 and h[-1] == short_history

    hist = {(): 0}
    for k in range(2, N + 1):
        for g in lm.probs.get(k, {}):
            h = g[:-1]
            if h not in hist and not cut(h):
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
    skipped = shortened = 0
    for k in range(1, N + 1):
        for g, lp in lm.probs.get(k, {}).items():
            w = g[-1]
            if w == BOS or lp <= -99.0:
                continue
            if any(x not in word2id and x not in (BOS, EOS) for x in g):
                skipped += 1
                continue
            if cut(g[:-1]):
                shortened += 1
                continue
            src = ids[g[:-1]]
            if w == EOS:
                arcs.append((src, final, -1, lp * LN10))
            else:
                arcs.append((src, state_of(g), word2id[w], lp * LN10))
    backoff = 0
    for h, sid in ids.items():
        if not h or cut(h):
            continue
        if any(x not in word2id and x != BOS for x in h):
            continue  # unreachable state of a skipped word
        bow = lm.bows.get(len(h), {}).get(h, 0.0)
        arcs.append((sid, state_of(h[1:]), backoff_id, bow * LN10))
        backoff += 1
    G = k2.arc_sort(k2.connect(fsa_from_arcs(arcs)))
    stats = {"states": G.shape[0], "arcs": G.num_arcs, "histories": len(ids), "skipped_ngrams": skipped,
             "backoff_arcs": backoff, "short_history_ngrams": shortened}
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


# ------------------------------------------------------------------------------ LG, HLG
class UnkSpelling:
    """How an open-vocabulary graph spells ``<unk>``: a word-initial piece (``▁...``) followed by
    any number of continuation pieces, each piece adding ``penalty`` (natural log, <= 0)."""

    def __init__(self, unk_token: int, starts: Sequence[int], conts: Sequence[int], penalty: float = 0.0):
        if not starts:
            raise ValueError("spelling <unk> needs word-initial tokens")
        self.unk_token, self.starts, self.conts, self.penalty = int(unk_token), list(starts), list(conts), float(penalty)


def expand_unk(LG: k2.Fsa, spell: UnkSpelling) -> k2.Fsa:
    """Replace each arc of LG labelled ``spell.unk_token`` (``#unk``, the pronunciation of ``<unk>``)
    by a token loop: from the arc's source, a word-initial piece to the arc's destination (a
    one-piece word) or to a new state, one per destination, which loops on continuation pieces
    and leaves for the destination on one. The first piece carries the arc's score, word labels
    and LM score; every piece adds ``spell.penalty``. (Keep the destinations few, e.g. G built
    with ``short_history="<unk>"``: the loops of each destination, composed with H, cost about
    vocabulary x continuation pieces arcs.) Done after determinization (like Kaldi's unk
    model put into HCLG by replacement): ``L o G`` with the loop inside would not be
    determinizable, a spelled word and a lexicon word of the same tokens never merging."""
    arcs = LG.arcs.values()[:, :3].tolist()
    scores = LG.scores.detach().tolist()
    lm = LG.lm_scores.detach().tolist() if hasattr(LG, "lm_scores") else [0.0] * len(scores)
    aux = LG.aux_labels
    aux_lists = aux.tolist() if isinstance(aux, k2.RaggedTensor) else [[int(a)] if a > 0 else [] for a in aux.tolist()]
    unk = [i for i, a in enumerate(arcs) if a[2] == spell.unk_token]
    keep = [i for i, a in enumerate(arcs) if a[2] != spell.unk_token]
    final = LG.shape[0] - 1
    inner_of: Dict[int, int] = {}
    for i in unk:
        inner_of.setdefault(arcs[i][1], final + len(inner_of))
    M = len(inner_of)
    new_final = final + M  # the inner states of the loops take the ids from the old final state on

    def remap(x: int) -> int:
        return new_final if x == final else x

    src, dst, lab, sc, lms, auxs = [], [], [], [], [], []
    for i in keep:
        a = arcs[i]
        src.append(a[0]); dst.append(remap(a[1])); lab.append(a[2])
        sc.append(float(scores[i])); lms.append(float(lm[i])); auxs.append(aux_lists[i])
    pen = spell.penalty
    for i in unk:
        s_, d_, _ = arcs[i]
        inner = inner_of[d_]
        w, l, A = float(scores[i]) + pen, float(lm[i]), aux_lists[i]
        for t in spell.starts:
            for target in (remap(d_), inner):
                src.append(s_); dst.append(target); lab.append(t); sc.append(w); lms.append(l); auxs.append(A)
    for d_, inner in inner_of.items():
        for t in spell.conts:
            for target in (inner, remap(d_)):
                src.append(inner); dst.append(target); lab.append(t); sc.append(pen); lms.append(0.0); auxs.append([])
    order = sorted(range(len(src)), key=src.__getitem__)
    idx = torch.tensor(order, dtype=torch.long)
    t = torch.stack([torch.tensor(src)[idx], torch.tensor(dst)[idx], torch.tensor(lab)[idx],
                     torch.tensor(sc, dtype=torch.float32)[idx].view(torch.int32)], dim=1).to(torch.int32)
    out = k2.Fsa(t.contiguous())
    out.aux_labels = k2.RaggedTensor([auxs[i] for i in order], dtype=torch.int32)
    out.lm_scores = torch.tensor(lms, dtype=torch.float32)[idx]
    log.info("open vocabulary: %d #unk arcs into %d states, spelled by %d word-initial and %d continuation "
             "pieces (%d -> %d arcs)", len(unk), M, len(spell.starts), len(spell.conts), LG.num_arcs, out.num_arcs)
    return k2.arc_sort(out)


def compile_lg(L_disambig: k2.Fsa, G: k2.Fsa, first_token_disambig: int, first_word_disambig: int,
               unk: Optional[UnkSpelling] = None) -> k2.Fsa:
    """LG = det(L_disambig o G) with disambiguation symbols and epsilons removed (the steps of
    icefall's compile_hlg before H: arc-sort, compose, connect, determinize, connect,
    disambiguation symbols -> epsilon (labels >= first_token_disambig, word aux_labels >=
    first_word_disambig), remove epsilons, connect, arc-sort); with ``unk``, the ``#unk`` arcs
    are then spelled by tokens (:func:`expand_unk`). LG gets an ``lm_scores`` attribute (G's
    part of its scores; L has none), so a decoder can rescale the LM."""
    L = k2.arc_sort(L_disambig)
    G = G.clone()  # attributes are changed below: leave the caller's G alone
    if hasattr(G, "aux_labels"):
        del G.aux_labels  # an acceptor: compose matches L's words against G's labels
    if not hasattr(G, "lm_scores"):
        G.lm_scores = G.scores.clone()  # carried into LG, so that the LM can be rescaled
    G = k2.arc_sort(G)
    log.info("LG: composing L (%d arcs) and G (%d arcs)", L.num_arcs, G.num_arcs)
    LG = k2.connect(k2.compose(L, G))
    log.info("LG: determinizing LG (%d arcs)", LG.num_arcs)
    LG = k2.connect(k2.determinize(LG))
    labels = LG.labels.clone()
    disambig = labels >= first_token_disambig
    if unk is not None:
        disambig &= labels != unk.unk_token
    labels[disambig] = 0
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
    log.info("LG: removing epsilons (%d arcs)", LG.num_arcs)
    LG = k2.connect(k2.remove_epsilon(LG))
    if isinstance(LG.aux_labels, k2.RaggedTensor):
        LG.aux_labels = LG.aux_labels.remove_values_eq(0)
    if unk is not None:
        LG = expand_unk(LG, unk)
    return k2.arc_sort(LG)


def compile_hlg(H: k2.Fsa, L_disambig: k2.Fsa, G: k2.Fsa, first_token_disambig: int,
                first_word_disambig: int, unk: Optional[UnkSpelling] = None) -> k2.Fsa:
    """HLG = H o LG (:func:`compile_lg`), connected and arc-sorted. HLG carries LG's
    ``lm_scores`` and, from the composition, ``tokens`` (the CTC token that starts on an arc,
    0 elsewhere): the text of an open-vocabulary HLG's path is in its tokens."""
    LG = compile_lg(L_disambig, G, first_token_disambig, first_word_disambig, unk)
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
