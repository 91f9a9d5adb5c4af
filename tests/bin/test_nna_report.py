"""nna-report: the fallbacks and conversions of a toy model, and its refusals."""

import json
import subprocess
import sys
from pathlib import Path

import torch

CONF = Path(__file__).resolve().parents[2] / "egs" / "assistant" / "nna1" / "conf" / "nna"


def run(args, env):
    return subprocess.run([sys.executable, "-m", "sltk.bin.nna_report"] + args, capture_output=True, text=True,
                          env=env, timeout=300)


def test_nna_report_lists_fallbacks(overfit_model, tmp_path, run_env):
    exp, cfg = overfit_model
    ckpt = exp / f"epoch-{cfg.num_epochs}.pt"
    r = run(["--help"], run_env)
    assert r.returncode == 0 and "--nna-config" in r.stdout and "Examples" in r.stdout
    r = run(["--checkpoint", str(ckpt), "--nna-config", str(CONF / "harsh.yaml"), "--json", str(tmp_path / "r.json")],
            run_env)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    # the toy LSTM transducer on the harsh NNA: both layer norms fall back to the CPU
    assert rep["fallback_kinds"] == ["layernorm"]
    assert [o["name"] for o in rep["fallbacks"]] == ["encoder.layers.0.norm", "encoder.layers.1.norm"]
    c = rep["conversions"]
    # per frame: features in (4 input frames per encoder frame), out of and back into the NNA
    # around each layer norm (2 x 2), the logits out to the search (1)
    assert abs(c["per_encoder_frame"] - (4.03 + 4 + 1)) < 0.01 and c["decoder_per_token"] == 0
    assert "encoder.layers.0.norm" in r.stdout and "CPU (float fallback)" in r.stdout
    assert "Fallbacks to float on the CPU: 2 operators (layernorm)" in r.stdout
    assert "Done 21 of 21 operators traced" in r.stderr
    # int8: nothing falls back
    r = run(["--checkpoint", str(ckpt), "--nna-config", str(CONF / "int8.yaml")], run_env)
    assert r.returncode == 0 and "Fallbacks to float on the CPU: none" in r.stdout


def test_nna_report_uses_the_recorded_profile_and_refuses_bad_input(overfit_model, tmp_path, run_env):
    from sltk.asr.checkpoint import load_model, save_checkpoint
    from sltk.nna import emulate as E
    from sltk.nna.profile import load_profile

    exp, cfg = overfit_model
    ckpt = exp / f"epoch-{cfg.num_epochs}.pt"
    model = load_model(ckpt)
    prof = load_profile(CONF / "harsh.yaml")
    E.convert(model, prof)
    save_checkpoint(tmp_path / "aat.pt", model, transforms=[{"kind": "nna", **E.transform_meta(prof)}])
    r = run(["--checkpoint", str(tmp_path / "aat.pt")], run_env)
    assert r.returncode == 0 and "NNA profile harsh" in r.stdout and "encoder.layers.1.norm" in r.stdout
    r = run(["--checkpoint", str(ckpt)], run_env)
    assert r.returncode == 2 and "records no NNA profile; give --nna-config" in r.stderr
    r = run(["--checkpoint", str(tmp_path / "none.pt"), "--nna-config", str(CONF / "int8.yaml")], run_env)
    assert r.returncode == 2 and "none.pt does not exist" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONF / "int8.yaml").read_text().replace("weights:", "weights:\n  bitz: 3"))
    r = run(["--checkpoint", str(ckpt), "--nna-config", str(bad)], run_env)
    assert r.returncode == 2 and "unknown key 'bitz'" in r.stderr and "Traceback" not in r.stderr
    assert torch.load(tmp_path / "aat.pt", weights_only=False)["transforms"][0]["kind"] == "nna"
