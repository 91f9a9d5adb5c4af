"""Griffin-Lim inverts the log-mel front end well enough to keep the pitch; the F0 tracker."""

import numpy as np
import pytest

from sltk.tts.features import MelConfig, log_mel
from sltk.tts.pitch import smooth_f0, track_f0
from sltk.tts.vocoder import GriffinLim, get_vocoder
from sltk.utils.errors import UserError

SR = 16000


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_griffin_lim_round_trip_of_a_sine_keeps_its_pitch(f0):
    x = (0.5 * np.sin(2 * np.pi * f0 * np.arange(SR) / SR)).astype(np.float32)
    mel = log_mel(x)
    assert mel.shape == (100, 80)  # 1 s at 10 ms
    y = GriffinLim(n_iter=16)(mel)
    assert len(y) == len(x)
    f = track_f0(y)[5:-5]
    assert (f > 0).mean() > 0.9
    assert abs(np.median(f[f > 0]) - f0) < 0.02 * f0
    # and the mel of the round trip is close to the original one (dB-like units)
    assert float((log_mel(y) - mel)[5:-5].abs().mean()) < 1.0


def test_f0_tracker_on_sines_and_silence():
    t = np.arange(SR) / SR
    x = np.concatenate([np.sin(2 * np.pi * 150 * t[: SR // 2]), np.zeros(SR // 2)])
    f = track_f0(x)
    assert len(f) == 100
    assert np.allclose(f[5:45], 150, rtol=0.01)
    assert (f[55:] == 0).all()


def test_smooth_f0():
    f = np.array([0, 100, 0, 0, 100, 101, 400, 102, 103, 0])
    g = smooth_f0(f)
    assert g[1] == 0  # a one-frame voiced run is dropped
    assert g[6] < 110  # the octave jump is replaced by its neighbours' median


def test_vocoder_registry():
    assert isinstance(get_vocoder("griffin-lim", MelConfig()), GriffinLim)
    with pytest.raises(UserError, match="griffin-lim"):
        get_vocoder("hifigan", MelConfig())
