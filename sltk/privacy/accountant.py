"""Rényi differential privacy (RDP) accounting for PATE and DP-SGD.

A mechanism M is (alpha, r)-RDP when the Rényi divergence of order alpha between its output
distributions on any two neighbouring datasets is at most r (Mironov 2017). RDP composes by
addition at each order, and converts to (eps, delta)-DP. Everything here returns RDP *curves*:
numpy arrays of values at the orders given (``DEFAULT_ORDERS`` unless told otherwise); an
:class:`RdpAccountant` sums curves and converts.

Mechanisms and their curves (all orders alpha > 1):

=====================  ===================================================================
GNMax                  argmax_j (n_j + N(0, sigma^2)) over a vote histogram n. One teacher
                       changing its vote moves two counts by 1 each: L2 sensitivity sqrt(2),
                       so the Gaussian mechanism gives alpha * 2 / (2 sigma^2) =
                       **alpha / sigma^2** (Papernot et al. 2018, Prop. 8), data-independent.
GNMax, data-dependent  Papernot et al. 2018, Theorem 6 with Prop. 7's bound q on
                       Pr[answer != top class] and Prop. 10's orders mu2 = sigma sqrt(log 1/q),
                       mu1 = mu2 + 1; where its conditions fail: the data-independent value.
threshold step         Confident-GNMax's check max_j n_j + N(0, sigma1^2) >= T: the max count
                       has sensitivity 1, so **alpha / (2 sigma1^2)**; its data-dependent form
                       is Theorem 6 on the two outcomes (answer / no answer).
LNMax                  argmax_j (n_j + Lap(b)): the histogram has L1 sensitivity 2, so pure
                       **eps = 2 / b** per query. RDP: min of twice Mironov's Laplace curve
                       (Prop. 6, sensitivity 1, per changed count: the noise is independent per
                       count and Rényi divergences of products add), eps (pure DP), and
                       alpha eps^2 / 2 (pure DP implies eps^2/2-zCDP, Bun & Steinke 2016);
                       data-dependent: Papernot et al. 2017, Theorem 3 with Lemma 4's q.
sampled Gaussian       DP-SGD: Poisson sampling with rate q, Gaussian noise multiplier sigma
                       (noise std / clipping norm), add/remove-one neighbours: Mironov, Talwar
                       & Zhang 2019, the binomial sum for integer orders and its two-sided
                       series for fractional ones.
=====================  ===================================================================

Conversion to (eps, delta) (:func:`eps_from_rdp`): ``classic`` is Mironov 2017, Prop. 3,
eps = min_alpha RDP(alpha) + log(1/delta) / (alpha - 1) (what the PATE papers use);
``balle2020`` is the tighter Balle et al. 2020 (Thm. 21) / Canonne, Kamath & Steinke 2020
form, eps = RDP + log((alpha-1)/alpha) - (log delta + log alpha) / (alpha - 1) (what opacus
and tensorflow-privacy use now). Both return the order that achieved the minimum.

A data-dependent value depends on the private votes: it is *not* itself differentially
private. Papernot et al. release it only after smooth-sensitivity sanitisation, which is not
implemented here; report the data-independent value as the formal guarantee.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from scipy import special

ArrayLike = Union[float, Sequence[float], np.ndarray]

# Orders: fine near 1 (few, strongly private queries), integers to 64, then sparse up to 4096
# (many weakly private queries, e.g. per-frame votes with large sigma).
DEFAULT_ORDERS: Tuple[float, ...] = tuple(
    [1.1, 1.25, 1.5, 1.75, 2.25, 2.5, 2.75, 3.5, 4.5] + list(range(2, 65))
    + [80, 96, 112, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 3072, 4096])
DEFAULT_ORDERS = tuple(sorted(float(a) for a in DEFAULT_ORDERS))

CONVERSIONS = ("classic", "balle2020")


def _orders(orders: Optional[ArrayLike]) -> np.ndarray:
    if isinstance(orders, np.ndarray) and orders.dtype == np.float64 and orders.ndim == 1 and orders.size \
            and orders.min() > 1:  # fast path: an accountant's own orders
        return orders
    a = np.atleast_1d(np.asarray(DEFAULT_ORDERS if orders is None else orders, dtype=float))
    if a.ndim != 1 or a.size == 0 or np.any(~(a > 1)):
        raise ValueError(f"RDP orders must be > 1, got {a}")
    return a


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x <= 0, accurate near 0 and for very negative x."""
    if x >= 0:
        return -math.inf
    return math.log1p(-math.exp(x)) if x < -0.693 else math.log(-math.expm1(x))


