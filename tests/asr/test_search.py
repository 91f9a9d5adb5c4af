"""Searches agree with each other and with a brute-force best path on a random tiny model."""

import itertools

import pytest
import torch

from sltk.asr import search as S
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer

SMALL = dict(feat_dim=20, vocab_size=5, encoder="lstm", encoder_dim=16, lstm_hidden=16, num_encoder_layers=1,
             decoder_dim=16, joiner_dim=16, dropout=0.0)


def model_and_enc(decoder="stateless", seed=0, t=6):
    torch.manual_seed(seed)
    m = Transducer(ModelConfig(decoder=decoder, **SMALL)).eval()
    enc = torch.randn(3, t, 16) * 2
    lens = torch.tensor([t, t - 2, t - 1])
    return m, enc, lens


def path_logprob(m, enc_t, seq_tokens_per_frame):
    """Log-prob of one alignment with at most one symbol per frame."""
    dec = m.decoder
    state = dec.init_state(1)
    out = dec.output(state)
    total = 0.0
    for t, tok in enumerate(seq_tokens_per_frame):
        lp = m.joiner(enc_t[t][None], out).log_softmax(-1)[0]
        if tok is None:
            total += float(lp[0])
        else:
            total += float(lp[tok])
            out, state = dec.step(torch.tensor([tok]), state)
            out = out
    return total


@pytest.mark.parametrize("decoder", ["stateless", "lstm"])
def test_modified_beam_with_huge_beam_finds_best_sequence(decoder):
    """With one symbol per frame and a beam covering all hypotheses, the beam search returns
    the sequence of highest total probability (summed over alignments) — brute force check."""
    m, enc, lens = model_and_enc(decoder, t=4)
    got = S.modified_beam_search(m, enc[:1], lens[:1], beam=10_000)[0]
    seq_prob = {}
    for align in itertools.product([None, 1, 2, 3, 4], repeat=4):
        lp = path_logprob(m, enc[0], align)
        seq = tuple(a for a in align if a is not None)
        seq_prob[seq] = float(torch.logaddexp(torch.tensor(seq_prob.get(seq, float("-inf"))), torch.tensor(lp)))
    best = max(seq_prob, key=seq_prob.get)
    assert tuple(got) == best


@pytest.mark.parametrize("decoder", ["stateless", "lstm"])
def test_greedy_batched_equals_unbatched(decoder):
    m, enc, lens = model_and_enc(decoder)
    batched = S.greedy_search(m, enc, lens)
    for i in range(3):
        assert S.greedy_search(m, enc[i: i + 1, : lens[i]], lens[i: i + 1]) == [batched[i]]


def test_modified_beam_batched_equals_unbatched():
    m, enc, lens = model_and_enc("lstm")
    batched = S.modified_beam_search(m, enc, lens, beam=3)
    for i in range(3):
        assert S.modified_beam_search(m, enc[i: i + 1, : lens[i]], lens[i: i + 1], beam=3) == [batched[i]]


def test_fast_beam_search_finds_best_path():
    """k2 fast beam search returns the single best alignment (Viterbi over the lattice); in k2's
    lattice the last frame of an utterance cannot emit a symbol (its final arc consumes it),
    so the brute force runs over alignments that end with blank."""
    pytest.importorskip("k2")
    m, enc, lens = model_and_enc("stateless", t=4)
    got = S.fast_beam_search(m, enc[:1], lens[:1], beam=50.0, max_states=1000, max_contexts=1000)[0]
    best, best_lp = None, float("-inf")
    for align in itertools.product([None, 1, 2, 3, 4], repeat=3):
        align = align + (None,)
        lp = path_logprob(m, enc[0], align)
        if lp > best_lp:
            best, best_lp = tuple(a for a in align if a is not None), lp
    assert tuple(got) == best
