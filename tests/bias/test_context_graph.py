"""ContextGraph: Aho-Corasick over token ids, bonuses and refunds computed by hand."""

import random

import pytest

from sltk.bias.context_graph import ContextGraph

A, B, C, D, X, Y = 1, 2, 3, 4, 5, 6


def walk(g, tokens):
    """(deltas, final state) of a token sequence."""
    state, deltas = 0, []
    for t in tokens:
        state, d = g.forward(state, t)
        deltas.append(d)
    return deltas, state


def test_full_match_keeps_bonus():
    g = ContextGraph([([A, B, C], None)], boost=2.0)
    deltas, state = walk(g, [A, B, C])
    assert deltas == [2.0, 2.0, 2.0]
    assert state == 0  # a leaf phrase end goes back to the root
    assert g.finalize(state) == 0.0
    assert g.score_sequence([A, B, C]) == 6.0
    assert g.score_sequence([X, A, B, C, X]) == 6.0
    assert g.score_sequence([A, B, C, A, B, C]) == 12.0


def test_broken_match_is_refunded():
    g = ContextGraph([([A, B, C], None)], boost=2.0)
    deltas, state = walk(g, [A, B, X])
    assert deltas == [2.0, 2.0, -4.0]
    assert state == 0 and sum(deltas) == 0.0
    # A B A B C: the second A restarts the match (failure to the root, then the arc A)
    deltas, state = walk(g, [A, B, A, B, C])
    assert deltas == [2.0, 2.0, -2.0, 2.0, 2.0]
    assert sum(deltas) == 6.0


def test_finalize_refunds_dangling_partial_match():
    g = ContextGraph([([A, B, C], None)], boost=2.0)
    deltas, state = walk(g, [X, A, B])
    assert deltas == [0.0, 2.0, 2.0]
    assert g.finalize(state) == -4.0
    assert g.score_sequence([X, A, B]) == 0.0


def test_failure_link_to_suffix():
    # "A B X" and "B C D": the failure link of state "A B" is state "B".
    g = ContextGraph([([A, B, X], None), ([B, C, D], None)], boost=2.0)
    ab = g.children[g.children[0][A]][B]
    assert g.fail[ab] == g.children[0][B]
    assert g.fail[g.children[0][A]] == 0
    deltas, state = walk(g, [A, B, C, D])
    # A +2, B +2 (pending 4), C: "A B" fails to "B", then "B C": node 4 - 4 = 0, D +2
    assert deltas == [2.0, 2.0, 0.0, 2.0]
    assert state == 0 and sum(deltas) == 6.0


def test_overlapping_phrases_do_not_overlap_matches():
    g = ContextGraph([([A, B, C], None), ([B, C, D], None)], boost=2.0)
    # "A B C" is banked and matching restarts after it: D alone matches nothing.
    assert walk(g, [A, B, C, D]) == ([2.0, 2.0, 2.0, 0.0], 0)
    # A B B C D: the second B breaks "A B" (refund 4), falls back to the root and starts "B"
    assert walk(g, [A, B, B, C, D]) == ([2.0, 2.0, -2.0, 2.0, 2.0], 0)
    assert g.score_sequence([B, C, D]) == 6.0


def test_per_phrase_boosts():
    g = ContextGraph([([A, B], 3.0), ([C], None), ([D, X], 0.5)], boost=1.0)
    assert walk(g, [A, B, C]) == ([3.0, 3.0, 1.0], 0)
    assert g.score_sequence([D, X, A, B]) == 7.0
    assert g.score_sequence([D, A]) == 0.0


def test_shared_prefix_takes_largest_boost_and_inner_phrase_end_is_kept():
    g = ContextGraph([([A, B, C], 1.0), ([A, B], 3.0)], boost=1.0)
    ab = g.children[g.children[0][A]][B]
    assert g.node_score[ab] == 6.0 and g.is_end[ab] and not g.is_leaf_end[ab]
    assert walk(g, [A, B, C]) == ([3.0, 3.0, 1.0], 0)
    # "A B" matched inside the longer phrase: when that breaks, "A B" is kept
    deltas, state = walk(g, [A, B, X])
    assert deltas == [3.0, 3.0, 0.0] and state == 0
    assert g.finalize(ab) == 0.0
    assert g.score_sequence([A, B]) == 6.0


def test_phrase_ending_on_the_failure_chain_is_kept():
    # Reaching "X A B" of "X A B Y", the phrase "A B" has been said: it survives the break.
    g = ContextGraph([([X, A, B, Y], None), ([A, B], None)], boost=1.0)
    xab = g.children[g.children[g.children[0][X]][A]][B]
    assert g.out[xab] == g.children[g.children[0][A]][B]
    deltas, state = walk(g, [X, A, B, C])
    assert deltas == [1.0, 1.0, 1.0, -1.0] and state == 0
    assert g.finalize(xab) == -1.0
    assert g.score_sequence([X, A, B]) == 2.0
    assert g.score_sequence([X, A, B, Y]) == 4.0


