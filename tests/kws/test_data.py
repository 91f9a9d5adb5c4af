"""The echo simulator and the data-directory simulator."""

import numpy as np
import soundfile as sf

from sltk.kws.data import SimConfig, loudspeaker, simulate, simulate_echo
from sltk.utils.io import read_table


def test_simulate_echo_equals_hand_computed_convolution():
    ref = np.array([1.0, 2.0, 0.0, -1.0, 0.5])
    rir = np.array([0.5, 0.25])
    # delay 1: d = [0, 1, 2, 0, -1]; y[n] = 0.5 d[n] + 0.25 d[n-1]
    expected = np.array([0.0, 0.5, 1.0 + 0.25, 0.0 + 0.5, -0.5 + 0.0])
    np.testing.assert_allclose(simulate_echo(ref, rir, 1, "none"), expected, atol=1e-12)
    # with the non-linearity: g applied before the delay and the room
    g = loudspeaker(ref, "tanh")
    d = np.array([0, 0, g[0], g[1], g[2]])
    exp2 = np.array([0.5 * d[n] + 0.25 * (d[n - 1] if n else 0.0) for n in range(5)])
    np.testing.assert_allclose(simulate_echo(ref, rir, 2, "tanh"), exp2, atol=1e-12)
    assert abs(loudspeaker(np.array([10.0]), "tanh")[0]) < 0.51  # soft clipping


def test_simulate_six_utterances(tmp_path):
    cfg = SimConfig(num_utts=6, seed=3, synths=("espeak",), clean_frac=0.3)
    out = tmp_path / "d"
    assert simulate(cfg, out, nj=1, sentences=[]) == (6, 6, 0)
    tabs = {name: dict(read_table(out / name)) for name in
            ("wav.scp", "ref.scp", "text", "utt2kw", "utt2dd", "utt2ser", "utt2spk", "utt2dur")}
    utts = set(tabs["wav.scp"])
    assert len(utts) == 6 and all(set(t) == utts for t in tabs.values())
    spk2utt = dict(read_table(out / "spk2utt"))
    assert sorted(u for v in spk2utt.values() for u in v.split()) == sorted(utts)
    assert all(tabs["utt2spk"][u] in spk2utt for u in utts)
    for u in utts:
        mic, sr = sf.read(tabs["wav.scp"][u])
        ref, sr2 = sf.read(tabs["ref.scp"][u])
        assert sr == sr2 == 16000 and len(mic) == len(ref) and np.max(np.abs(mic)) > 0.01
        assert tabs["utt2kw"][u] in ("0", "1") and tabs["utt2dd"][u] in ("0", "1")
        assert ("computer" in tabs["text"][u]) == (tabs["utt2kw"][u] == "1")
        ser = tabs["utt2ser"][u]
        if ser == "clean":
            assert np.all(ref == 0)
        else:
            assert -10 <= float(ser) <= 10 and np.max(np.abs(ref)) > 0.01
    # deterministic and resumable: a second run keeps the wavs and the tables
    before = {p.name: p.stat().st_mtime_ns for p in (out / "wav").iterdir()}
    text = (out / "text").read_text()
    assert simulate(cfg, out, nj=1, sentences=[]) == (6, 6, 0)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wav").iterdir()} == before
    assert (out / "text").read_text() == text
