"""convert-accent: make-data, train, train-judges, convert and eval on a tiny corpus; the
identity of remapping to the same accent through the whole system; clear errors."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from sltk.bin.convert_accent import main

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vc")
    data, exp = root / "data", root / "exp"
    rc = main(["make-data", "--accents", "en-us,en-gb-scotland", "--voices", "m3,f2", "--train-per-voice", "2",
               "--judge-per-voice", "2", "--eval-sentences", "1", "--nj", "2", str(data)], standalone_mode=False)
    assert rc in (0, None)
    args = ["train", "--epochs", "1", "--steps", "2", "--hidden", "16", "--aligner-iterations", "1",
            "--recognizer-epochs", "1", str(data / "train"), str(exp / "flow")]
    assert main(args, standalone_mode=False) in (0, None)
    assert main(["train-judges", "--epochs", "1", str(data / "judge"), str(exp / "judges")],
                standalone_mode=False) in (0, None)
    return root, data, exp, args


def test_data_layout(trained):
    _, data, _, _ = trained
    info = json.loads((data / "corpus.json").read_text())
    assert info["sets"] == {"train": 8, "judge": 8, "eval": 4}
    for s in ("train", "judge", "eval"):
        ids = [[l.split()[0] for l in (data / s / t).read_text().splitlines()]
               for t in ("wav.scp", "text", "utt2spk", "utt2accent", "utt2sent", "phones")]
        assert all(i == ids[0] for i in ids) and ids[0] == sorted(ids[0])
    texts = {}
    for line in (data / "train" / "text").read_text().splitlines():
        u, t = line.split(" ", 1)
        texts.setdefault(t, set()).add(u.split("-")[1])
    assert all(len(a) == 1 for a in texts.values())  # non-parallel


def test_train_resumes_and_holds_everything(trained):
    import torch

    _, _, exp, args = trained
    ck = torch.load(exp / "flow" / "final.pt", weights_only=False)
    assert ck["kind"] == "convert-accent-flow" and ck["accents"] == ["en-gb-scotland", "en-us"]
    assert set(ck) >= {"aligner", "durations", "p2p", "recognizer", "vocab", "norm", "history"}
    mtime = (exp / "flow" / "last.pt").stat().st_mtime
    assert main(args, standalone_mode=False) in (0, None)  # already trained: nothing redone
    assert (exp / "flow" / "last.pt").stat().st_mtime == mtime
    j = json.loads((exp / "judges" / "judges.json").read_text())
    assert set(j["accuracy"]) == {"accent_acc", "speaker_acc"}


def test_remap_to_the_same_accent_is_the_identity(trained):
    from sltk.audio.io import read_audio
    from sltk.vc.system import AccentConverter

    _, data, exp, _ = trained
    conv = AccentConverter.load(exp / "flow" / "final.pt")
    wav = sorted((data / "wav").glob("m3_p0_r100-enus-eval*.wav"))[0]
    text = dict(l.split(" ", 1) for l in (data / "eval" / "text").read_text().splitlines())[wav.stem]
    a = conv.analyse(read_audio(str(wav))[0], "en-us", "m3_p0_r100", text)
    for system in ("plain", "remap", "remap+warp+attend"):
        y = conv.convert(a, "en-us", system) if system != "remap+warp+attend" else None
        if y is not None:
            assert y.shape == a.mel.shape and float((y - a.mel).abs().max()) < 1e-3, system
    y = conv.convert(a, "en-gb-scotland", "remap+warp+attend")
    assert y.shape[1] == 80 and float((y[: min(len(y), len(a.mel))] - a.mel[: min(len(y), len(a.mel))]).abs().max()) > 0


def test_latent_scale_zero_decodes_the_conditioning_alone(trained):
    import torch

    from sltk.audio.io import read_audio
    from sltk.vc.system import AccentConverter

    _, data, exp, _ = trained
    conv = AccentConverter.load(exp / "flow" / "final.pt")
    wavs = sorted((data / "wav").glob("m3_p0_r100-enus-eval*.wav"))
    text = dict(l.split(" ", 1) for l in (data / "eval" / "text").read_text().splitlines())[wavs[0].stem]
    a = conv.analyse(read_audio(str(wavs[0]))[0], "en-us", "m3_p0_r100", text)
    full = conv.convert(a, "en-us", "plain")
    conv.latent_scale = 0.0
    y = conv.convert(a, "en-us", "plain")
    # z = 0: the flow's reverse pass of the conditioning only, whatever the audio was
    cond = conv._cond(a.units, a.durations, a.speaker, "en-us")
    ref = conv.model.reverse(torch.zeros(1, a.mel.shape[0], a.mel.shape[1]), cond)[0] * conv.std + conv.mean
    assert y.shape == full.shape and float((y - ref).abs().max()) < 1e-4
    assert float((y - full).abs().max()) > 1e-3


def test_convert_and_eval(trained, tmp_path, capsys):
    _, data, exp, _ = trained
    wav = sorted((data / "wav").glob("f2_p0_r100-enus-eval*.wav"))[0]
    out = tmp_path / "out.wav"
    for extra in (["--text", "Nobody sorted the hot boat."], []):
        rc = main(["convert", "--source-accent", "en-us", "--speaker", "f2_p0_r100", "--target-accent",
                   "en-gb-scotland", *extra, str(exp / "flow" / "final.pt"), str(wav), str(out)], standalone_mode=False)
        assert rc in (0, None)
        y, sr = sf.read(out)
        assert sr == 16000 and len(y) > 1600 and np.abs(y).max() > 0.01
    capsys.readouterr()
    ev = tmp_path / "eval"
    rc = main(["eval", "--num-wavs", "1", str(exp / "flow" / "final.pt"), str(exp / "judges" / "judges.pt"),
               str(data / "eval"), str(ev)], standalone_mode=False)
    assert rc in (0, None)
    m = json.loads((ev / "metrics.json").read_text())
    assert list(m["systems"]) == ["source", "plain", "remap", "remap+warp", "remap+warp+attend", "target"]
    assert m["pairs"] == 4
    for s, r in m["systems"].items():
        assert 0 <= r["accent_post"] <= 1 and -1 <= r["spk_cos"] <= 1 and r["dur_ratio"] > 0, s
    assert m["systems"]["target"]["mcd_db"] == 0 and m["systems"]["source"]["mcd_db"] > 0
    assert "| remap + warp + attend |" in capsys.readouterr().out
    assert len(list((ev / "wav").glob("*.wav"))) == 6
    plots = list((ev / "plot").glob("*.png"))       # one picture for the one pair with wavs
    assert len(plots) == 1 and plots[0].read_bytes()[:4] == b"\x89PNG"
    assert m["sources_analysed"] == "with their text"
    # without transcripts: recognised phones; the unconverted rows cannot depend on the analysis
    ev2 = tmp_path / "eval_no_text"
    rc = main(["eval", "--no-text", "--num-wavs", "0", str(exp / "flow" / "final.pt"),
               str(exp / "judges" / "judges.pt"), str(data / "eval"), str(ev2)], standalone_mode=False)
    assert rc in (0, None)
    m2 = json.loads((ev2 / "metrics.json").read_text())
    assert m2["sources_analysed"].startswith("without text") and m2["pairs"] == 4
    assert not (ev2 / "plot").exists()
    for s in ("source", "target"):
        assert m2["systems"][s] == m["systems"][s], s
    for s, r in m2["systems"].items():
        assert 0 <= r["accent_post"] <= 1 and r["dur_ratio"] > 0, s


def _run(args, env):
    return subprocess.run(["convert-accent", *args], capture_output=True, text=True, env=env, timeout=120)


def test_help(run_env):
    r = _run(["--help"], run_env)
    assert r.returncode == 0 and "make-data" in r.stdout and "eval" in r.stdout and "Examples:" in r.stdout
    r = _run(["convert", "--help"], run_env)
    assert r.returncode == 0 and "--target-accent" in r.stdout


def test_bad_input_is_one_clear_error(trained, tmp_path, run_env):
    _, data, exp, _ = trained
    model = str(exp / "flow" / "final.pt")
    wav = str(sorted((data / "wav").glob("*.wav"))[0])
    cases = [
        (["convert", "--source-accent", "en-us", "--speaker", "m3_p0_r100", "--target-accent", "en-mars", model, wav,
          str(tmp_path / "o.wav")], "unknown accent 'en-mars' (known accents: en-gb-scotland, en-us)"),
        (["convert", "--source-accent", "en-us", "--speaker", "nobody", "--target-accent", "en-us", model, wav,
          str(tmp_path / "o.wav")], "unknown speaker 'nobody'"),
        (["convert", "--source-accent", "en-us", "--speaker", "m3_p0_r100", "--target-accent", "en-us", model,
          str(tmp_path / "missing.wav"), str(tmp_path / "o.wav")], "missing.wav does not exist"),
        (["convert", "--source-accent", "en-us", "--speaker", "m3_p0_r100", "--target-accent", "en-us", wav, wav,
          str(tmp_path / "o.wav")], "is not a convert-accent model"),
        (["make-data", "--accents", "en-us,en-xx", str(tmp_path / "d")], "unknown accent 'en-xx' (known accents: en-us,"),
        (["train", str(tmp_path / "nodata"), str(tmp_path / "e")], "nodata does not exist"),
    ]
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    cases.append((["convert", "--source-accent", "en-us", "--speaker", "m3_p0_r100", "--target-accent", "en-us",
                   model, str(bad), str(tmp_path / "o.wav")], "corrupt.wav"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochz: 3\n")
    cases.append((["train", "--config", str(cfg), str(data / "train"), str(tmp_path / "e")], "unknown key 'epochz'"))
    for args, msg in cases:
        r = _run(args, run_env)
        assert r.returncode == 2, (args, r.stderr[-1000:])
        err = [l for l in r.stderr.splitlines() if "error" in l]
        assert len(err) == 1 and err[0].startswith("convert-accent: error: ") and msg in err[0], (msg, err)
        assert "Traceback" not in r.stderr
