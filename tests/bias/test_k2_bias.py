"""The context graph as a k2 acceptor, HB = H o B, and agreement with the prefix beam search."""

import itertools
import random

import pytest
import torch

k2 = pytest.importorskip("k2")

from sltk.bias.context_graph import ContextGraph  # noqa: E402
from sltk.bias.k2_bias import biased_ctc_graph, context_graph_fsa, k2_biased_decode  # noqa: E402
from sltk.bias.prefix_beam import prefix_beam_search  # noqa: E402
from sltk.decode.ctc import ctc_greedy, ctc_k2_decode  # noqa: E402
from sltk.decode.graphs import build_ctc_topo  # noqa: E402

A, B, C, D, X = 1, 2, 3, 4, 5


def viterbi(fsa, seq):
    """Best score of the token sequence in an acceptor (epsilons as epsilons)."""
    inter = k2.connect(k2.intersect(k2.arc_sort(fsa), k2.linear_fsa(list(seq)), treat_epsilons_specially=True))
    if inter.num_arcs == 0:
        return float("-inf")
    return float(k2.create_fsa_vec([k2.top_sort(inter)]).get_tot_scores(True, False)[0])


def arcs(fsa):
    """(src, dst, label, score) of every arc."""
    a = fsa.arcs.values()[:, :3].tolist()
    return sorted((s, d, l, round(float(w), 6)) for (s, d, l), w in zip(a, fsa.scores.tolist()))


def test_acceptor_hand_built():
    # "A B C" with boost 2, V = 6: states root 0, A 1, A B 2 ("A B C" is a leaf: back to 0)
    g = ContextGraph([([A, B, C], None)], boost=2.0)
    expect = [(0, 0, t, 0.0) for t in range(1, 6)] + [
        (0, 1, A, 2.0), (0, 3, -1, 0.0),
        (1, 0, 0, -2.0), (1, 2, B, 2.0), (1, 3, -1, -2.0),
        (2, 0, 0, -4.0), (2, 0, C, 2.0), (2, 3, -1, -4.0)]
    assert arcs(context_graph_fsa(g, 6)) == sorted(expect)
    # epsilon-free: the failure arcs are folded into the arcs that enter A and A B
    expect_free = [(0, 0, t, 0.0) for t in range(1, 6)] + [
        (0, 1, A, 2.0), (0, 3, -1, 0.0),
        (1, 2, B, 2.0), (1, 0, B, -2.0), (1, 3, -1, -2.0),
        (2, 0, C, 2.0), (2, 3, -1, -4.0)]
    fsa = context_graph_fsa(g, 6, epsilon_free=True)
    assert arcs(fsa) == sorted(expect_free)
    assert bool((fsa.labels != 0).all())


def test_viterbi_equals_the_walk_on_a_non_overlapping_catalog():
    rng = random.Random(0)
    g = ContextGraph([([A, B, C], None), ([B, D], 3.0), ([X, X], None), ([D], 0.5)], boost=1.0)
    eps, free = context_graph_fsa(g, 6), context_graph_fsa(g, 6, epsilon_free=True)
    for _ in range(150):
        seq = [rng.randrange(1, 6) for _ in range(rng.randint(1, 9))]
        expect = g.score_sequence(seq)
        assert viterbi(eps, seq) == pytest.approx(expect), seq
        assert viterbi(free, seq) == pytest.approx(expect), seq


def test_viterbi_picks_the_best_matches_where_the_walk_is_greedy():
    # "A B" and "B C D" on A B C D: the walk banks "A B" (2) and restarts; the acceptor may
    # skip "A B" and bank "B C D" (3). Documented in k2_bias: k2 never gives less bias.
    g = ContextGraph([([A, B], None), ([B, C, D], None)], boost=1.0)
    assert g.score_sequence([A, B, C, D]) == 2.0
    assert viterbi(context_graph_fsa(g, 6), [A, B, C, D]) == pytest.approx(3.0)
    assert viterbi(context_graph_fsa(g, 6, epsilon_free=True), [A, B, C, D]) == pytest.approx(3.0)
    # "B" inside the partial match "A B C" of "A B C D" is lost by the walk when X breaks it
    g = ContextGraph([([A, B, C, D], None), ([B], None)], boost=1.0)
    assert g.score_sequence([A, B, C, X]) == 0.0
    assert viterbi(context_graph_fsa(g, 6, epsilon_free=True), [A, B, C, X]) == pytest.approx(1.0)


