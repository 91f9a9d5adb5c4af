"""sltk.audio.features against torchaudio.compliance.kaldi, and the storage formats."""

import math

import numpy as np
import pytest
import torch

from sltk.audio import features as F
from sltk.data import kaldi_ark


def _signal(seconds=1.3, sr=16000, seed=0):
    """Speech-like test audio in Kaldi's 16-bit scale: two harmonics, noise, and a silent
    stretch (exercising the log floor)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    x = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 1830 * t)
    x = x + 0.02 * torch.randn(t.shape, generator=g)
    x[: sr // 10] = 0.0
    return (x * 32768).unsqueeze(0)


FBANK_OPTIONS = [
    {},
    {"num_mel_bins": 80, "snip_edges": False},
    {"num_mel_bins": 40, "window_type": "hamming", "use_energy": True},
    {"window_type": "blackman", "use_energy": True, "raw_energy": False, "htk_compat": True, "energy_floor": 0.0},
    {"window_type": "hanning", "round_to_power_of_two": False, "preemphasis_coefficient": 0.0,
     "remove_dc_offset": False, "use_power": False},
    {"window_type": "rectangular", "subtract_mean": True, "low_freq": 60.0, "high_freq": -400.0},
    {"num_mel_bins": 40, "vtln_warp": 0.9},
    {"sample_frequency": 8000.0, "frame_length": 20.0, "frame_shift": 8.0, "snip_edges": False},
]

MFCC_OPTIONS = [
    {},
    {"use_energy": True, "num_mel_bins": 40, "num_ceps": 20},
    {"htk_compat": True, "cepstral_lifter": 0.0},
    {"num_mel_bins": 80, "snip_edges": False, "use_energy": True, "htk_compat": True},
]


@pytest.mark.parametrize("opts", FBANK_OPTIONS)
def test_fbank_equals_torchaudio(opts):
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    x = _signal(sr=int(opts.get("sample_frequency", 16000)))
    ref = kaldi.fbank(x, **opts)
    got = F.fbank(x, **opts)
    assert got.shape == ref.shape
    scale = ref.abs().clamp_min(1.0)  # absolute 1e-3 on log values; relative for linear ones
    assert ((got - ref).abs() / scale).max().item() < 1e-3


@pytest.mark.parametrize("opts", MFCC_OPTIONS)
def test_mfcc_equals_torchaudio(opts):
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    x = _signal()
    ref = kaldi.mfcc(x, **opts)
    got = F.mfcc(x, **opts)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-3


def test_computer_matches_options_and_scale():
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    x = _signal()[0] / 32768  # samples in [-1, 1]
    opts = F.FeatureOptions()  # 80 bins, no snip_edges, waveform_scale 32768
    got = F.FeatureComputer(opts)(x.numpy())
    ref = kaldi.fbank((x * 32768).unsqueeze(0), **opts.kaldi_kwargs())
    assert got.shape == (opts.num_frames(len(x)), 80)
    assert (got - ref).abs().max().item() < 1e-3


@pytest.mark.parametrize("n", [0, 1, 79, 80, 81, 240, 399, 400, 401, 16000, 16079, 16080])
def test_num_frames(n):
    x = torch.randn(n)
    for snip in (True, False):
        o = F.FeatureOptions(snip_edges=snip)
        assert F.FeatureComputer(o)(x).shape == (o.num_frames(n), 80)
    # Without snip_edges: the duration over the shift, rounded (what lhotse expects).
    assert F.FeatureOptions().num_frames(n) == int(n / 160 + 0.5)


def test_frames_reflect_edges_like_kaldi():
    x = torch.arange(10, dtype=torch.float32)
    fr = F.frame_signal(x, size=6, shift=4, snip_edges=False)
    # 3 frames starting at -1, 3, 7; index -1 -> 0, 10 -> 9, 11 -> 8, 12 -> 7.
    assert fr.tolist() == [[0, 0, 1, 2, 3, 4], [3, 4, 5, 6, 7, 8], [7, 8, 9, 9, 8, 7]]
    assert F.frame_signal(x, 6, 4, snip_edges=True).tolist() == [[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9]]


def test_mel_banks_hand_checked():
    b = F.mel_banks(num_bins=4, padded_window_size=16, sample_frequency=16000.0, low_freq=0.0, high_freq=0.0)
    assert b.shape == (4, 9)
    assert torch.all(b[:, -1] == 0)  # Nyquist column unused, as in Kaldi
    assert torch.all((b >= 0) & (b <= 1))
    # Filter k peaks at the centre mel of k: weights rise to 1 there and are 0 outside.
    mel = F.mel_scale(torch.arange(8, dtype=torch.float32) * 1000.0)
    delta = F.mel_scale(8000.0) / 5
    for k in range(4):
        inside = (mel > k * delta) & (mel < (k + 2) * delta)
        assert torch.all(b[k, :8][~inside] == 0)


def test_dither_is_off_by_default_and_reproducible():
    x = _signal()[0]
    c = F.FeatureComputer(F.FeatureOptions(waveform_scale=1.0))
    assert torch.equal(c(x), c(x))
    d = F.FeatureComputer(F.FeatureOptions(waveform_scale=1.0, dither=1.0))
    a = d(x, generator=torch.Generator().manual_seed(3))
    b = d(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, c(x))


def test_bad_options():
    with pytest.raises(ValueError, match="window_type"):
        F.FeatureOptions(window_type="kaiser")
    with pytest.raises(ValueError, match="num_ceps"):
        F.FeatureOptions(feature_type="mfcc", num_ceps=100, num_mel_bins=40)
    with pytest.raises(ValueError, match="high_freq"):
        F.FeatureComputer(F.FeatureOptions(high_freq=9000.0))


# ---------------------------------------------------------------------- storage formats
def test_kaldi_ark_round_trip(tmp_path):
    mats = {"utt-a": np.arange(6, dtype=np.float32).reshape(2, 3),
            "utt-b": np.random.default_rng(0).standard_normal((7, 80)).astype(np.float32),
            "utt-c": np.zeros((0, 80), dtype=np.float32),
            "utt-d": np.linspace(0, 1, 8).reshape(4, 2)}  # float64 -> DM
    ark = tmp_path / "feats.ark"
    with kaldi_ark.ArkWriter(ark) as w:
        scp = {k: w.write(k, m) for k, m in mats.items()}
    raw = ark.read_bytes()
    # The layout, byte by byte: key, space, \0B, "FM ", \4 rows, \4 cols, float32 data.
    assert raw[:30] == (b"utt-a \0BFM \x04\x02\x00\x00\x00\x04\x03\x00\x00\x00"
                        + np.arange(6, dtype="<f4").tobytes()[:9])
    assert scp["utt-a"] == f"{ark}:6"
    back = dict(kaldi_ark.read_ark(ark))
    assert list(back) == list(mats)
    for k, m in mats.items():
        assert back[k].dtype == (np.float64 if m.dtype == np.float64 else np.float32)
        assert np.array_equal(back[k], m)
        assert np.array_equal(kaldi_ark.read_scp_entry(scp[k]), m)
    # Appending continues the archive; the end offsets point after each matrix.
    with kaldi_ark.ArkWriter(ark, "ab") as w:
        scp["utt-e"] = w.write("utt-e", mats["utt-a"])
    ends = kaldi_ark.scp_end_offsets(scp)
    assert ends["utt-e"] == ark.stat().st_size
    assert ends["utt-a"] == 6 + 15 + 6 * 4


def test_kaldi_ark_rejects_garbage(tmp_path):
    p = tmp_path / "bad.ark"
    p.write_bytes(b"utt1 [ 1 2 3 ]\n")
    with pytest.raises(Exception, match="not a binary Kaldi matrix"):
        list(kaldi_ark.read_ark(p))
    p.write_bytes(b"utt1 \0BFM \x04\x05\x00\x00\x00\x04\x02\x00\x00\x00abc")
    with pytest.raises(Exception, match="truncated"):
        list(kaldi_ark.read_ark(p))


def test_lilcom_storage_loads_back(tmp_path):
    """What "identical" means for lilcom storage: cut.load_features() returns exactly the
    computed matrix after one lilcom compress/decompress (quantized to multiples of
    2**tick_power), which is within half a tick of the computed features."""
    lilcom = pytest.importorskip("lilcom")
    from lhotse import Features, MonoCut, Recording
    from lhotse.audio import AudioSource
    from lhotse.features.io import LilcomChunkyWriter

    x = (_signal(seconds=3.0)[0] / 32768).numpy()
    feats = F.FeatureComputer(F.FeatureOptions()).numpy(x)
    computed = feats.copy()  # lilcom quantizes the array it compresses in place
    with LilcomChunkyWriter(tmp_path / "feats.lca", tick_power=-5) as w:
        key = w.write("u1", feats)
    rec = Recording(id="u1", sources=[AudioSource(type="file", channels=[0], source="none.wav")],
                    sampling_rate=16000, num_samples=len(x), duration=len(x) / 16000)
    cut = MonoCut(id="u1", start=0.0, duration=rec.duration, channel=0, recording=rec,
                  features=Features(type="sltk-fbank", num_frames=computed.shape[0], num_features=80,
                                    frame_shift=0.01, sampling_rate=16000, start=0.0, duration=rec.duration,
                                    storage_type="lilcom_chunky", storage_path=str(tmp_path / "feats.lca"),
                                    storage_key=key))
    loaded = cut.load_features()
    assert loaded.shape == computed.shape == (cut.num_frames, 80)
    round_trip = np.concatenate([lilcom.decompress(lilcom.compress(computed[i:i + 500].copy(), tick_power=-5))
                                 for i in range(0, len(computed), 500)])
    assert np.array_equal(loaded, round_trip)
    assert np.abs(loaded - computed).max() <= 2.0 ** -5 / 2 + 1e-6
