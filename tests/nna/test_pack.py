"""The packed model format: bit packing, exact round trips, loading, the size report."""

import numpy as np
import pytest
import torch

from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.nna import gq, pack, uniform
from sltk.nna.qparam import BitAllocation, quantized_state
from sltk.utils.errors import UserError


def toy_transducer(toy_model):
    torch.manual_seed(0)
    return Transducer(ModelConfig(vocab_size=12, **toy_model))


# ------------------------------------------------------------------ bit packing
def test_pack_bits_layout_by_hand():
    # 3-bit codes 1, 2, 7, LSB first: 100 010 111 -> bytes 1,0,0,0,1,0,1,1 | 1 -> 209, 1
    assert pack.pack_bits([1, 2, 7], 3).tolist() == [209, 1]
    assert pack.pack_bits([1, 0, 1, 1, 0, 0, 0, 0, 1], 1).tolist() == [0b1101, 1]
    assert pack.pack_bits([0xA, 0x5], 4).tolist() == [0x5A]
    assert pack.unpack_bits(np.array([209, 1], np.uint8), 3, 3).tolist() == [1, 2, 7]


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 13, 1001])
def test_pack_unpack_exact(bits, n):
    rng = np.random.default_rng(bits * 1000 + n)
    codes = rng.integers(0, 2 ** bits, n)
    if n:
        codes[0], codes[-1] = 2 ** bits - 1, 0  # both ends of the range
    buf = pack.pack_bits(codes, bits)
    assert buf.dtype == np.uint8 and buf.size == pack.packed_size(n, bits) == (n * bits + 7) // 8
    assert np.array_equal(pack.unpack_bits(buf, bits, n), codes)


def test_pack_bits_refuses_out_of_range():
    with pytest.raises(ValueError, match="range"):
        pack.pack_bits([0, 4], 2)
    with pytest.raises(ValueError, match="range"):
        pack.pack_bits([-1], 3)
    with pytest.raises(ValueError, match="fewer"):
        pack.unpack_bits(np.zeros(2, np.uint8), 3, 6)


# ------------------------------------------------------------------ models
def _gq_model(toy_model, default=3):
    m = toy_transducer(toy_model)
    alloc = BitAllocation.from_dict({"default": default, "layers": {"decoder.embedding": "float",
                                                                   "encoder.layers.1": 1, "joiner.output": 7}})
    bits = alloc.for_model(m)
    gq.apply_gq(m, bits)
    return m, bits


def _assert_exact(model, state):
    want = quantized_state(model)
    assert set(want) == set(state)
    for k, v in want.items():
        assert v.dtype == state[k].dtype and torch.equal(v, state[k]), k


def test_gq_model_round_trip_exact(toy_model, tmp_path):
    m, bits = _gq_model(toy_model)
    obj = pack.save_packed(tmp_path / "m.packed", m, "gq", {"bits": bits})
    kinds = {e["name"]: e["kind"] for e in obj["entries"]}
    assert kinds["decoder.embedding.weight"] == "float" and kinds["joiner.output.weight"] == "codebook"
    assert kinds["encoder.layers.0.lstm.bias_ih_l0"] == "float" and kinds["feat_mean"] == "float"
    _assert_exact(m, pack.unpack_state(pack.read_packed(tmp_path / "m.packed")))
    loaded = pack.load_packed(tmp_path / "m.packed")
    assert isinstance(loaded, Transducer)
    m.eval()
    loaded.eval()
    feats, lens = torch.randn(2, 33, 20), torch.tensor([33, 25])
    with torch.no_grad():
        assert torch.equal(m.encode(feats, lens)[0], loaded.encode(feats, lens)[0])