def test_empty_catalog():
    for g in (ContextGraph([], 2.0), ContextGraph([([], 3.0)], 2.0)):
        assert g.is_empty and len(g) == 0
        for t in (1, 2, 7, 499):
            assert g.forward(0, t) == (0, 0.0)
        assert g.finalize(0) == 0.0
        assert g.score_sequence([1, 2, 3], gates=[1.0, 0.5, 0.0]) == 0.0


def test_bad_phrases():
    with pytest.raises(ValueError, match="blank"):
        ContextGraph([([1, 0, 2], None)], 1.0)
    with pytest.raises(ValueError, match="finite"):
        ContextGraph([([1], float("nan"))], 1.0)
    with pytest.raises(ValueError, match="finite"):
        ContextGraph([], float("inf"))
    with pytest.raises(ValueError, match="token_ids, boost"):
        ContextGraph([[1, 2, 3]], 1.0)


def test_gated_bonus_and_exact_refunds():
    g = ContextGraph([([A, B, C], None)], boost=2.0)
    assert g.score_sequence([A, B, C], gates=[0.5, 1.0, 1.0]) == 5.0
    # granted 0.5 * 2 + 0.25 * 2 = 1.5, refunded exactly at a frame with gate 1
    state, gates, total = 0, (), 0.0
    for t, x, expect in [(A, 0.5, 1.0), (B, 0.25, 0.5), (X, 1.0, -1.5)]:
        state, gates, d = g.forward_gated(state, gates, t, x)
        assert d == expect
        total += d
    assert state == 0 and gates == () and total == 0.0
    assert g.finalize_gated(*g.forward_gated(0, (), A, 0.3)[:2]) == pytest.approx(-0.6)


def test_gated_failure_keeps_gates_of_surviving_tokens():
    g = ContextGraph([([A, B, X], None), ([B, C, D], None)], boost=2.0)
    state, gates, deltas = 0, (), []
    for t, x in [(A, 0.5), (B, 0.25), (C, 1.0), (D, 1.0)]:
        state, gates, d = g.forward_gated(state, gates, t, x)
        deltas.append(d)
    # "B C D" gets 2 * (0.25 + 1 + 1) = 4.5: B keeps the gate of its own frame
    assert deltas == [1.0, 0.5, 1.0, 2.0]
    assert sum(deltas) == 4.5


def _random_catalog(rng, n, vocab, max_len=5, boosts=True):
    return [([rng.randrange(1, vocab) for _ in range(rng.randint(1, max_len))],
             rng.choice([None, 0.5, 1.5, 3.0]) if boosts else None) for _ in range(n)]


def test_gates_of_one_equal_nominal_walk():
    rng = random.Random(0)
    g = ContextGraph(_random_catalog(rng, 40, 6), boost=1.0)
    for _ in range(200):
        seq = [rng.randrange(1, 7) for _ in range(rng.randint(0, 12))]
        state, gstate, gates = 0, 0, ()
        for t in seq:
            state, d = g.forward(state, t)
            gstate, gates, dg = g.forward_gated(gstate, gates, t, 1.0)
            assert gstate == state and dg == pytest.approx(d)
            assert g.granted(gstate, gates) == pytest.approx(g.node_score[state])
        assert g.score_sequence(seq, [1.0] * len(seq)) == pytest.approx(g.score_sequence(seq))


def test_failure_links_are_longest_proper_suffix():
    rng = random.Random(1)
    phrases = _random_catalog(rng, 300, 5, max_len=6, boosts=False)
    g = ContextGraph(phrases, boost=1.0)
    string = {0: ()}
    for s in range(g.num_states):
        for t, n in g.children[s].items():
            string[n] = string[s] + (t,)
    state_of = {v: k for k, v in string.items()}
    ends = {tuple(p) for p, _ in phrases}
    for s, w in string.items():
        if s == 0:
            continue
        suffix = next(w[i:] for i in range(1, len(w) + 1) if w[i:] in state_of)
        assert g.fail[s] == state_of[suffix]
        end_suffixes = [w[i:] for i in range(len(w)) if w[i:] in ends]
        assert g.out[s] == (state_of[end_suffixes[0]] if end_suffixes else -1)
        assert g.node_score[s] == len(w)


def test_large_catalog_every_phrase_scores_its_length():
    rng = random.Random(2)
    phrases = [[rng.randrange(1, 500) for _ in range(rng.randint(2, 6))] for _ in range(10000)]
    g = ContextGraph([(p, None) for p in phrases], boost=1.5)
    assert len(g) == 10000
    assert g.num_states <= 1 + sum(len(p) for p in phrases)
    for p in phrases:
        # the walk follows the phrase's own trie path: never a failure, full bonus
        assert g.score_sequence(p) == pytest.approx(1.5 * len(p))
