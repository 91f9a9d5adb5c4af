"""Differential privacy: an RDP accountant, PATE noisy aggregation for ASR, DP-SGD steps.

* :mod:`sltk.privacy.accountant`: RDP curves of GNMax (data-independent and data-dependent),
  the threshold step, LNMax, the sampled Gaussian (DP-SGD); composition and conversion to
  (eps, delta).
* :mod:`sltk.privacy.pate`: GNMax / LNMax / Confident-GNMax aggregators over vote histograms,
  with utterance (transcript) and token (CTC frame) units; used by ``pate-aggregate``.
* :mod:`sltk.privacy.dpsgd`: per-example clipping and Gaussian noise for torch models.

Library use::

    from sltk.privacy import NoisyAggregator, gnmax_epsilon, dp_sgd_epsilon
    agg = NoisyAggregator("confident-gnmax", sigma=20, sigma1=150, threshold=200, seed=0)
    label = agg.query([230, 15, 5])          # index of the noisy winner, or None
    agg.report(delta=1e-5)                   # eps (data-independent and data-dependent), queries...
    gnmax_epsilon(sigma=40, queries=1000, delta=1e-5)   # (eps, order)
    dp_sgd_epsilon(sample_rate=0.01, noise_multiplier=1.1, steps=10000, delta=1e-5)
"""

from sltk.privacy.accountant import (CONVERSIONS, DEFAULT_ORDERS, DPSGDAccountant, RdpAccountant, dp_sgd_epsilon,
                                     eps_from_rdp, gnmax_epsilon, rdp_gnmax, rdp_sampled_gaussian)
from sltk.privacy.dpsgd import DPSGD, clip_and_noise, per_example_grads, poisson_batch
from sltk.privacy.pate import (MECHANISMS, UNITS, NoisyAggregator, PateAccountant, aggregate_frames,
                               aggregate_transcripts, ctc_collapse, frame_histograms)

__all__ = ["CONVERSIONS", "DEFAULT_ORDERS", "DPSGD", "DPSGDAccountant", "MECHANISMS", "NoisyAggregator",
           "PateAccountant", "RdpAccountant", "UNITS", "aggregate_frames", "aggregate_transcripts", "clip_and_noise",
           "ctc_collapse", "dp_sgd_epsilon", "eps_from_rdp", "frame_histograms", "gnmax_epsilon",
           "per_example_grads", "poisson_batch", "rdp_gnmax", "rdp_sampled_gaussian"]
