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


def test_pbfdaf_stays_stable_on_a_tonal_nonstationary_reference():
    # Synthetic music (notes changing every few hundred ms) through a room: a step normalised
    # by one partition's power instead of the whole filter's diverged here (ERLE -119 dB).
    from sltk.kws.data import echo_rir, simulate_echo, synth_music

    rng = np.random.default_rng(0)
    ref = synth_music(16000 * 4, rng)
    echo = simulate_echo(ref, echo_rir(rng), 0, "none")
    e = pbfdaf(echo, ref, block=256, partitions=8, mu=0.3)
    assert np.all(np.isfinite(e))
    assert erle_db(echo[32000:], e[32000:]) > 5.0


def test_pbfdaf_divergence_guard_clears_the_filter():
    from sltk.kws.aec import PBFDAF

    ref, mic = _echo(4096, seed=2)
    f = PBFDAF(block=256, partitions=4)
    f.process(mic[:256], ref[:256])
    f.W[:] = 1e6  # a diverged filter: its echo estimate dwarfs the microphone
    e = f.process(mic[256:512], ref[256:512])
    assert f.resets == 1 and np.abs(f.W).max() < 10.0  # cleared, then one ordinary update
    assert np.allclose(e, mic[256:512])  # the microphone passes through unchanged
