"""PATE aggregation: the noise is really there (right law, fixed seeds), Confident-GNMax's threshold,
the accounting of every step, and the utterance / token units."""

import math

import numpy as np
import pytest
from scipy import stats

from sltk.privacy import accountant as A
from sltk.privacy.pate import (NoisyAggregator, aggregate_frames, aggregate_transcripts, ctc_collapse,
                               frame_histograms, vote_histogram)

ORDERS = [1.5, 2.0, 4.0, 16.0, 64.0]


def test_gaussian_noise_has_the_right_law():
    agg = NoisyAggregator("gnmax", sigma=3.0, seed=123)
    x = agg._noisy(np.zeros(200_000))
    n = x.size
    assert abs(x.mean()) < 5 * 3.0 / math.sqrt(n)
    assert x.var() == pytest.approx(9.0, rel=0.02)
    assert stats.kstest(x / 3.0, "norm").pvalue > 1e-3
    # counts are shifted, not replaced
    y = NoisyAggregator("gnmax", sigma=3.0, seed=123)._noisy(np.full(200_000, 7.0))
    assert np.allclose(y - 7.0, x)


def test_laplace_noise_has_the_right_law():
    b = 2.5
    x = NoisyAggregator("lnmax", laplace_scale=b, seed=7)._noisy(np.zeros(200_000))
    assert abs(x.mean()) < 5 * math.sqrt(2) * b / math.sqrt(x.size)
    assert x.var() == pytest.approx(2 * b * b, rel=0.03)       # Var Lap(b) = 2 b^2
    assert np.mean(np.abs(x)) == pytest.approx(b, rel=0.02)    # E|Lap(b)| = b
    assert stats.kstest(x, "laplace", args=(0, b)).pvalue > 1e-3


def test_noisy_argmax_win_rate_and_seeds():
    # two candidates 4 votes apart, sigma 3: the runner-up wins with Pr[N(0, 2 * 9) >= 4]
    agg = NoisyAggregator("gnmax", sigma=3.0, seed=0, data_dependent=False)
    wins = [agg.query([10, 6]) for _ in range(20000)]
    p = stats.norm.sf(4 / (math.sqrt(2) * 3.0))
    rate = wins.count(1) / len(wins)
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / len(wins))
    same = NoisyAggregator("gnmax", sigma=3.0, seed=0, data_dependent=False)
    assert [same.query([10, 6]) for _ in range(200)] == wins[:200]      # reproducible
    other = NoisyAggregator("gnmax", sigma=3.0, seed=1, data_dependent=False)
    assert [other.query([10, 6]) for _ in range(200)] != wins[:200]
    # Laplace: Pr[L2 - L1 >= 4] = (2 + 4/b) / 4 e^(-4/b)
    lag = NoisyAggregator("lnmax", laplace_scale=2.0, seed=0, data_dependent=False)
    wins = [lag.query([10, 6]) for _ in range(20000)]
    p = (2 + 2) / 4 * math.exp(-2)
    assert abs(wins.count(1) / len(wins) - p) < 4 * math.sqrt(p * (1 - p) / len(wins))


def test_confident_gnmax_threshold():
    T = 30
    sharp = NoisyAggregator("confident-gnmax", sigma=2.0, sigma1=1e-9, threshold=T, seed=0)
    assert all(sharp.query([T - 1, 5, 3]) is None for _ in range(500))       # never below the threshold
    assert all(sharp.query([T - 1e-6, 0]) is None for _ in range(500))
    assert all(sharp.query([T + 1, 5, 3]) == 0 for _ in range(500))          # always at or above it
    noisy = NoisyAggregator("confident-gnmax", sigma=2.0, sigma1=5.0, threshold=T, seed=0)
    assert all(noisy.query([T + 60, 3]) is not None for _ in range(500))     # 12 sigma1 above: always
    assert all(noisy.query([T - 60, 3]) is None for _ in range(500))         # 12 sigma1 below: never
    mixed = [noisy.query([T, 3]) is not None for _ in range(4000)]           # at T: a coin flip
    assert abs(np.mean(mixed) - 0.5) < 4 * math.sqrt(0.25 / 4000)


