"""The RDP accountant against hand-computed formulas, numerical integration and published values.

Published values (tensorflow-privacy, which the PATE 2018 authors' analysis code lives in):
* tensorflow_privacy/privacy/analysis/rdp_accountant_test.py: compute_rdp(q=0.1, sigma=2, steps=10,
  order 5) = 0.07737; compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100]) = [0.00065, 0.001085,
  0.00218075, 0.023846, 167.416307]; compute_rdp(1, 10, 1, 20) = 0.1; the composition
  (q=1e-4, sigma=0.4, 40000 steps) + (q=0.1, sigma=2, 100 steps) is eps = 8.509656 at order 2.5
  with the classic conversion (delta 1e-5); a constant RDP of 1.1 over orders 2..32 is
  eps = 1.32783806176 at order 32 with the improved conversion (delta 1e-5); the Gaussian with
  noise multiplier 4.530877117 is exactly (1, 1e-6)-DP over a fine grid of orders.
* tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py: DP-SGD on 60000 examples,
  batch 150, noise 1.3, 15 epochs, delta 1e-5: eps 0.7242234026109595 at order 19; 100000
  examples, batch 100, noise 1.0, 30 epochs, delta 1e-7: eps 1.4154988495444842 at order 13.

GNMax's data-independent curve alpha / sigma^2 is the Gaussian mechanism's with noise multiplier
sigma / sqrt(2) (vote sensitivity sqrt(2)), so the q = 1 values above check it too.
"""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from sltk.privacy import accountant as A

TF_DPSGD_ORDERS = [1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5] + list(range(5, 64)) + [128, 256, 512]


# ------------------------------------------------------------------------------------------ GNMax

@pytest.mark.parametrize("sigma,queries,delta", [(40.0, 1000, 1e-5), (100.0, 5000, 1e-6), (5.0, 20, 1e-5)])
def test_gnmax_data_independent_by_hand(sigma, queries, delta):
    orders = [2.0, 7.5, 32.0]
    assert np.allclose(queries * A.rdp_gnmax(sigma, orders), [queries * a / sigma ** 2 for a in orders], rtol=0)
    # classic conversion: eps(a) = k a / s^2 + log(1/delta) / (a - 1), minimised at a* = 1 + s sqrt(log(1/delta) / k):
    # eps* = k / s^2 + 2 sqrt(k log(1/delta)) / s
    closed = queries / sigma ** 2 + 2 * math.sqrt(queries * math.log(1 / delta)) / sigma
    a_star = 1 + sigma * math.sqrt(math.log(1 / delta) / queries)
    eps, order = A.gnmax_epsilon(sigma, queries, delta, orders=A.orders_grid(1.01, 4096, 4000))
    assert eps == pytest.approx(closed, rel=1e-5) and order == pytest.approx(a_star, rel=0.01)
    eps_default, _ = A.gnmax_epsilon(sigma, queries, delta)  # the default grid: a little above the optimum
    assert closed <= eps_default <= closed * 1.02


def test_gnmax_is_the_gaussian_with_sensitivity_sqrt2_published():
    # tf-privacy: compute_rdp(q=1, noise_multiplier=10, steps=1, orders=20) == 0.1
    assert A.rdp_gnmax(10 * math.sqrt(2), [20])[0] == pytest.approx(0.1, rel=1e-12)
    assert A.rdp_sampled_gaussian(1.0, 10, [20])[0] == pytest.approx(0.1, rel=1e-12)
    # tf-privacy: noise multiplier 4.530877117 is exactly (1, 1e-6)-DP (improved conversion, fine orders):
    # one GNMax query with sigma = 4.530877117 * sqrt(2) is the same mechanism
    orders = [0.001 * i for i in range(1001, 100000)]
    eps, _ = A.eps_from_rdp(A.rdp_gnmax(4.530877117 * math.sqrt(2), orders), orders, 1e-6, "balle2020")
    assert eps == pytest.approx(1.0, abs=1e-6)


def test_threshold_step_is_the_gaussian_with_sensitivity_1():
    orders = [1.5, 2, 10, 100]
    assert np.allclose(A.rdp_threshold(3.0, orders), [a / (2 * 9.0) for a in orders])
    assert np.allclose(A.rdp_threshold(3.0, orders), A.rdp_sampled_gaussian(1.0, 3.0, orders))
    assert np.allclose(A.rdp_gnmax(3.0, orders), 2 * A.rdp_threshold(3.0, orders))