def test_epsilon_free_equals_epsilon_acceptor_on_random_catalogs():
    rng = random.Random(1)
    for _ in range(3):
        phrases = [([rng.randrange(1, 5) for _ in range(rng.randint(1, 4))], rng.choice([None, 0.5, 2.0]))
                   for _ in range(8)]
        g = ContextGraph(phrases, boost=1.0)
        eps, free = context_graph_fsa(g, 5), context_graph_fsa(g, 5, epsilon_free=True)
        for _ in range(60):
            seq = [rng.randrange(1, 5) for _ in range(rng.randint(1, 8))]
            assert viterbi(free, seq) == pytest.approx(viterbi(eps, seq)), (phrases, seq)
            assert viterbi(eps, seq) >= g.score_sequence(seq) - 1e-6


def test_empty_catalog_decodes_exactly_like_H():
    V = 10
    H = build_ctc_topo(V - 1)
    HB = biased_ctc_graph(H, ContextGraph([], 2.0))
    lp = (torch.randn(3, 40, V, generator=torch.Generator().manual_seed(0)) * 2).log_softmax(-1)
    lens = [40, 31, 7]
    hyps, scores = ctc_k2_decode(lp, lens, H, return_scores=True)
    hyps_b, scores_b = k2_biased_decode(lp, lens, HB, return_scores=True)
    assert hyps_b == hyps
    assert torch.equal(scores_b, scores)
    assert any(len(h) > 3 for h in hyps)


def test_best_path_score_is_max_over_alignments_of_acoustics_plus_bias():
    # V = 4, T = 6: all 4096 alignments; the bias of an alignment is that of its labels
    V, T = 4, 6
    g = ContextGraph([([1, 2], None), ([3, 3, 1], 1.5)], boost=1.0)
    HB = biased_ctc_graph(build_ctc_topo(V - 1), g)
    for seed in range(3):
        lp = (torch.randn(T, V, generator=torch.Generator().manual_seed(seed)) * 1.5).log_softmax(-1)
        best, best_labels = float("-inf"), None
        for path in itertools.product(range(V), repeat=T):
            labels, prev = [], None
            for k in path:
                if k != prev and k != 0:
                    labels.append(k)
                prev = k
            s = sum(float(lp[t, k]) for t, k in enumerate(path)) + g.score_sequence(labels)
            if s > best:
                best, best_labels = s, labels
        hyps, scores = k2_biased_decode(lp[None], [T], HB, search_beam=50, output_beam=50, return_scores=True)
        assert hyps[0] == best_labels
        assert float(scores[0]) == pytest.approx(best, abs=1e-4)


def _peaky_case(seed):
    """V = 6, T = 12; greedy says 1 2 4 5, with 3 a close second to 2 (frames 3, 4)."""
    gen = torch.Generator().manual_seed(seed)
    path = [1, 1, 0, 2, 2, 0, 4, 4, 0, 5, 0, 0]
    logits = torch.randn(12, 6, generator=gen) * 0.5
    for t, k in enumerate(path):
        logits[t, k] += 4.0
    logits[3, 3] = logits[3, 2] - 0.5
    logits[4, 3] = logits[4, 2] - 0.5
    return logits.log_softmax(-1)