@pytest.mark.parametrize("learn_scale", [True, False])
def test_uniform_model_round_trip_exact(toy_model, tmp_path, learn_scale):
    m = toy_transducer(toy_model)
    bits = BitAllocation.from_dict({"default": 5, "layers": {"joiner": 2, "decoder.embedding": "float"}}).for_model(m)
    uniform.apply_uniform(m, bits, learn_scale=learn_scale)
    if learn_scale:  # a learned step size that is not min/max any more
        for _, q in uniform.uniform_quantizers(m):
            q.scale.data *= 0.7
    pack.save_packed(tmp_path / "u.packed", m, "uniform")
    _assert_exact(m, pack.unpack_state(pack.read_packed(tmp_path / "u.packed")))


def test_ptq_codes_and_distinct_values(toy_model):
    m = toy_transducer(toy_model)
    bits = uniform.apply_ptq(m, BitAllocation.uniform(4))
    assert all(b == 4 for b in bits.values())
    state = quantized_state(m)
    w = state["joiner.output.weight"]
    for row in w:  # per channel: at most 15 values, multiples of the row's step size
        s = row.abs().max() / 7
        assert row.unique().numel() <= 15
        assert torch.allclose(row / s, (row / s).round(), atol=1e-4)
    with pytest.raises(UserError, match="2..8 bits"):
        uniform.apply_ptq(Transducer(m.cfg), BitAllocation.uniform(1))


def test_size_report(toy_model, tmp_path):
    m, bits = _gq_model(toy_model, default=4)
    obj = pack.save_packed(tmp_path / "m.packed", m, "gq")
    rep = pack.size_report(obj, pack.file_size(tmp_path / "m.packed"))
    rows = {r["name"]: r for r in rep["tensors"]}
    # joiner.output.weight (12, 64) at 7 bits: 672 bytes of codes + 128 centroids * 4 bytes
    r = rows["joiner.output.weight"]
    assert (r["bits"], r["bytes"], r["bytes_8bit"], r["bytes_float32"]) == (7, 672 + 512, 768 + 48, 3072)
    r = rows["decoder.embedding.weight"]  # left in float: its float bytes, 8-bit in the reference
    assert (r["kind"], r["bytes"], r["bytes_8bit"]) == ("float", 12 * 32 * 4, 12 * 32 + 12 * 4)
    assert rows["joiner.output.bias"]["bytes"] == rows["joiner.output.bias"]["bytes_8bit"] == 48
    t = rep["total"]
    assert t["bytes"] == sum(x["bytes"] for x in rep["tensors"]) == obj["blob"].numel()
    assert t["file_bytes"] == (tmp_path / "m.packed").stat().st_size
    assert t["file_bytes"] < t["file_bytes_8bit"] and t["vs_8bit"] < -0.3
    assert 1 < t["avg_bits"] < 5
    # the reference is a real 8-bit file of the same model: its size is its blob plus the table
    assert t["file_bytes_8bit"] - t["bytes_8bit"] < 20000
    assert t["vs_8bit_file"] < -0.3
    text = pack.format_report(rep)
    assert "joiner.output.weight" in text and "8-bit model" in text
    # the 8-bit PTQ model is the reference itself
    m8 = toy_transducer(toy_model)
    uniform.apply_ptq(m8, BitAllocation.uniform(8))
    t8 = pack.size_report(pack.packed_object(m8, "uniform"))["total"]
    assert t8["vs_8bit"] == 0.0 and t8["bytes"] == t8["bytes_8bit"] and t8["avg_bits"] == 8.0


def test_read_packed_errors(tmp_path, toy_model):
    bad = tmp_path / "bad.packed"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.packed cannot be read"):
        pack.load_packed(bad)
    with pytest.raises(UserError, match="does not exist"):
        pack.load_packed(tmp_path / "none.packed")
    torch.save({"format": "sltk-transducer-v1"}, tmp_path / "ckpt.pt")
    with pytest.raises(UserError, match="not an sltk packed model"):
        pack.load_packed(tmp_path / "ckpt.pt")
    m, _ = _gq_model(toy_model)
    obj = pack.packed_object(m, "gq")
    obj["blob"] = obj["blob"][:100]
    torch.save(obj, tmp_path / "short.packed")
    with pytest.raises(UserError, match="corrupt"):
        pack.load_packed(tmp_path / "short.packed")
