"""CTC prefix beam search with a context graph: exact against brute force on tiny cases."""

import itertools
import math

import pytest
import torch

from sltk.bias.context_graph import ContextGraph
from sltk.bias.prefix_beam import gate_values, prefix_beam_search, prefix_beam_search_batch
from sltk.decode.ctc import ctc_greedy


def collapse(path, blank=0):
    out, prev = [], None
    for t in path:
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return tuple(out)


def brute_force(lp, graph=None):
    """Exact score of every label sequence: log-sum over its alignments + its bias."""
    T, V = lp.shape
    acc = {}
    for path in itertools.product(range(V), repeat=T):
        s = sum(float(lp[t, k]) for t, k in enumerate(path))
        y = collapse(path)
        acc.setdefault(y, []).append(s)
    out = {}
    for y, scores in acc.items():
        m = max(scores)
        out[y] = m + math.log(sum(math.exp(s - m) for s in scores))
        if graph is not None:
            out[y] += graph.score_sequence(y)
    return out


def random_lp(T, V, seed, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, V, generator=g) * scale).log_softmax(-1)


@pytest.mark.parametrize("with_graph", [False, True])
def test_exact_with_a_beam_that_keeps_every_prefix(with_graph):
    # V = 3, T = 5: 25 label sequences have an alignment, a beam of 64 prunes nothing
    graph = ContextGraph([([1, 2], 1.0), ([2, 2, 1], 2.5)], boost=1.0) if with_graph else None
    for seed in range(3):
        lp = random_lp(5, 3, seed)
        exact = brute_force(lp, graph)
        nbest = prefix_beam_search(lp, beam=64, graph=graph, prune_topk=3)
        assert len(nbest) == len(exact) == 25
        for ids, score in nbest:
            assert score == pytest.approx(exact[tuple(ids)], abs=1e-9)
        best = max(exact, key=exact.get)
        assert tuple(nbest[0][0]) == best
        assert [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)


def test_bias_changes_the_hand_computed_winner():
    # One frame, P = (blank .1, a .5, b .4): "a" wins unbiased (log .5 = -0.693);
    # a phrase "b" with boost 1 gives "b" log .4 + 1 = 0.084.
    lp = torch.tensor([[0.1, 0.5, 0.4]]).log()
    plain = prefix_beam_search(lp, beam=4)
    assert [h for h, _ in plain] == [[1], [2], []]
    assert plain[0][1] == pytest.approx(math.log(0.5))
    g = ContextGraph([([2], None)], boost=1.0)
    biased = prefix_beam_search(lp, beam=4, graph=g)
    assert biased[0] == ([2], pytest.approx(math.log(0.4) + 1.0))
    # gated: 0.5 of the boost still wins (-0.416), 0.2 does not (-0.716 < -0.693)
    assert prefix_beam_search(lp, beam=4, graph=g, gate=torch.tensor([0.5]))[0][0] == [2]
    assert prefix_beam_search(lp, beam=4, graph=g, gate=torch.tensor([0.2]))[0][0] == [1]
    # below the threshold a gate gives nothing
    out = prefix_beam_search(lp, beam=4, graph=g, gate=torch.tensor([0.5]), gate_threshold=0.6)
    assert out[0] == ([1], pytest.approx(math.log(0.5)))
    assert dict((tuple(h), s) for h, s in out)[(2,)] == pytest.approx(math.log(0.4))


def test_partial_match_is_refunded_at_the_end():
    # Two frames: "a" then "b"/"c". Phrase "a b" (boost 2). "a c" gets +2 for a, -2 refund.
    lp = torch.tensor([[0.05, 0.9, 0.02, 0.03], [0.05, 0.05, 0.3, 0.6]]).log()
    g = ContextGraph([([1, 2], None)], boost=2.0)
    out = dict((tuple(h), s) for h, s in prefix_beam_search(lp, beam=32, graph=g, prune_topk=4))
    assert out[(1, 3)] == pytest.approx(math.log(0.9 * 0.6))
    assert out[(1, 2)] == pytest.approx(math.log(0.9 * 0.3) + 4.0)
    # "a" alone (a a, a -, - a): its dangling partial match is refunded
    assert out[(1,)] == pytest.approx(math.log(0.9 * 0.05 + 0.9 * 0.05 + 0.05 * 0.05))


