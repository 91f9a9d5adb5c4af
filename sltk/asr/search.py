"""Transducer search: greedy, modified beam search (batched) and k2 fast beam search.

All take the encoder output ``enc`` (N, T, C) with lengths and return token-id lists.
``modified`` beam search emits at most one symbol per frame (icefall's variant);
``fast_beam_search`` runs k2's lattice-based RNN-T decoding (k2.RnntDecodingStreams) over a
decoding graph (the trivial graph over all tokens, or an LG graph to constrain the output)
and takes the best path of the lattice; it needs the stateless prediction network, whose
context is finite.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from sltk.asr.model import Transducer


def _update_state(decoder, state, idx: torch.Tensor, new):
    """Write the states ``new`` of hypotheses ``idx`` into the batched ``state``."""
    if isinstance(state, torch.Tensor):
        state = state.clone()
        state[idx] = new
        return state
    h, c, o = (s.clone() for s in state)
    h[:, idx], c[:, idx], o[idx] = new
    return (h, c, o)


@torch.no_grad()
def greedy_search(model: Transducer, enc: torch.Tensor, enc_lens: torch.Tensor,
                  max_sym_per_frame: int = 3) -> List[List[int]]:
    """Batched greedy search; up to ``max_sym_per_frame`` symbols per frame."""
    n = enc.size(0)
    blank = model.blank_id
    dec = model.decoder
    state = dec.init_state(n, enc.device)
    dec_out = model.joiner.decoder_proj(dec.output(state))
    enc_p = model.joiner.encoder_proj(enc)
    hyps: List[List[int]] = [[] for _ in range(n)]
    for t in range(enc.size(1)):
        active = t < enc_lens
        for _ in range(max_sym_per_frame):
            logits = model.joiner(enc_p[:, t], dec_out, project_input=False)
            y = logits.argmax(-1)
            emit = active & (y != blank)
            if not emit.any():
                break
            idx = emit.nonzero().squeeze(1)
            sub = dec.select_state(state, idx)
            out, new = dec.step(y[idx], sub)
            state = _update_state(dec, state, idx, new)
            dec_out = dec_out.clone()
            dec_out[idx] = model.joiner.decoder_proj(out)
            for i in idx.tolist():
                hyps[i].append(int(y[i]))
    return hyps


@torch.no_grad()
def modified_beam_search(model: Transducer, enc: torch.Tensor, enc_lens: torch.Tensor,
                         beam: int = 4) -> List[List[int]]:
    """Beam search with at most one symbol per frame, batched over utterances and hypotheses.
    Hypotheses with the same token sequence are merged (their probabilities added)."""
    n = enc.size(0)
    blank = model.blank_id
    dec = model.decoder
    enc_p = model.joiner.encoder_proj(enc)
    # per utterance: list of hypotheses (tokens, log-prob); batched states for all hypotheses
    state = dec.init_state(n, enc.device)
    outs = model.joiner.decoder_proj(dec.output(state))
    hyps: List[List[Tuple[Tuple[int, ...], float]]] = [[((), 0.0)] for _ in range(n)]
    for t in range(enc.size(1)):
        owners = [b for b in range(n) for _ in hyps[b]]
        owner_t = torch.tensor(owners, device=enc.device)
        logp = model.joiner(enc_p[owner_t, t], outs, project_input=False).log_softmax(-1)  # (H, V)
        scores = logp + torch.tensor([lp for b in range(n) for _, lp in hyps[b]], device=enc.device)[:, None]
        v = logp.size(1)
        new_hyps: List[List[Tuple[Tuple[int, ...], float]]] = []
        keep_idx: List[int] = []         # source hypothesis of every new hypothesis
        keep_tok: List[int] = []         # token it adds (blank: none)
        start = 0
        for b in range(n):
            h = len(hyps[b])
            if t >= int(enc_lens[b]):  # finished: carry over unchanged
                new_hyps.append(hyps[b])
                keep_idx += range(start, start + h)
                keep_tok += [blank] * h
                start += h
                continue
            flat = scores[start: start + h].reshape(-1)
            top = flat.topk(min(beam, flat.numel()))
            merged: Dict[Tuple[int, ...], int] = {}
            cand: List[Tuple[Tuple[int, ...], float]] = []
            for s, k in zip(top.values.tolist(), top.indices.tolist()):
                src, tok = divmod(k, v)
                ys = hyps[b][src][0] + ((tok,) if tok != blank else ())
                if ys in merged:  # same sequence reached twice: add probabilities
                    j = merged[ys]
                    cand[j] = (ys, float(torch.logaddexp(torch.tensor(cand[j][1]), torch.tensor(s))))
                    continue
                merged[ys] = len(cand)
                cand.append((ys, s))
                keep_idx.append(start + src)
                keep_tok.append(tok)
            new_hyps.append(cand)
            start += h
        idx = torch.tensor(keep_idx, device=enc.device)
        tok = torch.tensor(keep_tok, device=enc.device)
        state = dec.select_state(state, idx)
        outs = outs[idx]
        emit = (tok != blank).nonzero().squeeze(1)
        if emit.numel():
            out, new = dec.step(tok[emit], dec.select_state(state, emit))
            state = _update_state(dec, state, emit, new)
            outs = outs.clone()
            outs[emit] = model.joiner.decoder_proj(out)
        hyps = new_hyps
    return [list(max(h, key=lambda x: x[1])[0]) for h in hyps]


@torch.no_grad()
def fast_beam_search(model: Transducer, enc: torch.Tensor, enc_lens: torch.Tensor,
                     graph=None, beam: float = 4.0, max_states: int = 32, max_contexts: int = 8,
                     use_word_labels: bool = False, allow_partial: Optional[bool] = None) -> List[List[int]]:
    """k2 fast beam search. ``graph``: a decoding graph (k2.Fsa) over tokens; None = the trivial
    graph (any token sequence). With ``use_word_labels`` (an LG graph) word ids are returned.
    ``allow_partial`` (default: when a graph is given): a stream that reached no final state of
    the graph on its last frame gives its best partial path; without it, an empty hypothesis."""
    import k2

    if model.cfg.decoder != "stateless":
        raise ValueError("fast beam search needs the stateless prediction network (finite context)")
    vocab = model.cfg.vocab_size
    partial = graph is not None if allow_partial is None else allow_partial
    if graph is None:
        graph = k2.trivial_graph(vocab - 1, device=enc.device)
    cfg = k2.RnntDecodingConfig(vocab_size=vocab, decoder_history_len=model.cfg.context_size,
                                beam=beam, max_states=max_states, max_contexts=max_contexts)
    n = enc.size(0)
    streams = k2.RnntDecodingStreams([k2.RnntDecodingStream(graph) for _ in range(n)], cfg)
    enc_p = model.joiner.encoder_proj(enc)
    # k2 needs every stream to take every frame: pad frames of shorter utterances are decoded
    # but format_output reads each stream's lattice at its own length.
    for t in range(enc.size(1)):
        shape, contexts = streams.get_contexts()
        contexts = contexts.to(torch.int64)
        dec_out = model.joiner.decoder_proj(model.decoder.output(contexts))
        row = shape.row_ids(1).to(torch.int64)
        logp = model.joiner(enc_p[row, t], dec_out, project_input=False).log_softmax(-1)
        streams.advance(logp)
    streams.terminate_and_flush_to_streams()
    # With a graph (LG), a hypothesis that has not reached a word end on the last frame would
    # leave the lattice without a final state and the utterance empty: keep such partial paths.
    lattice = streams.format_output(enc_lens.tolist(), allow_partial=partial)
    best = k2.shortest_path(lattice, use_double_scores=True)
    from sltk.decode.ctc import _path_symbols

    labels_attr = "aux_labels" if use_word_labels and hasattr(best, "aux_labels") else "labels"
    return _path_symbols(best, getattr(best, labels_attr)).tolist()


METHODS = ("greedy", "modified_beam", "fast_beam")


def search(model: Transducer, enc: torch.Tensor, enc_lens: torch.Tensor, method: str,
           beam: int = 4, graph=None, **kw) -> List[List[int]]:
    if method == "greedy":
        return greedy_search(model, enc, enc_lens, **kw)
    if method == "modified_beam":
        return modified_beam_search(model, enc, enc_lens, beam=beam)
    if method == "fast_beam":
        return fast_beam_search(model, enc, enc_lens, graph=graph, beam=float(beam), **kw)
    raise ValueError(f"unknown search method {method!r} (one of {', '.join(METHODS)})")