def _lse(x: np.ndarray) -> float:
    """log(sum(exp(x))) of a 1-D array (scipy's logsumexp is slow on small arrays)."""
    m = float(np.max(x))
    if m == -math.inf:
        return m
    return m + math.log(float(np.sum(np.exp(x - m))))


def _log_sf(x: ArrayLike) -> np.ndarray:
    """log Pr[N(0, 1) >= x], accurate far in the tail."""
    return special.log_ndtr(-np.asarray(x, dtype=float))


# ---------------------------------------------------------------------------------------- Gaussian

def rdp_gaussian_mechanism(sigma: float, orders: Optional[ArrayLike] = None, sensitivity: float = 1.0) -> np.ndarray:
    """The Gaussian mechanism with L2 ``sensitivity`` and noise N(0, sigma^2):
    alpha * sensitivity^2 / (2 sigma^2) (Mironov 2017, Prop. 7)."""
    a = _orders(orders)
    if sigma <= 0:
        return np.full_like(a, np.inf)
    return a * sensitivity ** 2 / (2.0 * sigma ** 2)


def rdp_gnmax(sigma: float, orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Data-independent RDP of one GNMax query with vote noise N(0, sigma^2): alpha / sigma^2
    (the vote histogram has L2 sensitivity sqrt(2): one teacher's vote moves two counts by 1)."""
    return rdp_gaussian_mechanism(sigma, orders, sensitivity=math.sqrt(2.0))


def rdp_threshold(sigma1: float, orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Data-independent RDP of Confident-GNMax's threshold step, max count + N(0, sigma1^2)
    compared with T: the max count has sensitivity 1, so alpha / (2 sigma1^2)."""
    return rdp_gaussian_mechanism(sigma1, orders, sensitivity=1.0)


def log_q_gnmax(counts: ArrayLike, sigma: float, extra_zero: int = 0) -> float:
    """Prop. 7 of Papernot et al. 2018: log of an upper bound on Pr[GNMax != argmax counts],
    the union bound sum_{i != i*} Pr[N(0, 2 sigma^2) >= n_i* - n_i], capped at 1 - 1/m (the top
    count wins at least as often as any other). ``extra_zero`` adds that many zero counts
    (candidates that a neighbouring dataset may bring in)."""
    n = np.asarray(counts, dtype=float).ravel()
    if extra_zero:
        n = np.concatenate([n, np.zeros(extra_zero)])
    m = n.size
    if m <= 1:
        return -math.inf
    if sigma <= 0:
        return -math.inf if np.sum(n == n.max()) == 1 else math.log(1 - 1 / m)
    top = int(np.argmax(n))
    gaps = n[top] - np.delete(n, top)
    logq = _lse(_log_sf(gaps / (math.sqrt(2.0) * sigma)))
    return min(logq, math.log(1 - 1 / m))


def rdp_data_dependent(logq: float, sigma: float, orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Theorem 6 of Papernot et al. 2018 for a mechanism that is (alpha, alpha / sigma^2)-RDP
    at every order (GNMax; the threshold step with sigma = sqrt(2) sigma1), given ``logq``, the
    log of an upper bound q on the probability of not returning the likely outcome.

    With mu2 = sigma sqrt(log 1/q), mu1 = mu2 + 1, eps_i = mu_i / sigma^2 (Prop. 10), when
    mu2 > 1, alpha < mu1, q e^eps2 < 1 and q <= e^{(mu2-1) eps2} / (mu1/(mu1-1) mu2/(mu2-1))^mu2
    (where the bound grows with q, so that an upper bound on q may be used):

        RDP(alpha) <= log((1-q) A^(alpha-1) + q B^(alpha-1)) / (alpha - 1),
        A = (1-q) / (1 - (q e^eps2)^((mu2-1)/mu2)),   B = e^eps1 / q^(1/(mu1-1)).

    Returns min(that, alpha / sigma^2), and alpha / sigma^2 where the conditions fail."""
    a = _orders(orders)
    if sigma <= 0:
        return np.zeros_like(a) if logq == -math.inf else np.full_like(a, np.inf)
    ind = a / sigma ** 2
    if logq > 0:
        raise ValueError(f"logq must be <= 0, got {logq}")
    if logq == -math.inf:  # the outcome is certain: nothing leaks
        return np.zeros_like(a)
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1.0
    eps1, eps2 = mu1 / sigma ** 2, mu2 / sigma ** 2
    if mu2 <= 1 or -logq <= eps2:
        return ind
    if logq > (mu2 - 1) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1)) + math.log(mu2 / (mu2 - 1))):
        return ind
    log1q = _log1mexp(logq)
    log_a = log1q - _log1mexp((logq + eps2) * (mu2 - 1) / mu2)
    log_b = eps1 - logq / (mu1 - 1)
    dep = np.logaddexp(log1q + (a - 1) * log_a, logq + (a - 1) * log_b) / (a - 1)
    return np.where(a < mu1, np.minimum(ind, np.maximum(dep, 0.0)), ind)