def test_gated_refund_takes_back_what_was_granted():
    # "a" emitted at frame 0 with gate 0.5 gets +1; "c" at frame 1 (gate 1) refunds 1, not 2.
    lp = torch.tensor([[0.05, 0.9, 0.02, 0.03], [0.05, 0.05, 0.3, 0.6]]).log()
    g = ContextGraph([([1, 2], None)], boost=2.0)
    gate = torch.tensor([0.5, 1.0])
    out = dict((tuple(h), s) for h, s in prefix_beam_search(lp, beam=32, graph=g, gate=gate, prune_topk=4))
    assert out[(1, 3)] == pytest.approx(math.log(0.9 * 0.6))
    assert out[(1, 2)] == pytest.approx(math.log(0.9 * 0.3) + 0.5 * 2 + 1.0 * 2)
    assert out[(1,)] == pytest.approx(math.log(0.9 * 0.05 + 0.9 * 0.05 + 0.05 * 0.05))


def test_gates_of_one_and_zero():
    lp = random_lp(30, 8, 3)
    g = ContextGraph([([1, 2, 3], None), ([4, 5], 2.0), ([2, 6], None)], boost=1.5)
    assert prefix_beam_search(lp, beam=8, graph=g, gate=torch.ones(30)) == prefix_beam_search(lp, beam=8, graph=g)
    off = prefix_beam_search(lp, beam=8, graph=g, gate=torch.zeros(30))
    plain = prefix_beam_search(lp, beam=8)
    assert [h for h, _ in off] == [h for h, _ in plain]
    assert [s for _, s in off] == pytest.approx([s for _, s in plain])


def test_empty_graph_equals_plain_search_exactly():
    for seed in range(3):
        lp = random_lp(60, 20, seed)
        plain = prefix_beam_search(lp, beam=8)
        assert prefix_beam_search(lp, beam=8, graph=ContextGraph([], 2.0)) == plain
        assert prefix_beam_search(lp, beam=8, graph=ContextGraph([], 2.0), gate=torch.rand(60)) == plain


def test_peaky_model_matches_greedy():
    g = torch.Generator().manual_seed(7)
    N, T, V = 4, 50, 30
    best = torch.randint(0, V, (N, T), generator=g)
    best[:, ::3] = 0  # plenty of blanks, as a CTC model emits
    logits = torch.randn(N, T, V, generator=g)
    logits.scatter_(2, best.unsqueeze(-1), 8.0)
    lp = logits.log_softmax(-1)
    lens = [50, 44, 31, 0]
    greedy = ctc_greedy(lp, lens)
    nbest = prefix_beam_search_batch(lp, lens, beam=8)
    assert [n[0][0] for n in nbest] == greedy
    assert all(len(g_) > 5 for g_ in greedy[:3])


def test_batch_equals_single_calls_with_per_utterance_graphs():
    lp = torch.stack([random_lp(20, 10, s) for s in range(3)])
    graphs = [ContextGraph([([1, 2], None)], 1.0), None, ContextGraph([([3], 2.0)], 1.0)]
    gates = torch.rand(3, 20, generator=torch.Generator().manual_seed(0))
    out = prefix_beam_search_batch(lp, [20, 15, 9], beam=6, graphs=graphs, gates=gates, gate_threshold=0.3)
    for i, n in enumerate([20, 15, 9]):
        assert out[i] == prefix_beam_search(lp[i, :n], beam=6, graph=graphs[i], gate=gates[i, :n],
                                            gate_threshold=0.3)


def test_pruning_by_logprob_threshold():
    lp = torch.tensor([[0.1, 0.5, 0.4]]).log()
    out = prefix_beam_search(lp, beam=4, prune_logprob=math.log(0.45))
    assert [h for h, _ in out] == [[1], []]


def test_bad_arguments():
    lp = random_lp(5, 4, 0)
    with pytest.raises(ValueError, match="T, V"):
        prefix_beam_search(lp[None])
    with pytest.raises(ValueError, match="gate"):
        prefix_beam_search(lp, gate=torch.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prefix_beam_search(lp, gate=torch.full((5,), 2.0))
    with pytest.raises(ValueError, match="blank"):
        prefix_beam_search(lp, blank=4)
    with pytest.raises(ValueError, match="beam"):
        prefix_beam_search(lp, beam=0)
    with pytest.raises(ValueError, match="lengths"):
        prefix_beam_search_batch(lp[None], [6])


def test_gate_values_threshold_and_errors():
    assert gate_values(torch.tensor([0.2, 0.5, 0.9, 1.0]), threshold=0.5) == [0.0, 0.5, pytest.approx(0.9), 1.0]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gate_values([0.5, 1.2])
    with pytest.raises(ValueError, match="3 gate values for 2 frames"):
        gate_values([0.1, 0.2, 0.3], num_frames=2)
    lp = torch.log_softmax(torch.randn(4, 5), dim=-1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prefix_beam_search(lp, beam=4, gate=torch.tensor([0.1, -0.1, 0.5, 0.5]))