def test_log_q_gnmax_two_classes_is_exact():
    # two candidates: Pr[other wins] = Pr[N(0, 2 s^2) >= gap] exactly (no union bound slack)
    for gap, s in [(3, 2.0), (10, 4.0), (40, 5.0)]:
        assert A.log_q_gnmax([gap + 5, 5], s) == pytest.approx(stats.norm.logsf(gap / (math.sqrt(2) * s)))
    assert A.log_q_gnmax([5, 5, 5], 1.0) == pytest.approx(math.log(2 / 3))  # capped at 1 - 1/m
    assert A.log_q_gnmax([7], 1.0) == -math.inf
    assert A.log_q_gnmax([7], 1.0, extra_zero=1) == pytest.approx(stats.norm.logsf(7 / math.sqrt(2)))


def _theorem6_plain(q, sigma, lam):
    """Papernot et al. 2018, Thm. 6 with Prop. 10's orders, in plain floating point (moderate q)."""
    mu2 = sigma * math.sqrt(math.log(1 / q))
    mu1 = mu2 + 1
    e1, e2 = mu1 / sigma ** 2, mu2 / sigma ** 2
    ok = (mu2 > 1 and lam < mu1 and q * math.exp(e2) < 1
          and q <= math.exp((mu2 - 1) * e2) / (mu1 / (mu1 - 1) * mu2 / (mu2 - 1)) ** mu2)
    if not ok:
        return lam / sigma ** 2
    a = (1 - q) / (1 - (q * math.exp(e2)) ** ((mu2 - 1) / mu2))
    b = math.exp(e1) / q ** (1 / (mu1 - 1))
    return min(lam / sigma ** 2, math.log((1 - q) * a ** (lam - 1) + q * b ** (lam - 1)) / (lam - 1))


def test_data_dependent_gnmax_matches_theorem_6_and_falls_back():
    orders = [1.5, 2.0, 5.0, 10.0, 20.0, 50.0]
    counts = [45, 3, 2]                      # strong consensus, 50 teachers
    sigma = 6.0
    q = math.exp(A.log_q_gnmax(counts, sigma))
    assert 1e-9 < q < 1e-5
    dep = A.rdp_gnmax_data_dependent(counts, sigma, orders)
    ind = A.rdp_gnmax(sigma, orders)
    assert np.allclose(dep, [_theorem6_plain(q, sigma, a) for a in orders], rtol=1e-9)
    assert np.all(dep <= ind) and np.all(dep >= 0)
    assert dep[2] < 1e-3 * ind[2] and dep[3] < 0.05 * ind[3]  # far below the data-independent bound
    i = orders.index(50.0)                   # past mu1: the data-independent bound
    assert np.allclose(dep[i:], ind[i:], rtol=1e-12, atol=0)
    # evenly split votes: the conditions fail, the data-independent bound is used
    assert np.allclose(A.rdp_gnmax_data_dependent([17, 17, 16], sigma, orders), ind, rtol=1e-12, atol=0)
    # unanimous with no noise-free alternative: nothing leaks
    assert np.all(A.rdp_data_dependent(-math.inf, sigma, orders) == 0)


def test_data_dependent_bound_is_sound_two_classes():
    """With two candidates GNMax's output is Bernoulli(p), p = Pr[class 0 wins]; a neighbour moves
    one vote (the gap changes by 2). The exact Rényi divergence never exceeds the bound."""
    sigma, n = 2.0, 20
    orders = np.array([1.5, 2.0, 3.0, 5.0, 8.0])
    for top in (20, 18, 15, 12):
        counts = [top, n - top]
        bound = A.rdp_gnmax_data_dependent(counts, sigma, orders)
        p = stats.norm.cdf((2 * top - n) / (math.sqrt(2) * sigma))
        for shift in (-2, 2):
            g2 = 2 * top - n + shift
            if abs(g2) > n:
                continue
            p2 = stats.norm.cdf(g2 / (math.sqrt(2) * sigma))
            mix = p ** orders * p2 ** (1 - orders) + (1 - p) ** orders * (1 - p2) ** (1 - orders)
            exact = np.log(mix) / (orders - 1)
            assert np.all(exact <= bound + 1e-12), (top, shift, exact, bound)