def rdp_gnmax_data_dependent(counts: ArrayLike, sigma: float, orders: Optional[ArrayLike] = None,
                             extra_zero: int = 0) -> np.ndarray:
    """Data-dependent RDP of one GNMax query on the histogram ``counts`` (Prop. 7 + Thm. 6)."""
    return rdp_data_dependent(log_q_gnmax(counts, sigma, extra_zero), sigma, orders)


def log_pr_answered(max_count: float, threshold: float, sigma1: float) -> float:
    """log Pr[max_count + N(0, sigma1^2) >= threshold]."""
    if sigma1 <= 0:
        return 0.0 if max_count >= threshold else -math.inf
    return float(_log_sf((threshold - max_count) / sigma1))


def rdp_threshold_data_dependent(max_count: float, threshold: float, sigma1: float,
                                 orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Data-dependent RDP of the threshold step: Theorem 6 on its two outcomes with
    q = min(Pr[answer], Pr[no answer]) and the curve alpha / (sqrt(2) sigma1)^2."""
    lr = log_pr_answered(max_count, threshold, sigma1)
    logq = min(lr, _log1mexp(lr)) if lr > -math.inf else -math.inf
    return rdp_data_dependent(logq, math.sqrt(2.0) * sigma1, orders)


# ---------------------------------------------------------------------------------------- Laplace

def laplace_eps(scale: float) -> float:
    """Pure eps of one LNMax query with Laplace noise of scale b on every count: the histogram
    has L1 sensitivity 2 (one count -1, another +1), so eps = 2 / b."""
    return math.inf if scale <= 0 else 2.0 / scale


def rdp_laplace_mechanism(scale: float, orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Mironov 2017, Prop. 6: the Laplace mechanism of scale b on a sensitivity-1 value,
    log(alpha/(2alpha-1) e^((alpha-1)/b) + (alpha-1)/(2alpha-1) e^(-alpha/b)) / (alpha - 1)."""
    a = _orders(orders)
    if scale <= 0:
        return np.full_like(a, np.inf)
    t1 = np.log(a / (2 * a - 1)) + (a - 1) / scale
    t2 = np.log((a - 1) / (2 * a - 1)) - a / scale
    return np.logaddexp(t1, t2) / (a - 1)


def rdp_lnmax(scale: float, orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Data-independent RDP of one LNMax query: min(2 x Laplace curve, eps, alpha eps^2 / 2)
    with eps = 2 / b (see the module table)."""
    a = _orders(orders)
    eps = laplace_eps(scale)
    return np.minimum(np.minimum(2 * rdp_laplace_mechanism(scale, a), eps), a * eps ** 2 / 2)


def log_q_lnmax(counts: ArrayLike, scale: float, extra_zero: int = 0) -> float:
    """Lemma 4 of Papernot et al. 2017: Pr[LNMax != argmax] <= sum_{j != j*} (2 + g_j) / (4 e^g_j),
    g_j = (n_j* - n_j) / b (the tail of a difference of two Laplace variables), capped at 1 - 1/m."""
    n = np.asarray(counts, dtype=float).ravel()
    if extra_zero:
        n = np.concatenate([n, np.zeros(extra_zero)])
    m = n.size
    if m <= 1:
        return -math.inf
    top = int(np.argmax(n))
    g = (n[top] - np.delete(n, top)) / scale
    logq = _lse(np.log(2 + g) - math.log(4) - g)
    return min(logq, math.log(1 - 1 / m))


def rdp_pure_data_dependent(logq: float, eps: float, orders: Optional[ArrayLike] = None) -> np.ndarray:
    """Theorem 3 of Papernot et al. 2017 for an eps-DP mechanism whose likely outcome fails with
    probability at most q < 1 / (e^eps + 1), as RDP of order alpha = l + 1:
    log((1-q) ((1-q) / (1 - e^eps q))^(alpha-1) + q e^(eps (alpha-1))) / (alpha - 1),
    and min(that, eps, alpha eps^2 / 2)."""
    a = _orders(orders)
    base = np.minimum(np.full_like(a, eps), a * eps ** 2 / 2)
    if logq == -math.inf:
        return np.zeros_like(a)
    if logq > -math.log1p(math.exp(eps)):  # q >= 1 / (e^eps + 1): the theorem does not apply
        return base
    log1q = _log1mexp(logq)
    t1 = log1q + (a - 1) * (log1q - _log1mexp(eps + logq))
    t2 = logq + eps * (a - 1)
    return np.minimum(base, np.maximum(np.logaddexp(t1, t2) / (a - 1), 0.0))


def rdp_lnmax_data_dependent(counts: ArrayLike, scale: float, orders: Optional[ArrayLike] = None,
                             extra_zero: int = 0) -> np.ndarray:
    """Data-dependent RDP of one LNMax query (Lemma 4 + Theorem 3 of Papernot et al. 2017),
    never above the data-independent curve."""
    dep = rdp_pure_data_dependent(log_q_lnmax(counts, scale, extra_zero), laplace_eps(scale), orders)
    return np.minimum(dep, rdp_lnmax(scale, orders))


# ------------------------------------------------------------------------------- sampled Gaussian

def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    k = np.arange(alpha + 1, dtype=float)
    log_binom = special.gammaln(alpha + 1) - special.gammaln(k + 1) - special.gammaln(alpha - k + 1)
    terms = log_binom + k * math.log(q) + (alpha - k) * math.log1p(-q) + (k * k - k) / (2 * sigma ** 2)
    return _lse(terms)


def _log_a_frac(q: float, sigma: float, alpha: float, chunk: int = 2048, max_terms: int = 2_000_000) -> float:
    """log A_alpha for fractional alpha. With mu0 = N(0, s^2), mu1 = N(1, s^2), r = mu1/mu0,
    A = int mu0 ((1-q) + q r)^alpha. Split at z0 where q r(z0) = 1 - q,
    z0 = s^2 log(1/q - 1) + 1/2, and expand the binomial on each side where it converges:
    A = sum_k C(alpha, k) [ (1-q)^(alpha-k) q^k e^((k^2-k)/(2s^2)) Pr[N(k, s^2) <= z0]
                          + (1-q)^k q^(alpha-k) e^((j^2-j)/(2s^2)) Pr[N(j, s^2) >= z0] ],  j = alpha - k
    (mu0 r^k = N(k, s^2) e^((k^2-k)/(2s^2))). Terms change sign past k > alpha; summed in log
    space by sign, until they no longer matter."""
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    lq, l1q = math.log(q), math.log1p(-q)
    pos, neg = [], []
    start = 0
    total = -math.inf
    while start < max_terms:
        k = np.arange(start, start + chunk, dtype=float)
        j = alpha - k
        log_c = special.gammaln(alpha + 1) - special.gammaln(k + 1) - special.gammaln(j + 1)
        sign = special.gammasgn(j + 1)
        s0 = log_c + j * l1q + k * lq + (k * k - k) / (2 * sigma ** 2) + special.log_ndtr((z0 - k) / sigma)
        s1 = log_c + k * l1q + j * lq + (j * j - j) / (2 * sigma ** 2) + special.log_ndtr((j - z0) / sigma)
        terms = np.concatenate([s0, s1])
        signs = np.concatenate([sign, sign])
        pos.append(special.logsumexp(terms[signs > 0]) if np.any(signs > 0) else -math.inf)
        neg.append(special.logsumexp(terms[signs < 0]) if np.any(signs < 0) else -math.inf)
        p, n = special.logsumexp(pos), max(neg) if max(neg) == -math.inf else special.logsumexp(neg)
        total = p + math.log1p(-math.exp(n - p)) if n > -math.inf else p
        start += chunk
        if k[0] > alpha and max(np.max(s0), np.max(s1)) < total - 36:  # terms < 2e-16 of the sum: negligible
            break
    return float(total)


def rdp_sampled_gaussian(q: float, sigma: float, orders: Optional[ArrayLike] = None, steps: int = 1) -> np.ndarray:
    """RDP of ``steps`` compositions of the Poisson-sampled Gaussian mechanism (DP-SGD with
    sampling rate ``q`` and noise multiplier ``sigma``): steps * log(A_alpha) / (alpha - 1),
    A_alpha = E_{z~mu0}[(mu(z)/mu0(z))^alpha], mu = (1-q) N(0, s^2) + q N(1, s^2) (Mironov, Talwar
    & Zhang 2019). q = 1 gives the Gaussian mechanism, alpha / (2 sigma^2); q = 0 gives 0."""
    a = _orders(orders)
    if not 0 <= q <= 1:
        raise ValueError(f"sampling rate must be in [0, 1], got {q}")
    if q == 0:
        return np.zeros_like(a)
    if sigma <= 0:
        return np.full_like(a, np.inf)
    if q == 1.0:
        return steps * a / (2 * sigma ** 2)
    out = np.empty_like(a)
    for i, alpha in enumerate(a):
        if math.isinf(alpha):
            out[i] = math.inf
        elif float(alpha).is_integer():
            out[i] = _log_a_int(q, sigma, int(alpha)) / (alpha - 1)
        else:
            out[i] = _log_a_frac(q, sigma, float(alpha)) / (alpha - 1)
    return steps * out


# ---------------------------------------------------------------------------------------- conversion

def eps_from_rdp(rdp: ArrayLike, orders: Optional[ArrayLike], delta: float,
                 conversion: str = "classic") -> Tuple[float, Optional[float]]:
    """(eps, order) with eps the smallest over ``orders`` of the (eps, delta)-DP that the RDP
    curve ``rdp`` implies (``classic`` or ``balle2020``, see the module doc); order is None when
    every order gives infinity."""
    a = _orders(orders)
    r = np.asarray(rdp, dtype=float).ravel()
    if r.shape != a.shape:
        raise ValueError(f"{r.size} RDP values for {a.size} orders")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    with np.errstate(invalid="ignore"):
        if conversion == "classic":
            eps = r + math.log(1 / delta) / (a - 1)
        elif conversion == "balle2020":
            eps = r + np.log1p(-1 / a) - (math.log(delta) + np.log(a)) / (a - 1)
        else:
            raise ValueError(f"unknown conversion {conversion!r} (one of {', '.join(CONVERSIONS)})")
    eps = np.where(np.isnan(eps), np.inf, eps)
    i = int(np.argmin(eps))
    if not np.isfinite(eps[i]):
        return math.inf, None
    return max(0.0, float(eps[i])), float(a[i])


class RdpAccountant:
    """Sums RDP curves over a fixed set of orders and converts the total to (eps, delta)."""

    def __init__(self, orders: Optional[ArrayLike] = None):
        self.orders = _orders(orders)
        self.rdp = np.zeros_like(self.orders)

    def compose(self, rdp: ArrayLike, count: int = 1) -> None:
        """Add ``count`` mechanisms with the curve ``rdp`` (sequential composition)."""
        r = np.asarray(rdp, dtype=float).ravel()
        if r.shape != self.orders.shape:
            raise ValueError(f"{r.size} RDP values for {self.orders.size} orders")
        self.rdp = self.rdp + count * r

    def epsilon(self, delta: float, conversion: str = "classic") -> Tuple[float, Optional[float]]:
        """(eps, order achieving it) of everything composed so far."""
        return eps_from_rdp(self.rdp, self.orders, delta, conversion)


class DPSGDAccountant(RdpAccountant):
    """The accountant of DP-SGD with Poisson sampling: call :meth:`step` once per noisy step (or
    with ``steps``); rate and noise may change between calls."""

    def __init__(self, orders: Optional[ArrayLike] = None):
        super().__init__(orders)
        self.steps = 0
        self._cache = {}

    def step(self, sample_rate: float, noise_multiplier: float, steps: int = 1) -> None:
        key = (float(sample_rate), float(noise_multiplier))
        if key not in self._cache:
            self._cache[key] = rdp_sampled_gaussian(sample_rate, noise_multiplier, self.orders)
        self.compose(self._cache[key], steps)
        self.steps += steps


def dp_sgd_epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float,
                   orders: Optional[ArrayLike] = None, conversion: str = "classic") -> Tuple[float, Optional[float]]:
    """(eps, order) of ``steps`` DP-SGD steps at one sampling rate and noise multiplier."""
    o = _orders(orders)
    return eps_from_rdp(rdp_sampled_gaussian(sample_rate, noise_multiplier, o, steps), o, delta, conversion)


def gnmax_epsilon(sigma: float, queries: int, delta: float, orders: Optional[ArrayLike] = None,
                  conversion: str = "classic") -> Tuple[float, Optional[float]]:
    """(eps, order) of ``queries`` data-independent GNMax queries (close to the closed form
    queries / sigma^2 + 2 sqrt(queries log(1/delta)) / sigma of the classic conversion)."""
    o = _orders(orders)
    return eps_from_rdp(queries * rdp_gnmax(sigma, o), o, delta, conversion)


def orders_grid(lo: float = 1.01, hi: float = 4096.0, n: int = 400) -> np.ndarray:
    """A log-spaced grid of orders (for accurate minima in tests and analysis)."""
    return np.unique(np.geomspace(lo, hi, n))


__all__ = ["CONVERSIONS", "DEFAULT_ORDERS", "DPSGDAccountant", "RdpAccountant", "dp_sgd_epsilon",
           "eps_from_rdp", "gnmax_epsilon", "laplace_eps", "log_pr_answered", "log_q_gnmax", "log_q_lnmax",
           "orders_grid", "rdp_data_dependent", "rdp_gaussian_mechanism", "rdp_gnmax", "rdp_gnmax_data_dependent",
           "rdp_laplace_mechanism", "rdp_lnmax", "rdp_lnmax_data_dependent", "rdp_pure_data_dependent",
           "rdp_sampled_gaussian", "rdp_threshold", "rdp_threshold_data_dependent"]
