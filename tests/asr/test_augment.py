"""Feature augmentation: FreqWarp (VTLP) against Kaldi-VTLN features; NoiseMixer at a known SNR."""

import math

import pytest
import torch

from sltk.asr.data import FreqWarp
from sltk.audio.features import fbank


def _vowel(sr=16000, seconds=0.5, f0=120.0, formants=(700.0, 1200.0, 2600.0, 3500.0)):
    """A synthetic vowel: harmonics of f0 shaped by resonances (a formant-like envelope)."""
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    x = torch.zeros_like(t)
    for k in range(1, int(7800 // f0)):
        f = k * f0
        amp = sum(1.0 / (1.0 + ((f - fm) / 90.0) ** 2) for fm in formants) + 1e-3
        x += amp * torch.sin(2 * math.pi * f * t + 0.3 * k)
    return (0.3 * x / x.abs().max()).float()


@pytest.mark.parametrize("warp", [0.9, 1.1, 1.15])
def test_warped_features_match_vtln_filterbank(warp):
    x = _vowel()
    plain = fbank(x[None], num_mel_bins=80, dither=0.0, sample_frequency=16000.0)
    vtln = fbank(x[None], num_mel_bins=80, dither=0.0, sample_frequency=16000.0, vtln_warp=warp)
    ours = FreqWarp((warp, warp)).warp(plain, warp)
    # the reference: Kaldi's VTLN filter bank on the signal; the unwarped features are far from it
    err_ours = (ours - vtln)[:, 2:-2].abs().mean()
    err_plain = (plain - vtln)[:, 2:-2].abs().mean()
    assert err_ours < 0.35 * err_plain, (float(err_ours), float(err_plain))
    # the formant peaks move by the warp factor: the loudest bin of each spectrum agrees
    assert abs(int(ours.mean(0).argmax()) - int(vtln.mean(0).argmax())) <= 1


def test_identity_and_batch_lengths():
    fw = FreqWarp((1.0, 1.0))
    x = torch.randn(7, 80)
    assert torch.allclose(fw.warp(x, 1.0), x, atol=1e-6)
    # a batch: padded frames stay untouched, every utterance gets its own factor
    fw = FreqWarp((0.9, 1.1), seed=3)
    batch = torch.randn(2, 10, 80)
    lens = torch.tensor([10, 6])
    out = fw(batch, lens)
    assert torch.equal(out[1, 6:], batch[1, 6:])
    assert not torch.allclose(out[0], batch[0])
    with pytest.raises(ValueError, match="freq warp range"):
        FreqWarp((1.2, 1.1))


def test_noise_mixer_snr_by_hand():
    # speech and noise of mel power 1 in every bin; at 20 dB SNR the noise gain is 1/100, so the
    # mixed log-mel is log(1 + 0.01) in the utterance's frames and the padding is left alone
    from sltk.asr.data import NoiseMixer

    mixer = NoiseMixer([torch.zeros(3, 4)], snr=(20.0, 20.0), p=1.0, seed=0)
    x = torch.zeros(2, 5, 4)
    x[1, 4:] = -7.0  # padding of the shorter utterance
    out = mixer(x, torch.tensor([5, 4]))
    assert torch.allclose(out[:, :4], torch.full((2, 4, 4), math.log(1.01)), atol=1e-6)
    assert torch.allclose(out[0, 4], torch.full((4,), math.log(1.01)), atol=1e-6)
    assert torch.equal(out[1, 4:], x[1, 4:])
    assert torch.equal(NoiseMixer([torch.zeros(3, 4)], p=0.0)(x, torch.tensor([5, 4])), x)