@pytest.mark.parametrize("seed", range(4))
def test_k2_and_prefix_beam_agree_and_biasing_changes_the_result(seed):
    lp = _peaky_case(seed)
    H = build_ctc_topo(5)
    g = ContextGraph([([1, 3, 4], None), ([5, 2], 1.0)], boost=1.5)  # "5 2" stays a partial match
    HB = biased_ctc_graph(H, g)
    plain_k2 = ctc_k2_decode(lp[None], [12], H)[0]
    plain_beam = prefix_beam_search(lp, beam=16, prune_topk=6)[0][0]
    assert plain_k2 == plain_beam == ctc_greedy(lp[None], [12])[0] == [1, 2, 4, 5]
    biased_k2 = k2_biased_decode(lp[None], [12], HB)[0]
    biased_beam = prefix_beam_search(lp, beam=16, graph=g, prune_topk=6)[0][0]
    assert biased_k2 == biased_beam == [1, 3, 4, 5]


def test_graph_given_as_acceptor_with_epsilons():
    lp = _peaky_case(0)
    H = build_ctc_topo(5)
    g = ContextGraph([([1, 3, 4], None)], boost=1.5)
    HB = biased_ctc_graph(H, context_graph_fsa(g, 6))
    assert k2_biased_decode(lp[None], [12], HB) == [[1, 3, 4, 5]]
    assert hasattr(HB, "bias_scores")


def test_larger_catalog_builds_and_decodes():
    rng = random.Random(3)
    V = 40
    g = ContextGraph([([rng.randrange(1, V) for _ in range(rng.randint(1, 5))], None) for _ in range(300)], 1.0)
    HB = biased_ctc_graph(build_ctc_topo(V - 1), g)
    lp = (torch.randn(2, 30, V, generator=torch.Generator().manual_seed(0)) * 4).log_softmax(-1)
    hyps, scores = k2_biased_decode(lp, [30, 20], HB, return_scores=True)
    greedy = ctc_greedy(lp, [30, 20])
    for i, n in enumerate([30, 20]):
        # the frame-wise best alignment is a path of HB with at least the walk's bias
        floor = float(lp[i, :n].max(-1).values.sum()) + g.score_sequence(greedy[i])
        assert float(scores[i]) >= floor - 1e-3
        assert all(0 < t < V for t in hyps[i])


def test_token_ids_beyond_the_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        context_graph_fsa(ContextGraph([([7], None)], 1.0), 6)


# ---------------------------------------------------------------- adaptive boosting (k2_adaptive_decode)

def _frames(plan, V=6):
    """Log-probs from a frame plan: each frame a dict token -> logit (others -4, blank 0 if absent)."""
    logits = torch.full((len(plan), V), -4.0)
    for t, d in enumerate(plan):
        logits[t, 0] = d.get(0, 0.0)
        for k, v in d.items():
            logits[t, k] = v
    return logits.log_softmax(-1)


# two spoken pairs, each acoustically "1 2" by a little and "3 4" close behind; blanks between
_PAIR = [{1: 4.0, 3: 3.6}, {0: 2.0}, {2: 4.0, 4: 3.6}, {0: 2.0}]
TWO_PAIRS = _PAIR + [{0: 4.0}] + _PAIR


def _best_gated(lp, g, gate, floor=5e-3):
    """Brute force: the best alignment's acoustic score + gated bias (each token gated at the
    frame where it starts), over every alignment through tokens above ``floor`` at each frame
    (the others cost 6 nats or more, more than the bias of 2 here could give back)."""
    opts = [[k for k in range(lp.shape[1]) if float(lp[t, k].exp()) > floor] for t in range(lp.shape[0])]
    best, best_labels = float("-inf"), None
    for path in itertools.product(*opts):
        labels, starts, prev = [], [], None
        for t, k in enumerate(path):
            if k != prev and k != 0:
                labels.append(k)
                starts.append(float(gate[t]))
            prev = k
        s = sum(float(lp[t, k]) for t, k in enumerate(path)) + g.score_sequence(labels, starts)
        if s > best:
            best, best_labels = s, labels
    return best_labels, best


