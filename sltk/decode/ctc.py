"""CTC decoding of log-probabilities ``(N, T, V)``: greedy, and k2 lattice search over H or HLG.

* :func:`ctc_greedy`: frame-wise argmax, repeats merged, blanks removed (no k2).
* :func:`ctc_k2_decode`: :func:`get_lattice` (``k2.intersect_dense_pruned`` of the graph
  with a ``k2.DenseFsaVec``) followed by :func:`one_best` (best path) or :func:`nbest`
  (sample paths from the lattice, rescore each distinct output sequence on the lattice,
  keep the best). With H the outputs are token ids, with HLG word ids.
* :func:`nbest_lists`: a lattice's n-best candidates with their lattice scores, for a second
  pass (``ctc_HLG_rnnt`` of :mod:`sltk.asr.decode` rescores them with the transducer).
* :func:`hyps_to_text`: token ids -> text with the BPE model, word ids -> text via words.txt.

k2 is imported inside the functions that need it, so this module imports without k2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import torch

if TYPE_CHECKING:  # pragma: no cover
    import k2

    from sltk.decode.lang import Lang


def _lens_list(lens: Union[torch.Tensor, Sequence[int]], n: int, t: int) -> List[int]:
    lens = lens.tolist() if isinstance(lens, torch.Tensor) else [int(x) for x in lens]
    if len(lens) != n:
        raise ValueError(f"got {len(lens)} lengths for {n} sequences")
    if any(x < 0 for x in lens):
        raise ValueError(f"negative length in {lens}")
    return lens


def ctc_greedy(logprobs: torch.Tensor, lens: Union[torch.Tensor, Sequence[int]], blank: int = 0) -> List[List[int]]:
    """Frame-wise best tokens with repeats merged and blanks removed, one list per sequence.

    Args:
      logprobs: ``(N, T, V)`` scores (log-probs or logits: only the argmax matters).
      lens: ``(N,)`` number of valid frames of each sequence.
    """
    if logprobs.dim() != 3:
        raise ValueError(f"expected (N, T, V) log-probs, got shape {tuple(logprobs.shape)}")
    N, T, _ = logprobs.shape
    lens = _lens_list(lens, N, T)
    best = logprobs.argmax(dim=-1).cpu().tolist()
    out = []
    for seq, n in zip(best, lens):
        hyp, prev = [], None
        for tok in seq[:n]:
            if tok != prev and tok != blank:
                hyp.append(tok)
            prev = tok
        out.append(hyp)
    return out


def get_lattice(
    logprobs: torch.Tensor,
    lens: Union[torch.Tensor, Sequence[int]],
    graph: "k2.Fsa",
    search_beam: float = 20.0,
    output_beam: float = 8.0,
    min_active_states: int = 30,
    max_active_states: int = 10000,
    subsampling_factor: int = 1,
    frame_idx_name: Optional[str] = None,
) -> Tuple["k2.Fsa", List[int]]:
    """Pruned intersection of a decoding graph with the log-probs.

    ``lens`` count output frames (already subsampled); lengths up to
    ``subsampling_factor - 1`` frames beyond T are truncated (rounding of subsampled lengths).
    Sequences of length 0 get no lattice. Returns ``(lattice, index)`` where lattice FSA i
    belongs to sequence ``index[i]``. ``frame_idx_name``: an attribute of that name on the
    lattice's arcs gives each arc's frame (the final arcs: the number of frames).
    """
    import k2

    if logprobs.dim() != 3:
        raise ValueError(f"expected (N, T, V) log-probs, got shape {tuple(logprobs.shape)}")
    N, T, _ = logprobs.shape
    lens = _lens_list(lens, N, T)
    index = [i for i, n in enumerate(lens) if n > 0]
    if not index:
        return None, []
    allow = max(subsampling_factor - 1, 0)
    for i in index:
        if lens[i] > T + allow:
            raise ValueError(f"length {lens[i]} of sequence {i} exceeds the {T} frames of log-probs")
    segs = torch.tensor([[i, 0, min(lens[i], T)] for i in index], dtype=torch.int32)
    dense = k2.DenseFsaVec(logprobs.detach().float(), segs, allow_truncate=allow)
    if graph.device != logprobs.device:
        graph = graph.to(logprobs.device)
    if len(graph.shape) == 2:  # a single FSA: shared by all sequences
        graph = k2.create_fsa_vec([graph])
    elif graph.shape[0] != 1:  # one graph per sequence
        if graph.shape[0] != N:
            raise ValueError(f"got {graph.shape[0]} graphs for {N} sequences")
        if len(index) != N:
            graph = k2.index_fsa(graph, torch.tensor(index, dtype=torch.int32, device=graph.device))
    lattice = k2.intersect_dense_pruned(
        graph, dense, search_beam=search_beam, output_beam=output_beam,
        min_active_states=min_active_states, max_active_states=max_active_states,
        frame_idx_name=frame_idx_name,
    )
    return lattice, index


def _output_labels(fsa: "k2.Fsa", output: str = "words"):
    """The output symbols of an FSA: aux_labels if it has them, else labels; with
    ``output="tokens"``, the ``tokens`` attribute (HLG's CTC token on each arc where one starts)."""
    if output == "tokens":
        if not hasattr(fsa, "tokens"):
            raise ValueError("the graph has no 'tokens' attribute (compile HLG with inner_labels='tokens')")
        return fsa.tokens
    return fsa.aux_labels if hasattr(fsa, "aux_labels") else fsa.labels


def _path_symbols(best: "k2.Fsa", labels=None) -> "k2.RaggedTensor":
    """Output symbols (> 0) along each FSA of a vector of linear FSAs: ragged [fsa][symbol]
    (``labels``: the arcs' symbols, by default the output labels). An FSA without arcs (an empty
    lattice's best path) gives no symbols."""
    import k2

    labels = _output_labels(best) if labels is None else labels
    arcs_shape = best.arcs.shape()  # [fsa][state][arc]
    if isinstance(labels, k2.RaggedTensor):  # [arc][symbol] (after determinization)
        shape = arcs_shape.compose(labels.shape).remove_axis(1).remove_axis(1)
        ragged = k2.RaggedTensor(shape, labels.values)
    else:
        ragged = k2.RaggedTensor(arcs_shape.remove_axis(1), labels.contiguous())
    return ragged.remove_values_leq(0)


def one_best(lattice: "k2.Fsa", output: str = "words") -> Tuple[List[List[int]], torch.Tensor]:
    """The best path of each lattice: its output symbols (``output``: see :func:`ctc_k2_decode`)
    and its score (natural log)."""
    import k2

    best = k2.shortest_path(lattice, use_double_scores=True)
    scores = best.get_tot_scores(use_double_scores=True, log_semiring=False)
    return _path_symbols(best, _output_labels(best, output)).tolist(), scores.float().cpu()


def nbest_lists(
    lattice: "k2.Fsa",
    num_paths: int = 100,
    nbest_scale: float = 0.5,
    log_semiring: bool = True,
    output: str = "words",
    prune_prob: float = 0.0,
) -> List[List[Tuple[List[int], float]]]:
    """The n-best candidates of each lattice, for :func:`nbest` or a second pass to rescore:
    sample ``num_paths`` paths (scores scaled by ``nbest_scale`` to flatten the distribution), add
    the best path, take the distinct output sequences and score each on the lattice (the sum over
    its alignments if ``log_semiring``, else the best alignment as in icefall's nbest_decoding).

    ``prune_prob`` > 0: arcs whose posterior is below it are removed first (a lattice of a large
    HLG can hold 10^5-10^6 arcs, and the candidates' intersection with it then needs gigabytes);
    the candidates are then scored on the pruned lattice.

    ``output="tokens"``: the candidates are distinct token sequences (an open-vocabulary HLG,
    whose ``<unk>`` words are only spelled by the tokens).

    Returns, per lattice, its candidates' output symbols with their lattice scores (natural
    log), best first; an empty list for a lattice with no path.
    """
    import k2

    n = lattice.shape[0]
    if prune_prob > 0:
        lattice = k2.connect(k2.prune_on_arc_post(lattice, prune_prob, True))
    saved = lattice.scores.detach().clone()  # .scores is a view of the arcs: keep a copy
    try:
        lattice.scores = saved * nbest_scale
        paths = k2.random_paths(lattice, num_paths=num_paths, use_double_scores=True)  # [fsa][path][arc]
    finally:
        lattice.scores = saved
    labels = _output_labels(lattice, output)
    if isinstance(labels, k2.RaggedTensor):
        seqs = labels.index(paths)  # [fsa][path][arc][symbol]
        seqs = seqs.remove_axis(seqs.num_axes - 2)
    else:
        seqs = k2.ragged.index(labels.contiguous(), paths)  # [fsa][path][symbol]
    seqs = seqs.remove_values_leq(0)
    # The best path is always a candidate, so n-best never scores below 1-best.
    shortest = k2.shortest_path(lattice, use_double_scores=True)
    best = _path_symbols(shortest, _output_labels(shortest, output))  # [fsa][symbol]
    best = k2.RaggedTensor(k2.ragged.regular_ragged_shape(n, 1).to(best.device).compose(best.shape),
                           best.values)  # [fsa][1][symbol]
    seqs = k2.ragged.cat([best, seqs], axis=1)
    uniq, _, _ = seqs.unique(need_num_repeats=False, need_new2old_indexes=False)  # [fsa][seq][symbol]
    seq_to_fsa = uniq.shape.row_ids(1)
    flat = uniq.remove_axis(0)  # [seq][symbol]
    out: List[List[Tuple[List[int], float]]] = [[] for _ in range(n)]
    if flat.dim0 == 0:
        return out
    cand = k2.add_epsilon_self_loops(k2.linear_fsa(flat.to(lattice.device)))
    # Match candidates against the lattice's output symbols: invert when it has aux_labels.
    if output == "tokens":  # an acceptor of the tokens (-1 on the final arcs, as H's outputs)
        inv = lattice.clone()
        inv.labels = lattice.tokens.clone()
        del inv.aux_labels
    else:
        inv = k2.invert(lattice) if hasattr(lattice, "aux_labels") else lattice
    inv = k2.arc_sort(inv)
    inv.scores = inv.scores.detach()
    inter = k2.intersect_device(inv, cand, b_to_a_map=seq_to_fsa.to(torch.int32), sorted_match_a=True)
    inter = k2.top_sort(k2.connect(inter))
    tot = inter.get_tot_scores(use_double_scores=True, log_semiring=log_semiring)
    owner = seq_to_fsa.cpu().tolist()
    for seq, f, sc in zip(flat.tolist(), owner, tot.cpu().tolist()):
        if sc != float("-inf"):
            out[f].append((seq, float(sc)))
    for lst in out:
        lst.sort(key=lambda x: -x[1])  # stable: ties keep the candidates' order
    return out


def nbest(lattice: "k2.Fsa", **kwargs) -> Tuple[List[List[int]], torch.Tensor]:
    """N-best decoding: the best of each lattice's :func:`nbest_lists` candidates (same options).
    Returns the output symbols and their scores (natural log; -inf when a lattice is empty)."""
    lists = nbest_lists(lattice, **kwargs)
    hyps = [lst[0][0] if lst else [] for lst in lists]
    scores = torch.tensor([lst[0][1] if lst else float("-inf") for lst in lists], dtype=torch.float32)
    return hyps, scores


def ctc_k2_decode(
    logprobs: torch.Tensor,
    lens: Union[torch.Tensor, Sequence[int]],
    graph: "k2.Fsa",
    search_beam: float = 20.0,
    output_beam: float = 8.0,
    min_active_states: int = 30,
    max_active_states: int = 10000,
    subsampling_factor: int = 1,
    method: str = "1best",
    num_paths: int = 100,
    nbest_scale: float = 0.5,
    log_semiring: bool = True,
    return_scores: bool = False,
    output: str = "words",
    prune_prob: float = 0.0,
) -> Union[List[List[int]], Tuple[List[List[int]], torch.Tensor]]:
    """Decode CTC log-probs with a k2 graph: token ids with H, word ids with HLG.

    Args:
      logprobs: ``(N, T, V)`` log-softmax outputs (V = the graph's token vocabulary).
      lens: ``(N,)`` valid output frames per sequence.
      graph: H (``k2.ctc_topo``) or HLG, arc-sorted, e.g. ``load_lang(d).graph("HLG", device)``
        (load it on the log-probs' device once: a graph elsewhere is copied on every call),
        or an FsaVec of one graph per sequence.
      search_beam, output_beam, min_active_states, max_active_states: pruning of
        ``k2.intersect_dense_pruned``.
      subsampling_factor: lengths may exceed T by up to ``subsampling_factor - 1`` frames.
      method: ``1best`` (best path of the lattice) or ``nbest`` (see :func:`nbest`).
      num_paths, nbest_scale, log_semiring, prune_prob: n-best settings (:func:`nbest`).
      return_scores: also return the ``(N,)`` scores of the hypotheses (-inf: no path).
      output: ``words`` (the graph's output symbols: word ids of HLG, token ids of H) or
        ``tokens`` (HLG's token sequence: the text of an open-vocabulary HLG, whose ``<unk>``
        words are spelled only by their tokens).

    Sequences of length 0, and those whose lattice is empty (everything pruned), get ``[]``.
    """
    if output not in ("words", "tokens"):
        raise ValueError(f"output must be 'words' or 'tokens', got {output!r}")
    if method not in ("1best", "nbest"):
        raise ValueError(f"method must be '1best' or 'nbest', got {method!r}")
    N = logprobs.shape[0]
    hyps: List[List[int]] = [[] for _ in range(N)]
    scores = torch.full((N,), float("-inf"))
    lattice, index = get_lattice(logprobs, lens, graph, search_beam, output_beam,
                                 min_active_states, max_active_states, subsampling_factor)
    if index:
        if method == "1best":
            h, s = one_best(lattice, output)
        else:
            h, s = nbest(lattice, num_paths=num_paths, nbest_scale=nbest_scale, log_semiring=log_semiring,
                         output=output, prune_prob=prune_prob)
        for j, i in enumerate(index):
            hyps[i] = h[j]
            scores[i] = s[j]
    return (hyps, scores) if return_scores else hyps


def hyps_to_text(hyps: Sequence[Sequence[int]], lang: "Lang", kind: str = "tokens") -> List[str]:
    """Texts of decoded ids: ``kind="tokens"`` via the BPE model, ``"words"`` via words.txt."""
    if kind == "tokens":
        return [lang.tokens_to_text(h) for h in hyps]
    if kind == "words":
        return [lang.words_to_text(h) for h in hyps]
    raise ValueError(f"kind must be 'tokens' or 'words', got {kind!r}")
