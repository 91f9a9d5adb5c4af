"""compute-features: help, runs on a tiny data directory, bad input, resumption."""

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sltk.bin.compute_features import main

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


def make_data_dir(root: Path, n: int = 40, segments: bool = False) -> Path:
    """A Kaldi data directory of ``n`` short tone-plus-noise wavs (4 speakers)."""
    rng = np.random.default_rng(0)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True)
    wav, utt2spk, text, segs = [], [], [], []
    for i in range(n):
        spk = f"spk{i % 4}"
        utt = f"{spk}-u{i:03d}"
        t = np.arange(int((0.3 + 0.3 * rng.random()) * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * rng.standard_normal(len(t))
        path = wav_dir / f"{utt}.wav"
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
        if segments:  # one recording holding two utterances
            reco = f"{utt}-rec"
            wav.append(f"{reco} {path}")
            half = len(t) / SR / 2
            for k, (s, e) in enumerate([(0.0, half), (half, len(t) / SR)]):
                segs.append(f"{utt}-{k} {reco} {s:.4f} {e:.4f}")
                utt2spk.append(f"{utt}-{k} {spk}")
                text.append(f"{utt}-{k} segment {k} of {i}")
        else:
            wav.append(f"{utt} {path}")
            utt2spk.append(f"{utt} {spk}")
            text.append(f"{utt} hello number {i}")
    d = root / "data"
    d.mkdir()
    tables = {"wav.scp": wav, "utt2spk": utt2spk, "text": text}
    if segments:
        tables["segments"] = segs
    for name, lines in tables.items():
        (d / name).write_text("\n".join(sorted(lines)) + "\n")
    return d


def run(args, capsys):
    rc = main(list(map(str, args)), standalone_mode=False)
    return rc, capsys.readouterr().err


def load(feats_dir: Path):
    from lhotse import CutSet

    return {c.id: c for c in CutSet.from_file(feats_dir / "cuts.jsonl.gz")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("cf"))


def test_help(run_env):
    out = subprocess.run([str(ROOT / "bin" / "compute-features"), "--help"], env=run_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[DATA_DIR] FEATS_DIR" in out.stdout and "--num-mel-bins" in out.stdout
    assert "default: 80" in out.stdout and "Examples:" in out.stdout


def test_nj1_equals_nj2_and_manifest(data, tmp_path, capsys):
    rc, err = run([data, tmp_path / "a"], capsys)
    assert rc == 0, err
    assert "Done 40 of 40 utterances, 0 failed" in err
    rc, err = run(["--nj", 2, "--cmvn-stats", data, tmp_path / "b"], capsys)
    assert rc == 0, err
    assert {p.name for p in (tmp_path / "b").glob("feats.*.lca")} == {"feats.1.lca", "feats.2.lca"}
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    assert list(a) == list(b) == sorted(a)
    for k in a:
        fa, fb = a[k].load_features(), b[k].load_features()
        assert fa.shape == (a[k].num_frames, 80)
        assert np.array_equal(fa, fb)
    c = a["spk1-u005"]
    sup = c.supervisions[0]
    assert (sup.id, sup.text, sup.speaker) == ("spk1-u005", "hello number 5", "spk1")
    assert c.features.storage_type == "lilcom_chunky"
    stats = json.loads((tmp_path / "b" / "cmvn.json").read_text())
    assert stats["count"] == sum(x.num_frames for x in a.values()) and stats["dim"] == 80
    assert not any(p.name.startswith("feats") for p in data.iterdir())  # data dir untouched


def test_corrupt_wav_is_skipped(data, tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    lines = (data / "wav.scp").read_text().splitlines()
    lines[3] = lines[3].split()[0] + f" {bad}"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text((data / "utt2spk").read_text())
    rc, err = run(["--nj", 2, d, tmp_path / "f"], capsys)
    assert rc == 0, err
    assert "WARNING" in err and str(bad) in err
    assert "Done 39 of 40 utterances, 1 failed" in err
    assert len(load(tmp_path / "f")) == 39


def test_too_many_failures(data, tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    lines = (data / "wav.scp").read_text().splitlines()
    for i in (0, 10, 20):  # 3 of 40 = 7.5 %
        lines[i] = lines[i].split()[0] + f" {tmp_path / 'missing.wav'}"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text((data / "utt2spk").read_text())
    rc, err = run([d, tmp_path / "f"], capsys)
    assert rc == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "3 of 40 utterances failed (> 5%)" in errors[0]
    assert "missing.wav does not exist" in err
    assert not (tmp_path / "f" / "cuts.jsonl.gz").exists()


def test_resume(data, tmp_path, capsys):
    out = tmp_path / "f"
    rc, err = run(["--nj", 2, data, out], capsys)
    assert rc == 0, err
    first = {k: c.load_features() for k, c in load(out).items()}
    lca = sorted(out.glob("feats.*.lca"))
    mtimes = [p.stat().st_mtime_ns for p in lca]
    # A complete rerun computes nothing and leaves the archives alone.
    rc, err = run(["--nj", 2, data, out], capsys)
    assert rc == 0 and "40 of 40 utterances already have features" in err
    assert [p.stat().st_mtime_ns for p in lca] == mtimes
    # A run killed after its last checkpoint: job 2's manifest lost its last 3 cuts, and
    # its archive has trailing bytes. The rerun truncates, recomputes those 3, and appends.
    part = out / "parts" / "cuts.2.jsonl.gz"
    with gzip.open(part, "rt") as f:
        lines = f.readlines()
    with gzip.open(part, "wt") as f:
        f.writelines(lines[:-3])
    with open(out / "feats.2.lca", "ab") as f:
        f.write(b"half-written garbage")
    rc, err = run(["--nj", 2, data, out], capsys)
    assert rc == 0, err
    assert "37 of 40 utterances already have features" in err
    assert "of 3 utterances" in err and "Done 40 of 40 utterances, 0 failed" in err
    assert b"garbage" not in (out / "feats.2.lca").read_bytes()
    second = load(out)
    assert list(second) == list(first)
    for k in first:
        assert np.array_equal(first[k], second[k].load_features())
    # Other options are refused rather than mixed in.
    rc, err = run(["--num-mel-bins", 40, data, out], capsys)
    assert rc == 2 and "num_mel_bins: 80 there, 40 now" in err


def test_unknown_config_key(data, tmp_path, capsys):
    cfg = tmp_path / "fbank.yaml"
    cfg.write_text("num-mel-bins: 40\nnum_mel_bns: 80\n")
    rc, err = run(["--config", cfg, data, tmp_path / "f"], capsys)
    assert rc == 2 and "unknown key 'num_mel_bns'" in err


def test_config_supplies_defaults(data, tmp_path, capsys):
    cfg = tmp_path / "mfcc.yaml"
    cfg.write_text("feature-type: mfcc\nnum_mel_bins: 40\n")
    rc, err = run(["--config", cfg, "--num-ceps", 20, data, tmp_path / "f"], capsys)
    assert rc == 0, err
    c = next(iter(load(tmp_path / "f").values()))
    assert c.features.type == "sltk-mfcc" and c.load_features().shape[1] == 20


def test_speed_perturb_kaldi_and_segments(tmp_path, capsys):
    from sltk.data.kaldi_ark import read_scp

    data = make_data_dir(tmp_path / "src", n=4, segments=True)
    out, kdir = tmp_path / "f", tmp_path / "kaldi"
    rc, err = run(["--speed-perturb", "0.9,1.1", "--write-kaldi", kdir, data, out], capsys)
    assert rc == 0, err
    cuts = load(out)
    assert len(cuts) == 8 * 3
    assert {"spk0-u000-1", "spk0-u000-1_sp0.9", "spk0-u000-1_sp1.1"} <= set(cuts)
    sp = cuts["spk0-u000-1_sp1.1"]
    assert sp.supervisions[0].id == "spk0-u000-1_sp1.1"
    assert abs(sp.duration - cuts["spk0-u000-1"].duration / 1.1) < 1e-3
    for c in cuts.values():
        assert c.load_features().shape == (c.num_frames, 80)
    # Kaldi archives hold the exact float32 features; the lilcom ones are within half a tick.
    kaldi = dict(read_scp(kdir / "feats.scp"))
    assert set(kaldi) == set(cuts)
    for k, c in cuts.items():
        assert np.abs(kaldi[k] - c.load_features()).max() <= 2.0 ** -6 + 1e-6
    assert (kdir / "utt2num_frames").read_text().split("\n")[0].split()[0] == sorted(cuts)[0]


def test_cuts_input_and_wrong_sample_rate(data, tmp_path, capsys):
    from lhotse import CutSet

    from sltk.data.kaldi import DataDir
    from sltk.data.lhotse_io import to_lhotse

    d = DataDir.read(data).subset(DataDir.read(data).utt_ids[:6])
    odd = tmp_path / "8k.wav"
    sf.write(odd, np.zeros(8000, dtype=np.float32), 8000)
    d.wav_scp[d.utt_ids[0]] = str(odd)
    recs, sups = to_lhotse(d)
    cuts_path = tmp_path / "cuts_in.jsonl.gz"
    CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(cuts_path)
    rc, err = run(["--cuts", cuts_path, "--max-failed-percent", 50, tmp_path / "f"], capsys)
    assert rc == 0, err
    assert f"{odd} (cut {d.utt_ids[0]}" in err  # lhotse's from_manifests names cuts <id>-<channel>
    assert "has sample rate 8000 Hz, expected 16000 Hz" in err
    assert "Done 5 of 6 utterances, 1 failed" in err
    assert len(load(tmp_path / "f")) == 5


def test_bad_arguments(data, tmp_path, capsys):
    rc, err = run([tmp_path / "nowhere", tmp_path / "f"], capsys)
    assert rc == 2 and "data directory" in err and "does not exist" in err
    rc, err = run([tmp_path / "f"], capsys)
    assert rc == 2 and "expected DATA_DIR FEATS_DIR" in err
    rc, err = run(["--speed-perturb", "0.9,fast", data, tmp_path / "f"], capsys)
    assert rc == 2 and "'fast' is not a number" in err