@pytest.mark.parametrize("gate_on, expect", [((1, 1), [3, 4, 3, 4]), ((1, 0), [3, 4, 1, 2]),
                                             ((0, 1), [1, 2, 3, 4]), ((0, 0), [1, 2, 1, 2])])
def test_adaptive_k2_boosts_only_where_the_gate_is_open(gate_on, expect):
    from sltk.bias.k2_bias import k2_adaptive_decode

    lp = _frames(TWO_PAIRS)
    g = ContextGraph([([3, 4], None)], boost=1.0)
    HB = biased_ctc_graph(build_ctc_topo(5), g)
    gate = torch.tensor([gate_on[0]] * 4 + [0] + [gate_on[1]] * 4, dtype=torch.float32)
    hyp, score = k2_adaptive_decode(lp[None], [9], HB, g, gate[None], return_scores=True)
    ref, ref_score = _best_gated(lp, g, gate)
    assert hyp[0] == ref == expect
    # the prefix beam prices each token at its most probable emission frame: the same answer
    # (pricing at a prefix's first, improbable emission gave "3 4 3 4" for gates (1, 0))
    assert prefix_beam_search(lp, beam=16, graph=g, gate=gate, prune_topk=6)[0][0] == expect
    assert float(score[0]) == pytest.approx(ref_score, abs=1e-4)
    assert k2_biased_decode(lp[None], [9], HB)[0] == [3, 4, 3, 4]       # the ungated boost
    assert ctc_k2_decode(lp[None], [9], build_ctc_topo(5))[0] == [1, 2, 1, 2]


def test_adaptive_k2_refunds_what_was_granted_when_the_gate_closes():
    # "3 4 5" is a catalog phrase; the audio says "1 2 1" with "3 4 ..." close behind. The gate
    # is open on the first two tokens and closed where the match breaks: the refund must take
    # back the gated bonus (net 0), not a gate-0 share of it (which would leave +2 and pick "3 4 1").
    lp = _frames([{1: 4.0, 3: 3.6}, {0: 2.0}, {2: 4.0, 4: 3.6}, {0: 2.0}, {1: 4.0}])
    g = ContextGraph([([3, 4, 5], None)], boost=1.0)
    HB = biased_ctc_graph(build_ctc_topo(5), g)
    gate = torch.tensor([1, 1, 1, 1, 0], dtype=torch.float32)
    from sltk.bias.k2_bias import k2_adaptive_decode

    hyp, score = k2_adaptive_decode(lp[None], [5], HB, g, gate[None], return_scores=True)
    assert hyp[0] == prefix_beam_search(lp, beam=16, graph=g, gate=gate, prune_topk=6)[0][0] == [1, 2, 1]
    # its score is the acoustic best path's: no bias left over
    assert abs(float(score[0]) - float(lp.max(-1).values.sum())) < 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_adaptive_k2_with_open_or_closed_gates_is_the_biased_or_plain_search(seed):
    from sltk.bias.k2_bias import k2_adaptive_decode

    lp = _peaky_case(seed)
    H = build_ctc_topo(5)
    g = ContextGraph([([1, 3, 4], None), ([5, 2], 1.0)], boost=1.5)
    HB = biased_ctc_graph(H, g)
    ones, zeros = torch.ones(1, 12), torch.zeros(1, 12)
    assert k2_adaptive_decode(lp[None], [12], HB, g, ones) == k2_biased_decode(lp[None], [12], HB) == [[1, 3, 4, 5]]
    assert k2_adaptive_decode(lp[None], [12], HB, g, zeros) == ctc_k2_decode(lp[None], [12], H) == [[1, 2, 4, 5]]
    # a threshold above every gate closes them all
    assert k2_adaptive_decode(lp[None], [12], HB, g, ones * 0.4, gate_threshold=0.5) == [[1, 2, 4, 5]]
    with pytest.raises(ValueError, match="gates must have shape"):
        k2_adaptive_decode(lp[None], [12], HB, g, torch.ones(12))
