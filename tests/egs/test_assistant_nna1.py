"""The assistant/nna1 recipe end to end at --size tiny, on the model of assistant/asr1 (copies of
both recipes in a tmp dir): NNA three-arm tables, quantizer table, packed models, plot, resume."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARMS = ["qat8", "qat4", "ptq8", "ptq5", "ptq4", "gq5", "gq4", "gq3", "gq_mixed"]
NUM = r"\d+\.\d\d"                                  # a WER cell
COST = r"(- \| -|\d+ \| \d+(\.\d)? (s|min))"        # fine-tuning steps | time


@pytest.mark.slow
def test_tiny_nna_recipe_end_to_end(tiny_asr1):
    egs, env, copy = tiny_asr1
    run = copy("nna1")
    r = subprocess.run([str(run), "--size", "tiny", "--nj", "2"], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    exp = egs / "assistant" / "nna1" / "exp" / "tiny"
    md = (exp / "results.md").read_text()
    res = json.loads((exp / "results.json").read_text())

    # the three arms of each profile, with numeric WERs on both test sets
    assert res["ft_float"]["steps"] == 30 and (exp / "ft_float" / "checkpoint-30.pt").is_file()
    for p in ("int8", "harsh", "harsh5"):
        block = md.split(f"### NNA profile {p}")[1].split("###")[0]
        for arm in ("float / float", "float-trained / NNA (PTQ)", "fine-tuned float / float (control)",
                    "fine-tuned float / NNA (PTQ, control)", "AAT / NNA"):
            assert re.search(rf"^\| {re.escape(arm)} \|[^\n]*\| {NUM} \| {NUM} \| {COST} \|$", block, re.M), \
                (arm, block)
        assert "AAT fine-tuning cost: 30 steps" in block and "nna-report:" in block
        e = res["profiles"][p]
        for arm in ("ptq", "ptq_ft", "aat"):
            assert all(isinstance(w, float) for w in e[arm]["wer"]["greedy"].values())
        assert "against the same-budget control" in block
        assert e["aat"]["steps"] == 30 and e["report"]["operators"] > 0
        assert (exp / f"aat_{p}" / "checkpoint-30.pt").is_file()
    assert res["asr_training"]["steps"] > 0 and res["asr_training"]["time_s"] > 0

    # every quantizer arm: numeric WERs, a packed file, smaller than the 8-bit model below 8 bits
    quant = md.split("### Quantizers")[1].split("###")[0]
    assert re.search(rf"^\| float \| 32 \|[^\n]*\| {NUM} \| {NUM} \| - \| - \|$", quant, re.M)
    assert re.search(rf"^\| float, fine-tuned \(control\) \| 32 \|[^\n]*\| {NUM} \| {NUM} \| 30 \| \d+ s \|$",
                     quant, re.M), quant
    for arm in ARMS:
        q = res["quantizers"][arm]
        assert re.search(rf"^\| {re.escape(q['label'])} \|[^\n]*\| {NUM} \| {NUM} \| {COST} \|$", quant, re.M), \
            (arm, quant)
        assert all(isinstance(w, float) for w in q["wer"]["greedy"].values())
        packed = exp / "quant" / arm / "model.packed"
        assert packed.is_file() and os.path.getsize(packed) == q["file_bytes"]
        if arm not in ("qat8", "ptq8"):
            assert q["avg_bits"] < 8
            assert q["file_bytes"] < q["file_bytes_8bit"] and q["bytes"] < q["bytes_8bit"], arm
        assert set(q["latency"]) == {"packed", "8bit", "float"}
    assert res["quantizers"]["gq3"]["avg_bits"] == 3.0
    sizes = json.loads((exp / "quant" / "gq_mixed" / "size.json").read_text())
    assert min(t["bits"] for t in sizes["tensors"] if t["kind"] != "float") <= 2   # some layers at 2 bits
    assert "Decoding latency" in md
    png = exp / "wer_vs_bits.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a rerun skips every stage
    r = subprocess.run([str(run), "--size", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stderr
    # an unknown option is an error naming it
    r = subprocess.run([str(run), "--gq-bitz", "3"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--gq-bitz" in r.stderr