def test_threshold_data_dependent():
    orders = [2.0, 5.0, 10.0]
    ind = A.rdp_threshold(10.0, orders)
    far_above = A.rdp_threshold_data_dependent(250, 100, 10.0, orders)
    far_below = A.rdp_threshold_data_dependent(5, 100, 10.0, orders)
    at = A.rdp_threshold_data_dependent(100, 100, 10.0, orders)
    assert np.all(far_above < 0.01 * ind) and np.all(far_below < 0.01 * ind)
    assert np.allclose(at, ind, rtol=1e-12, atol=0)           # a coin flip: no data-dependent gain
    assert A.log_pr_answered(100, 100, 10.0) == pytest.approx(math.log(0.5))


# ------------------------------------------------------------------------------------------ Laplace

def test_laplace_rdp_is_mironov_prop6_by_integration():
    b = 1.5

    def renyi(alpha):
        def f(x):  # p^alpha r^(1-alpha), p = Lap(0, b), r = Lap(1, b), in log space
            return math.exp(-(alpha * abs(x) + (1 - alpha) * abs(x - 1)) / b) / (2 * b)

        val = sum(integrate.quad(f, lo, hi)[0] for lo, hi in ((-np.inf, 0), (0, 1), (1, np.inf)))
        return math.log(val) / (alpha - 1)

    orders = [1.5, 2.0, 4.0, 16.0]
    assert np.allclose(A.rdp_laplace_mechanism(b, orders), [renyi(a) for a in orders], rtol=1e-7)


def test_lnmax_pure_eps_and_rdp():
    assert A.laplace_eps(20.0) == pytest.approx(0.1)      # L1 sensitivity 2: eps = 2 / b
    orders = np.array([1.5, 2, 8, 64, 4096])
    eps = 0.1
    r = A.rdp_lnmax(20.0, orders)
    assert np.all(r <= eps + 1e-15) and np.all(r <= orders * eps ** 2 / 2 + 1e-15)
    assert r[-1] == pytest.approx(eps, rel=1e-2)          # RDP -> pure eps as alpha -> infinity
    assert np.allclose(r[:2], np.minimum(2 * A.rdp_laplace_mechanism(20.0, orders[:2]), orders[:2] * eps ** 2 / 2))
    # the data-dependent bound helps on a clear majority, never hurts
    dep = A.rdp_lnmax_data_dependent([240, 5, 5], 20.0, orders)
    assert np.all(dep <= r) and dep[2] < 0.01 * r[2]
    assert np.allclose(A.rdp_lnmax_data_dependent([84, 83, 83], 20.0, orders), r, rtol=1e-12, atol=0)
    # Lemma 4 of PATE 2017 with two classes: Pr[L1 - L2 >= g] = (2 + g/b) / 4 exp(-g/b) exactly; check by sampling
    rng = np.random.default_rng(0)
    d = rng.laplace(0, 20.0, 200_000) - rng.laplace(0, 20.0, 200_000)
    assert math.exp(A.log_q_lnmax([30, 0], 20.0)) == pytest.approx(np.mean(d >= 30), abs=0.004)


# ------------------------------------------------------------------------------------ sampled Gaussian

def test_sampled_gaussian_q1_closed_form_and_q0():
    orders = [1.1, 2, 3.5, 32, 1000]
    for s in (0.5, 1.1, 4.0):
        assert np.allclose(A.rdp_sampled_gaussian(1.0, s, orders), [a / (2 * s * s) for a in orders], rtol=1e-12)
        # q -> 1 from below goes through the binomial sum / series, not the shortcut
        near = A.rdp_sampled_gaussian(1 - 1e-9, s, [2, 3.5, 8])
        assert np.allclose(near, [a / (2 * s * s) for a in (2, 3.5, 8)], rtol=1e-6)
    assert np.all(A.rdp_sampled_gaussian(0.0, 1.0, orders) == 0)


def test_sampled_gaussian_published_tf_privacy():
    assert A.rdp_sampled_gaussian(0.1, 2, [5], steps=10)[0] == pytest.approx(0.07737, abs=5e-6)
    got = A.rdp_sampled_gaussian(0.01, 2.5, [1.5, 2.5, 5, 50, 100], steps=50)
    assert np.allclose(got, [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307], rtol=0, atol=1e-5)


@pytest.mark.parametrize("q,sigma,alpha", [(0.01, 1.1, 2.0), (0.01, 1.1, 7.5), (0.2, 0.8, 3.0), (0.2, 0.8, 1.5),
                                           (1e-3, 2.0, 20.5), (0.5, 3.0, 12.0)])