def test_accounting_of_each_mechanism():
    o = ORDERS
    g = NoisyAggregator("gnmax", sigma=4.0, seed=0, orders=o)
    for _ in range(30):
        g.query([9, 1])
    assert np.allclose(g.accountant.ind.rdp, 30 * np.array(o) / 16.0)
    assert np.all(g.accountant.dep.rdp <= g.accountant.ind.rdp + 1e-12)
    rep = g.report(1e-5)
    assert rep["queries"] == rep["answered"] == rep["answer_steps"] == 30 and rep["threshold_steps"] == 0
    eps, order = A.eps_from_rdp(30 * np.array(o) / 16.0, o, 1e-5)
    assert rep["eps"] == pytest.approx(eps, rel=1e-12) and rep["order"] == order
    assert "support" not in rep and rep["delta_total"] == 1e-5

    c = NoisyAggregator("confident-gnmax", sigma=4.0, sigma1=2.0, threshold=8, seed=0, orders=o)
    answers = [c.query([v, 10 - v]) for v in (10, 9, 5, 6, 10, 2, 8, 7)]
    k, a = len(answers), sum(x is not None for x in answers)
    assert 0 < a < k
    acc = c.accountant
    assert (acc.queries, acc.threshold_steps, acc.answer_steps, acc.answered) == (k, k, a, a)
    expected = k * np.array(o) / (2 * 2.0 ** 2) + a * np.array(o) / 4.0 ** 2    # every query pays the threshold
    assert np.allclose(acc.ind.rdp, expected)

    lap = NoisyAggregator("lnmax", laplace_scale=20.0, seed=0, orders=o)
    for _ in range(10):
        lap.query([30, 0])
    rep = lap.report(1e-5)
    assert rep["pure_eps_composed"] == pytest.approx(10 * 0.1)
    assert rep["eps"] <= 1.0 + 1e-12 and rep["eps_per_answer"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        NoisyAggregator("gnmax")
    with pytest.raises(ValueError):
        NoisyAggregator("confident-gnmax", sigma=1.0, threshold=3)
    with pytest.raises(ValueError):
        NoisyAggregator("magic", sigma=1.0)


def test_utterance_unit():
    cands, counts = vote_histogram(["b a", "a b", "b a", "b a"])
    assert cands == ["a b", "b a"] and list(counts) == [1, 3]
    agg = NoisyAggregator("gnmax", sigma=0.1, seed=0, num_voters=4)
    v = aggregate_transcripts(["b a", "a b", "b a", "b a"], agg)
    assert v.label == "b a" and v.agreement == 0.75 and v.num_candidates == 2 and v.top_count == 3
    # every teacher disagrees: still a noisy answer, one of the candidates
    hyps = ["one", "two", "three", "four"]
    seen = {aggregate_transcripts(hyps, NoisyAggregator("gnmax", sigma=2.0, seed=s)).label for s in range(40)}
    assert seen <= set(hyps) and len(seen) > 1
    # open candidate sets are charged: delta_s = Pr[N(0, 2 sigma^2) >= 1] per GNMax query
    rep = agg.report(1e-5)
    assert rep["support"]["delta_sum"] == pytest.approx(stats.norm.sf(1 / (math.sqrt(2) * 0.1)))
    assert rep["delta_total"] >= 1e-5
    wide = NoisyAggregator("gnmax", sigma=2.0, seed=0)
    aggregate_transcripts(hyps, wide)
    assert wide.report(1e-5)["delta_total"] > 0.1     # no meaningful guarantee: said so in the report
    # Confident-GNMax with a high threshold and small answer noise makes the support term negligible
    strict = NoisyAggregator("confident-gnmax", sigma=5.0, sigma1=40.0, threshold=200, seed=0, num_voters=250)
    assert strict.support_delta_per_query() < 1e-6
    loose = NoisyAggregator("confident-gnmax", sigma=20.0, sigma1=150.0, threshold=200, seed=0, num_voters=250)
    assert loose.support_delta_per_query() > 1e-3


def test_frame_histograms_and_collapse():
    rng = np.random.default_rng(0)
    lps = [np.log(rng.dirichlet(np.ones(6), size=9)) for _ in range(5)]
    hard = frame_histograms(lps, "hard")
    soft = frame_histograms(lps, "soft")
    assert hard.shape == soft.shape == (9, 6)
    assert np.allclose(hard.sum(1), 5) and np.allclose(soft.sum(1), 5)
    assert hard[3, np.argmax(lps[0][3])] >= 1
    with pytest.raises(ValueError):
        frame_histograms([lps[0], lps[1][:5]])
    assert ctc_collapse([0, 3, 3, 0, 3, 4, 4, 0, 0, 5], blank=0) == [3, 3, 4, 5]


def _unanimous(path, V=6, n=10):
    hist = np.zeros((len(path), V))
    hist[np.arange(len(path)), path] = n
    return hist


def test_token_unit_each_frame_is_a_query():
    path = [0, 3, 3, 0, 3, 4, 4, 0, 0, 5]
    agg = NoisyAggregator("gnmax", sigma=0.5, seed=0)
    v = aggregate_frames(_unanimous(path), agg, num_teachers=10)
    assert v.ids == [3, 3, 4, 5] and v.frames == v.queried == v.answered == 10 and v.agreement == 1.0
    assert agg.accountant.queries == 10                 # one query per frame
    assert np.allclose(agg.accountant.ind.rdp, 10 * A.rdp_gnmax(0.5, agg.accountant.orders))


def test_token_unit_nonblank_gate():
    path = [0, 3, 3, 0, 3, 4, 4, 0, 0, 5]
    agg = NoisyAggregator("gnmax", sigma=0.5, sigma1=1e-6, seed=0)
    v = aggregate_frames(_unanimous(path), agg, num_teachers=10, nonblank_only=True, blank_threshold=5)
    assert v.ids == [3, 3, 4, 5]
    acc = agg.accountant
    assert acc.threshold_steps == 10 and acc.queries == v.queried == 6   # only non-blank frames vote
    o = acc.orders
    assert np.allclose(acc.ind.rdp, 10 * A.rdp_threshold(1e-6, o) + 6 * A.rdp_gnmax(0.5, o))


def test_token_unit_min_answered_stops_early():
    path = [3] * 20
    hist = _unanimous(path, n=4)                         # 4 votes, never above threshold 50
    agg = NoisyAggregator("confident-gnmax", sigma=1.0, sigma1=1.0, threshold=50, seed=0)
    v = aggregate_frames(hist, agg, num_teachers=4, min_answered=0.9)
    assert v.ids is None and agg.accountant.queries == 3  # the third miss makes 90% unreachable: stop asking
    agg = NoisyAggregator("confident-gnmax", sigma=1.0, sigma1=1.0, threshold=2, seed=0)
    v = aggregate_frames(hist, agg, num_teachers=4, min_answered=0.9)
    assert v.ids == [3] and v.answered == 20
