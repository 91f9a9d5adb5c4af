#!/usr/bin/env python3
"""Noise for a PATE run to reach a target eps (data-independent RDP, sltk.privacy.accountant),
and the accountant's numbers for planning a run.

  pate_plan.py sigma --mechanism gnmax --teachers 20 --queries 500 --eps 4 --delta 1e-5
      prints "Q OPTIONS": the number of queries to ask and the pate-aggregate options, "--sigma S"
      (GNMax) or "--sigma S --sigma1 S1 --threshold T" (Confident-GNMax: sigma1 = --sigma1-ratio
      * sigma, T = --threshold-frac * teachers), with sigma the smallest (to 0.1%) for which Q
      queries cost at most eps. Q is --queries, or with --max-sigma-frac F the largest Q <=
      --queries whose sigma is at most F * teachers (fewer, useful labels rather than many
      drowned in noise; the PATE trade-off).
      Confident-GNMax is calibrated for the worst case, every query answered (each pays the
      threshold step alpha / (2 sigma1^2) and the answer alpha / sigma^2); its report then
      shows eps <= the target, for the queries it actually answered.
  pate_plan.py table --teachers 20 100 --queries 100 500 --eps 1 2 4 8 --delta 1e-5
      a Markdown table: for each (teachers, queries, eps), the GNMax sigma, sigma / teachers
      (above ~0.5 the noise swamps even a unanimous vote), the RDP order, and the support
      term of the utterance unit (open candidate sets: the guarantee's delta grows by
      (1 + e^eps) Q delta_s) for GNMax and for Confident-GNMax.

The conversion is the classic one (Mironov 2017, as pate-aggregate's default and the PATE
papers) over the accountant's default orders, so the numbers match pate-aggregate's report.
"""

import argparse
import math
import sys

from sltk.privacy.accountant import DEFAULT_ORDERS, eps_from_rdp, rdp_gnmax, rdp_threshold
from sltk.privacy.pate import NoisyAggregator

ORDERS = DEFAULT_ORDERS


def spent(sigma: float, queries: int, delta: float, sigma1_ratio: float = 0.0):
    rdp = rdp_gnmax(sigma, ORDERS)
    if sigma1_ratio > 0:
        rdp = rdp + rdp_threshold(sigma1_ratio * sigma, ORDERS)
    return eps_from_rdp(queries * rdp, ORDERS, delta)


def calibrate(queries: int, eps: float, delta: float, sigma1_ratio: float = 0.0) -> float:
    """The smallest sigma (to 0.1%) with eps(sigma) <= eps."""
    lo, hi = 1e-3, 1.0
    while spent(hi, queries, delta, sigma1_ratio)[0] > eps:
        lo, hi = hi, hi * 2
        if hi > 1e7:
            sys.exit(f"pate_plan.py: eps {eps} is unreachable with {queries} queries")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid, queries, delta, sigma1_ratio)[0] > eps else (lo, mid)
    return hi


def confident_params(teachers: int, queries: int, eps: float, delta: float, ratio: float, frac: float):
    sigma = calibrate(queries, eps, delta, ratio)
    return sigma, ratio * sigma, frac * teachers


def cmd_sigma(a):
    ratio = a.sigma1_ratio if a.mechanism == "confident-gnmax" else 0.0
    q = a.queries
    if a.max_sigma_frac > 0:
        cap = a.max_sigma_frac * a.teachers
        lo, hi = 0, a.queries  # the largest q in [1, queries] with calibrate(q) <= cap (0: none)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if calibrate(mid, a.eps, a.delta, ratio) <= cap else (lo, mid - 1)
        if lo == 0:
            sys.exit(f"pate_plan.py: eps {a.eps} needs sigma > {cap:g} ({a.max_sigma_frac} x {a.teachers} teachers) "
                     "even for one query: use more teachers or a larger --max-sigma-frac")
        q = lo
    if a.mechanism == "gnmax":
        print(f"{q} --sigma {calibrate(q, a.eps, a.delta):.6g}")
    else:
        s, s1, t = confident_params(a.teachers, q, a.eps, a.delta, a.sigma1_ratio, a.threshold_frac)
        print(f"{q} --sigma {s:.6g} --sigma1 {s1:.6g} --threshold {t:.6g}")


def cmd_table(a):
    print(f"| teachers | queries | eps | GNMax sigma | sigma / teachers | order | support delta, GNMax "
          f"| Confident-GNMax sigma, sigma1, T | support delta, Confident |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for n in a.teachers:
        for q in a.queries:
            for e in a.eps:
                s = calibrate(q, e, a.delta)
                order = spent(s, q, a.delta)[1]
                g = NoisyAggregator("gnmax", sigma=s, num_voters=n).support_delta_per_query()
                cs, cs1, ct = confident_params(n, q, e, a.delta, a.sigma1_ratio, a.threshold_frac)
                c = NoisyAggregator("confident-gnmax", sigma=cs, sigma1=cs1, threshold=ct,
                                    num_voters=n).support_delta_per_query()
                sup = lambda d: min(1.0, a.delta + (1 + math.exp(e)) * q * d)  # noqa: E731
                print(f"| {n} | {q} | {e:g} | {s:.3g} | {s / n:.2f} | {order:g} | {sup(g):.2g} | "
                      f"{cs:.3g}, {cs1:.3g}, {ct:.3g} | {sup(c):.2g} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sigma")
    p.add_argument("--mechanism", choices=["gnmax", "confident-gnmax"], required=True)
    p.add_argument("--teachers", type=int, required=True)
    p.add_argument("--queries", type=int, required=True)
    p.add_argument("--eps", type=float, required=True)
    p.add_argument("--max-sigma-frac", type=float, default=0.0, help="cap sigma / teachers by asking fewer queries "
                   "(0: no cap)")
    t = sub.add_parser("table")
    t.add_argument("--teachers", type=int, nargs="+", required=True)
    t.add_argument("--queries", type=int, nargs="+", required=True)
    t.add_argument("--eps", type=float, nargs="+", default=[1, 2, 4, 8])
    for x in (p, t):
        x.add_argument("--delta", type=float, default=1e-5)
        x.add_argument("--sigma1-ratio", type=float, default=2.0, help="Confident-GNMax: sigma1 / sigma")
        x.add_argument("--threshold-frac", type=float, default=0.6, help="Confident-GNMax: T / teachers")
    a = ap.parse_args()
    if a.cmd == "sigma" and (a.queries < 1 or a.teachers < 2 or a.eps <= 0):
        sys.exit("pate_plan.py: need --queries >= 1, --teachers >= 2, --eps > 0")
    (cmd_sigma if a.cmd == "sigma" else cmd_table)(a)


if __name__ == "__main__":
    main()