def test_sampled_gaussian_by_numerical_integration(q, sigma, alpha):
    """A_alpha = E_{z ~ N(0, s^2)} [((1-q) + q exp((2z - 1) / (2 s^2)))^alpha], integrated numerically."""
    def f(z):
        return stats.norm.pdf(z, scale=sigma) * ((1 - q) + q * math.exp((2 * z - 1) / (2 * sigma ** 2))) ** alpha

    lim = 40 * sigma + alpha
    val = sum(integrate.quad(f, lo, hi, limit=200, epsabs=0, epsrel=1e-12)[0]
              for lo, hi in ((-lim, 0), (0, 1), (1, lim)))
    expected = math.log(val) / (alpha - 1)
    assert A.rdp_sampled_gaussian(q, sigma, [alpha])[0] == pytest.approx(expected, rel=1e-7)


def test_sampled_gaussian_matches_opacus_when_installed():
    rdp = pytest.importorskip("opacus.accountants.analysis.rdp")
    orders = [1.1, 1.5, 2, 2.5, 3.7, 8, 16.5, 32, 64, 128.5, 256]
    for q, s in [(0.01, 1.1), (0.5, 0.7), (0.9, 3.0), (0.1, 2.0), (0.3, 0.5)]:
        ours = A.rdp_sampled_gaussian(q, s, orders, steps=100)
        ref = rdp.compute_rdp(q=q, noise_multiplier=s, steps=100, orders=orders)
        assert np.allclose(ours, ref, rtol=1e-6)


def test_dp_sgd_epsilon_published_tf_privacy():
    for n, batch, noise, epochs, delta, eps, order in [(60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0),
                                                       (100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13.0)]:
        steps = int(math.ceil(epochs * n / batch))
        got = A.dp_sgd_epsilon(batch / n, noise, steps, delta, TF_DPSGD_ORDERS, conversion="balle2020")
        assert got[0] == pytest.approx(eps, rel=1e-9) and got[1] == order
        # the classic conversion is looser
        assert A.dp_sgd_epsilon(batch / n, noise, steps, delta, TF_DPSGD_ORDERS)[0] > eps


def test_dpsgd_accountant_composes():
    acc = A.DPSGDAccountant([2, 4, 8])
    acc.step(0.01, 1.1, steps=100)
    acc.step(0.02, 1.5)
    expected = 100 * A.rdp_sampled_gaussian(0.01, 1.1, [2, 4, 8]) + A.rdp_sampled_gaussian(0.02, 1.5, [2, 4, 8])
    assert np.allclose(acc.rdp, expected) and acc.steps == 101


# ------------------------------------------------------------------------------------------ conversion

def test_conversions_published_tf_privacy():
    orders = (1.25, 1.5, 1.75, 2., 2.5, 3., 4., 5., 6., 7., 8., 10., 12., 14., 16., 20., 24., 28., 32., 64., 256.)
    rdp = A.rdp_sampled_gaussian(1e-4, .4, orders, 40000) + A.rdp_sampled_gaussian(0.1, 2, orders, 100)
    eps, order = A.eps_from_rdp(rdp, orders, 1e-5, "classic")
    assert eps == pytest.approx(8.509656, abs=1e-6) and order == 2.5
    assert A.eps_from_rdp(rdp, orders, 1e-5, "balle2020")[0] <= eps
    eps, order = A.eps_from_rdp([1.1] * 31, list(range(2, 33)), 1e-5, "balle2020")
    assert eps == pytest.approx(1.32783806176, abs=1e-10) and order == 32
    # classic by hand: 1.1 + log(1e5) / 31
    assert A.eps_from_rdp([1.1] * 31, list(range(2, 33)), 1e-5)[0] == pytest.approx(1.1 + math.log(1e5) / 31)


def test_accountant_sums_and_rejects_bad_input():
    acc = A.RdpAccountant([2, 3])
    acc.compose(A.rdp_gnmax(2.0, [2, 3]), count=3)
    acc.compose(A.rdp_threshold(1.0, [2, 3]))
    assert np.allclose(acc.rdp, [3 * 2 / 4 + 1, 3 * 3 / 4 + 1.5])
    with pytest.raises(ValueError):
        A.eps_from_rdp([1.0, 1.0], [2, 3], delta=0)
    with pytest.raises(ValueError):
        A.eps_from_rdp([1.0, 1.0], [2, 3], 1e-5, conversion="nope")
    with pytest.raises(ValueError):
        A.RdpAccountant([1.0, 2.0])          # order 1 is not an RDP order here
    assert A.eps_from_rdp([math.inf, math.inf], [2, 3], 1e-5) == (math.inf, None)
