"""The classical AEC front end converges on a synthetic echo."""

import numpy as np

from sltk.kws.aec import erle_db, nlms, pbfdaf, pbfdaf_macs_per_sample


def _echo(n=16000, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(n)
    h = np.concatenate([np.zeros(40), rng.standard_normal(120) * np.exp(-np.arange(120) / 30.0)])
    return ref, np.convolve(ref, h)[:n]


def test_nlms_converges():
    ref, mic = _echo(12000)
    e = nlms(mic, ref, taps=256, mu=0.5)
    assert erle_db(mic[6000:], e[6000:]) > 25.0
    assert erle_db(mic[:500], e[:500]) < erle_db(mic[6000:], e[6000:])  # it learns


def test_pbfdaf_converges_and_is_counted():
    ref, mic = _echo(32000, seed=1)
    e = pbfdaf(mic, ref, block=128, partitions=4)
    assert e.shape == mic.shape
    assert erle_db(mic[16000:], e[16000:]) > 25.0
    assert 0 < pbfdaf_macs_per_sample(256, 8) < 2000
