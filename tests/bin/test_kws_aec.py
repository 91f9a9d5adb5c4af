"""kws-aec: train/score/eval/detect on a tiny synthetic data dir, and clear errors."""

import json
import subprocess

import numpy as np
import soundfile as sf

from sltk.bin.kws_aec import main

SR = 16000


def make_dir(d, n=8, seed=0):
    """Tone bursts: 1 kHz = keyword, 2 kHz = device-directed; references are noise or silence."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    (d / "wav").mkdir()
    rows = {k: [] for k in ("wav.scp", "ref.scp", "utt2kw", "utt2dd", "utt2ser")}
    for i in range(n):
        u = f"spk{i % 2}-{i:03d}"
        kw, dd = i % 2, (i // 2) % 2
        t = np.arange(SR) / SR
        ref = 0.1 * rng.standard_normal(SR) if i % 3 else np.zeros(SR)
        mic = 0.01 * rng.standard_normal(SR) + 0.5 * np.convolve(ref, [0, 0.5, 0.2])[:SR]
        mic += 0.3 * kw * np.sin(2 * np.pi * 1000 * t) + 0.3 * dd * np.sin(2 * np.pi * 2000 * t)
        sf.write(d / "wav" / f"{u}.wav", mic.astype(np.float32), SR, subtype="PCM_16")
        sf.write(d / "wav" / f"{u}-ref.wav", ref.astype(np.float32), SR, subtype="PCM_16")
        rows["wav.scp"].append(f"{u} {d / 'wav' / f'{u}.wav'}")
        rows["ref.scp"].append(f"{u} {d / 'wav' / f'{u}-ref.wav'}")
        rows["utt2kw"].append(f"{u} {kw}")
        rows["utt2dd"].append(f"{u} {dd}")
        rows["utt2ser"].append(f"{u} " + ("clean" if i % 3 == 0 else str(-8 + 3 * i)))
    for name, lines in rows.items():
        (d / name).write_text("".join(sorted(l + "\n" for l in lines)))
    return d


def test_train_score_eval_detect(tmp_path, capsys):
    data = make_dir(tmp_path / "data")
    exp = tmp_path / "exp"
    args = ["train", "--variant", "early", "--epochs", "2", "--channels", "8", "--batch-size", "4",
            str(data), str(exp)]
    assert main(args, standalone_mode=False) in (0, None)
    assert (exp / "final.pt").is_file() and (exp / "epoch-2.pt").is_file()
    assert json.loads((exp / "complexity.json").read_text())["params"] > 0
    # resume: already done, nothing to redo
    assert main(args, standalone_mode=False) in (0, None)
    capsys.readouterr()
    assert main(["score", str(exp / "final.pt"), str(data)], standalone_mode=False) in (0, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and all(0 <= float(x) <= 1 for l in lines for x in l.split()[1:])
    for extra, out in (([], "ev"), (["--shuffle-ref"], "ev_shuf")):
        rc = main(["eval", "--model", str(exp / "final.pt"), *extra, str(data), str(tmp_path / out)],
                  standalone_mode=False)
        assert rc in (0, None)
        m = json.loads((tmp_path / out / "metrics.json").read_text())
        assert set(m["tasks"]) == {"kw", "dd"} and "clean" in m["tasks"]["kw"] and m["shuffle_ref"] == bool(extra)
        assert (tmp_path / out / "det_kw.png").stat().st_size > 1000
    rc = main(["eval", "--scores", str(tmp_path / "ev" / "scores.txt"), str(data), str(tmp_path / "ev2")],
              standalone_mode=False)
    assert rc in (0, None)
    capsys.readouterr()
    u = "spk1-001"
    rc = main(["detect", "--threshold-kw", "0.0", "--name", "rec", str(exp / "final.pt"),
               str(data / "wav" / f"{u}.wav"), str(data / "wav" / f"{u}-ref.wav")], standalone_mode=False)
    assert rc in (0, None)
    out = capsys.readouterr().out.splitlines()
    # threshold 0: one keyword event spanning the recording
    kw = [l.split() for l in out if l.split()[3] == "kw"]
    assert len(kw) == 1 and kw[0][0] == "rec" and float(kw[0][1]) == 0.0 and float(kw[0][2]) > 0.9


def test_ref_scp_missing_an_utterance_is_exit_2(tmp_path, run_env):
    data = make_dir(tmp_path / "data", n=3)
    lines = (data / "ref.scp").read_text().splitlines()
    (data / "ref.scp").write_text(lines[0] + "\n" + lines[2] + "\n")
    model = tmp_path / "m.pt"
    from sltk.kws.models import KWSModel
    from sltk.kws.train import save_checkpoint
    save_checkpoint(model, KWSModel("early", channels=8))
    r = subprocess.run(["kws-aec", "score", str(model), str(data)], capture_output=True, text=True, env=run_env,
                       timeout=120)
    assert r.returncode == 2
    err = [l for l in r.stderr.splitlines() if "error" in l]
    assert err == [f"kws-aec: error: {data / 'ref.scp'} lacks 1 of the 3 utterances of wav.scp (first: spk0-002)"]
    assert "Traceback" not in r.stderr


def test_non_finite_audio_is_a_clear_error_before_training(tmp_path, run_env):
    data = make_dir(tmp_path / "data", n=4)
    bad = data / "wav" / "spk1-001.wav"
    x, _ = sf.read(bad, dtype="float32")
    x[100:200] = np.nan
    sf.write(bad, x, SR, subtype="FLOAT")
    exp = tmp_path / "exp"
    r = subprocess.run(["kws-aec", "train", "--variant", "mic", "--epochs", "1", "--channels", "8", str(data), str(exp)],
                       capture_output=True, text=True, env=run_env, timeout=120)
    assert r.returncode == 2, r.stderr
    err = [l for l in r.stderr.splitlines() if "error" in l]
    assert err == [f"kws-aec: error: non-finite input features in 1 utterance(s) of {data} (variant mic), e.g. spk1-001"]
    assert not list(exp.glob("epoch-*.pt"))
