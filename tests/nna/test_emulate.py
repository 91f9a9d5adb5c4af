"""The NNA emulation against a hand-written integer reference (plain Python ints), the fake-quant
training forward against the integer path, and the straight-through gradients.

The references below re-derive every step from the documented datapath (sltk.nna.emulate):
codes ``round_half_away(x / s)`` clamped, exact integer sums, saturation to the accumulator,
requantization ``(|a*m| + 2^(n-1)) >> n`` with the sign, LUT entries, clamps. Scales are chosen
as powers of two where a test needs exact ties (2.5 -> 3, -2.5 -> -3), and as plain reals where
the requantization multiplier must be a real fixed-point approximation.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sltk.nna import emulate as E
from sltk.nna.profile import NNAProfile
from sltk.nna.quant import fake_quant, quantize_multiplier, symmetric_scale


def profile(acc_bits=32, mult_bits=31, per_channel=True, cell_bits=16, lut_entries=16, act_bits=8, **ops):
    d = {
        "name": "test",
        "weights": {"bits": 8, "granularity": "per_channel" if per_channel else "per_tensor"},
        "activations": {"bits": act_bits, "signedness": "signed"},
        "accumulator": {"bits": acc_bits, "saturate": True},
        "requant": {"multiplier_bits": mult_bits},
        "lstm": {"cell_bits": cell_bits},
        "luts": {"sigmoid": {"entries": lut_entries, "input_range": 4.0, "output_bits": 8},
                 "tanh": {"entries": lut_entries, "input_range": 2.0, "output_bits": 8}},
        "operators": {k: "nna" for k in ("linear", "conv", "lstm", "embedding", "layernorm", "tanh", "sigmoid")},
    }
    d["operators"].update(ops)
    return NNAProfile.from_dict(d)


# ------------------------------------------------------------------ the plain-int reference
def rha(v: float) -> int:
    """Round half away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def sat(v: int, bits: int) -> int:
    return clamp(v, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def rq(acc: int, real: float, bits: int) -> int:
    """Requantize by the fixed-point multiplier of ``real``."""
    m, n = quantize_multiplier(real, bits)
    p = acc * m
    mag = (abs(p) + (1 << (n - 1) if n > 0 else 0)) >> n
    return -mag if p < 0 else mag


def f32(v: float) -> float:
    return float(np.float32(v))


def set_range(obs, lo, hi):
    obs.min_val.fill_(lo)
    obs.max_val.fill_(hi)
    obs.count.fill_(1)
    obs.frozen.fill_(True)


# ------------------------------------------------------------------------------ Linear
@pytest.mark.parametrize("acc_bits,out_range", [(32, 5.0), (32, 127 / 16), (16, 5.0)],
                         ids=["generic-multiplier", "exact-ties", "saturating-16bit"])
def test_linear_int_matches_reference(acc_bits, out_range):
    p = profile(acc_bits=acc_bits, mult_bits=15)
    wcodes = [[127, -3, 64, 127], [-127, 5, 0, 1], [100, -127, 127, 127]]
    s_w = [1 / 64, 1 / 128, 1 / 32]                       # each row's max code is 127: exact scales
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[c * s for c in row] for row, s in zip(wcodes, s_w)]))
        lin.bias.copy_(torch.tensor([0.3, -0.7, 2.0]))
    mod = E.NNALinear.from_float(lin, p, "lin")
    set_range(mod.in_obs, -1.0, 127 / 32)                  # s_x = 1/32
    set_range(mod.out_obs, -2.0, out_range)
    mod.nna_mode = "int"
    s_x, s_y = 1 / 32, f32(out_range) / 127
    # inputs: ties at +-2.5 and +-0.5 codes, a clamp at 10.0, big values that saturate 16 bits
    xs = [[2.5 / 32, -2.5 / 32, 0.5 / 32, 10.0], [-0.5 / 32, 3.9, -3.9, 1.23], [3.9, 3.9, -3.9, 3.9]]
    got = mod(torch.tensor(xs))
    for r, x in enumerate(xs):
        xq = [clamp(rha(v * 32), -127, 127) for v in x]
        assert r > 0 or xq[:3] == [3, -3, 1] and xq[3] == 127
        for c in range(3):
            bq = rha(f32(lin.bias[c].item()) / (s_x * s_w[c]))
            acc = sat(sum(a * b for a, b in zip(xq, wcodes[c])) + bq, acc_bits)
            yq = clamp(rq(acc, s_x * s_w[c] / s_y, 15), -127, 127)
            want = torch.tensor(float(yq), dtype=torch.float32) * s_y
            assert got[r, c].item() == want.item(), (r, c, xq, acc, yq)
    if acc_bits == 16:  # the last row saturates the accumulator of row 0: 4 * 127 * 127 > 2^15
        assert sum(127 * w for w in wcodes[0]) > 2 ** 15


# ------------------------------------------------------------------------------ LSTM
SIG_STEP, TANH_STEP = 0.5, 0.25                           # 16 entries over [-4, 4) and [-2, 2)


def lut(kind, entries=16):
    step = SIG_STEP if kind == "sigmoid" else TANH_STEP
    out = []
    for i in range(entries):
        x = (i - entries // 2) * step
        out.append(rha(1 / (1 + math.exp(-x)) * 255) if kind == "sigmoid" else rha(math.tanh(x) * 127))
    return out


def read(table, k):
    return table[clamp(k + len(table) // 2, 0, len(table) - 1)]


def lstm_reference(x_steps, h0, c0, wi, s_wi, wh, s_wh, bias, s_x, s_h, s_c, acc_bits, cell_bits, mult_bits):
    """One LSTM layer on codes, step by step, with plain ints. Returns (h codes per step, c codes)."""
    H = len(h0)
    SIG, TANH = lut("sigmoid"), lut("tanh")
    steps = [SIG_STEP] * H + [SIG_STEP] * H + [TANH_STEP] * H + [SIG_STEP] * H
    h, c = list(h0), list(c0)
    hs = []
    for x in x_steps:
        xq = [clamp(rha(v / s_x), -127, 127) for v in x]
        k = []
        for r in range(4 * H):
            bq = rha(bias[r] / (s_x * s_wi[r]))
            ax = sat(sum(a * b for a, b in zip(wi[r], xq)) + bq, acc_bits)
            ah = sat(sum(a * b for a, b in zip(wh[r], h)), acc_bits)
            k.append(rq(ax, s_x * s_wi[r] / steps[r], mult_bits) + rq(ah, s_h * s_wh[r] / steps[r], mult_bits))
        cmax = 2 ** (cell_bits - 1) - 1
        new_h, new_c = [], []
        for j in range(H):
            i, f = read(SIG, k[j]), read(SIG, k[H + j])
            g, o = read(TANH, k[2 * H + j]), read(SIG, k[3 * H + j])
            cj = clamp(rq(f * c[j], 1.0 / 255, mult_bits) + rq(i * g, 1.0 / (255 * 127 * s_c), mult_bits),
                       -cmax, cmax)
            t = read(TANH, rq(cj, s_c / TANH_STEP, mult_bits))
            new_h.append(clamp(rq(o * t, 1.0 / (255 * 127 * s_h), mult_bits), -127, 127))
            new_c.append(cj)
        h, c = new_h, new_c
        hs.append(h)
    return hs, c


@pytest.mark.parametrize("acc_bits,c_range", [(32, 2.0), (16, 0.05)], ids=["int32", "saturating-acc-and-cell"])
def test_lstm_step_int_matches_reference(acc_bits, c_range):
    I, H, mult = 3, 2, 31
    p = profile(acc_bits=acc_bits, mult_bits=mult, cell_bits=16)
    g = torch.Generator().manual_seed(3)
    wi = torch.randint(-126, 127, (4 * H, I), generator=g)
    wh = torch.randint(-126, 127, (4 * H, H), generator=g)
    wi[:, 0], wh[:, 0] = 127, -127                        # max code 127 per row: exact scales
    s_wi = [2.0 ** -(5 + r % 3) for r in range(4 * H)]
    s_wh = [2.0 ** -(6 + r % 2) for r in range(4 * H)]
    lstm = nn.LSTM(I, H, batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(wi * torch.tensor(s_wi)[:, None])
        lstm.weight_hh_l0.copy_(wh * torch.tensor(s_wh)[:, None])
        lstm.bias_ih_l0.copy_(torch.linspace(-1.5, 1.5, 4 * H))
        lstm.bias_hh_l0.zero_()
    mod = E.NNALSTM.from_float(lstm, p, "lstm")
    obs = mod.obs[0]
    set_range(obs["x"], -1.0, 127 / 32)                    # s_x = 1/32
    set_range(obs["h"], -1.0, 1.0)                         # s_h = 1/127
    set_range(obs["c"], -c_range / 2, c_range)              # s_c = c_range / 32767
    mod.nna_mode = "int"
    s_x, s_h, s_c = 1 / 32, 1.0 / 127, f32(c_range) / 32767
    x = [[2.5 / 32, -3.9, 1.0], [0.5, 0.25, -0.75]]        # two steps, a tie in the first
    h0q, c0q = [40, -90], [rha(0.3 / s_c) if c_range > 1 else 1000, -1638]
    h0 = torch.tensor([[[float(v) for v in h0q]]]) * s_h
    c0 = torch.tensor([[[float(v) for v in c0q]]]) * s_c
    out, (hn, cn) = mod(torch.tensor([x]), (h0, c0))
    bias = [f32(b) for b in (lstm.bias_ih_l0 + lstm.bias_hh_l0).tolist()]
    hs, c = lstm_reference(x, h0q, c0q, wi.tolist(), s_wi, wh.tolist(), s_wh, bias, s_x, s_h, s_c,
                           acc_bits, 16, mult)
    want = torch.tensor([[[float(v) for v in h] for h in hs]]) * s_h
    assert torch.equal(out, want), (out / s_h, hs)
    assert torch.equal(hn[0], want[:, -1])
    assert torch.equal(cn[0], torch.tensor([[float(v) for v in c]]) * s_c)
    if c_range < 1:  # the cell saturates at +-32767 codes
        assert max(abs(v) for v in c) == 32767


def test_lstm_projection_and_layers_run_and_keep_state_on_grid():
    p = profile()
    lstm = nn.LSTM(5, 8, num_layers=2, proj_size=4, batch_first=True)
    mod = E.NNALSTM.from_float(lstm, p, "lstm")
    x = torch.randn(2, 6, 5)
    mod.nna_mode = "calibrate"
    y_cal, _ = mod(x)
    y_ref, _ = lstm(x)
    assert torch.allclose(y_cal, y_ref, atol=1e-5)          # the observing float loop is the LSTM
    E.freeze_ranges(mod)
    mod.nna_mode = "int"
    y, (h, c) = mod(x)
    assert y.shape == (2, 6, 4) and h.shape == (2, 2, 4) and c.shape == (2, 2, 8)
    # stepping with the returned state continues exactly as one call over the whole sequence
    y1, st = mod(x[:, :3])
    y2, _ = mod(x[:, 3:], st)
    assert torch.equal(torch.cat([y1, y2], 1), y)


# ------------------------------------------------------------------- fake vs int, STE
def _calibrated(mod, *inputs):
    mod.nna_mode = "calibrate"
    for x in inputs:
        mod(x)
    E.freeze_ranges(mod)
    return mod


def _step(mod):
    """The output quantization step of a module."""
    o = mod.obs[-1]["h"] if isinstance(mod, E.NNALSTM) else mod.out_obs
    return o.qparams(8)[0]


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d", "lstm", "layernorm"])
@pytest.mark.parametrize("prof", ["int8", "harsh"])
def test_fake_quant_forward_agrees_with_int_within_one_step(kind, prof):
    torch.manual_seed(0)
    p = profile() if prof == "int8" else profile(acc_bits=16, mult_bits=16, per_channel=False, cell_bits=8)
    if kind == "linear":
        mod, x = E.NNALinear.from_float(nn.Linear(24, 16), p), torch.randn(4, 7, 24) * 2
    elif kind == "conv1d":
        mod, x = E.NNAConv1d.from_float(nn.Conv1d(8, 8, 3, padding=1, groups=2), p), torch.randn(3, 8, 11)
    elif kind == "conv2d":
        mod, x = E.NNAConv2d.from_float(nn.Conv2d(1, 4, 3, stride=2), p), torch.randn(2, 1, 15, 9)
    elif kind == "lstm":
        mod, x = E.NNALSTM.from_float(nn.LSTM(6, 10, batch_first=True, proj_size=5), p), torch.randn(3, 1, 6)
    else:
        ln = nn.LayerNorm(16)
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.3, 0.3)
        mod, x = E.NNALayerNorm.from_float(ln, p), torch.randn(5, 16) * 3 + 1
    _calibrated(mod, x, x * 0.9)
    outs = {}
    for mode in ("fake", "int"):
        mod.nna_mode = mode
        y = mod(x)
        outs[mode] = (y[0] if isinstance(y, tuple) else y).detach()
    diff = (outs["fake"] - outs["int"]).abs().max().item()
    assert diff <= _step(mod) * (1 + 1e-4), diff


def test_fake_quant_agrees_with_int_on_a_whole_model(toy_model):
    from sltk.asr.config import ModelConfig
    from sltk.asr.model import Transducer

    torch.manual_seed(0)
    model = Transducer(ModelConfig(**dict(toy_model, vocab_size=12))).eval()
    E.convert(model, profile())
    feats, lens = torch.randn(2, 50, toy_model["feat_dim"]), torch.tensor([50, 41])
    E.calibrate(model, [(feats, lens, [[1, 2, 3], [4, 5]])])
    E.set_mode(model, "float")
    enc_float, _ = model.encode(feats, lens)
    res = {}
    for mode in ("fake", "int"):
        E.set_mode(model, mode)
        res[mode], _ = model.encode(feats, lens)
    step = model.encoder.layers[-1].norm.out_obs.qparams(8)[0]
    # layer by layer the two paths agree within a step; through two layers a step may propagate
    assert (res["fake"] - res["int"]).abs().max().item() <= 4 * step
    assert (res["fake"] - res["int"]).abs().mean().item() < 0.05 * step
    assert (enc_float - res["int"]).abs().max().item() > 0  # and the integer path is not float


def test_ste_gradients_float_inside_clamp_zero_outside():
    p = profile()
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [0.5, 0.5, -1.0]]))
    mod = E.NNALinear.from_float(lin, p)
    set_range(mod.in_obs, -1.0, 1.0)
    set_range(mod.out_obs, -1.0, 1.0)                      # outputs beyond +-1 are clamped
    mod.nna_mode = "fake"
    x = torch.tensor([[0.2, -0.4, 0.6], [0.9, 3.0, -0.1], [0.9, 0.9, -0.9]], requires_grad=True)
    y = mod(x)
    y.sum().backward()
    w = mod.weight.detach()
    wf = fake_quant(w, symmetric_scale(w, 8, axis=0), 8, axis=0)  # the weights on their 8-bit grid
    xq = fake_quant(x.detach(), 1.0 / 127, 8)                # the inputs on their grid (range +-1)
    acc = xq @ wf.T
    inside_out = (acc.abs() <= 1.0).float()                # output inside its clamp range
    inside_in = (x.detach().abs() <= 1.0).float()          # input inside its clamp range
    want = (inside_out @ wf) * inside_in                   # the float gradient, masked
    assert torch.allclose(x.grad, want, atol=1e-6), (x.grad, want)
    assert x.grad[1, 1] == 0 and inside_out[2].tolist() == [1.0, 0.0]  # an input and an output clamped
    # weights: the float gradient x^T (dL/dy), where the output is inside
    assert torch.allclose(mod.weight.grad, inside_out.T @ xq, atol=1e-6)


def test_lut_tanh_int_matches_table_and_ste_is_smooth_gradient():
    p = profile(lut_entries=16)
    lt = E.NNALUT("tanh", p)
    x = torch.tensor([-5.0, -0.3, -0.125, 0.0, 0.125, 0.37, 1.99, 2.0, 9.0], requires_grad=True)
    lt.nna_mode = "int"
    table = lut("tanh")
    want = torch.tensor([float(read(table, rha(v / TANH_STEP))) for v in x.tolist()]) / 127
    assert torch.equal(lt(x), want)
    lt.nna_mode = "fake"
    y = lt(x)
    assert torch.allclose(y, want, atol=1e-7)
    y.sum().backward()
    k = torch.tensor([rha(v / TANH_STEP) for v in x.tolist()], dtype=torch.float32)
    assert torch.allclose(x.grad, 1 - torch.tanh(k * TANH_STEP) ** 2, atol=1e-6)


def test_embedding_int_and_fake_are_the_code_table():
    p = profile()
    emb = nn.Embedding(5, 4)
    mod = E.NNAEmbedding.from_float(emb, p)
    ids = torch.tensor([[0, 3, 4]])
    mod.nna_mode = "int"
    yi = mod(ids)
    mod.nna_mode = "fake"
    assert torch.equal(mod(ids), yi)
    s = emb.weight.abs().max().item() / 127
    assert torch.allclose(yi / s, (yi / s).round(), atol=1e-4)  # values are codes of one scale


def test_uncalibrated_module_refuses_fake_and_int():
    from sltk.utils.errors import UserError

    mod = E.NNALinear.from_float(nn.Linear(3, 2), profile(), "joiner.output")
    mod.nna_mode = "int"
    with pytest.raises(UserError, match="joiner.output were never calibrated"):
        mod(torch.randn(2, 3))


def test_convert_keeps_fallbacks_float_and_checkpoint_roundtrip(tmp_path, toy_model):
    from sltk.asr.checkpoint import average_checkpoints, load_model, save_checkpoint
    from sltk.asr.config import ModelConfig
    from sltk.asr.model import Transducer
    from sltk.utils.errors import UserError

    torch.manual_seed(0)
    model = Transducer(ModelConfig(**dict(toy_model, vocab_size=12)))
    p = profile(layernorm="cpu")
    counts = E.convert(model, p)
    assert counts == {"conv": 3, "linear": 5, "lstm": 2, "embedding": 1, "tanh": 1}
    assert type(model.encoder.layers[0].norm) is nn.LayerNorm          # fallback: stays float
    assert type(model.simple_am_proj) is nn.Linear                     # training-only: not converted
    feats, lens = torch.randn(1, 40, toy_model["feat_dim"]), torch.tensor([40])
    E.calibrate(model, [(feats, lens, [[1, 2]])])
    E.set_mode(model, "int")
    enc, _ = model.encode(feats, lens)
    save_checkpoint(tmp_path / "a.pt", model, transforms=[{"kind": "nna", **E.transform_meta(p)}], step=1)
    loaded = load_model(tmp_path / "a.pt").eval()
    assert isinstance(loaded.encoder.layers[0].lstm, E.NNALSTM) and loaded.nna_profile == p
    E.set_mode(loaded, "int")
    assert torch.equal(loaded.encode(feats, lens)[0], enc)
    # averaging keeps the transform; checkpoints with different transforms are not averaged
    save_checkpoint(tmp_path / "b.pt", model, transforms=[{"kind": "nna", **E.transform_meta(p)}], step=2)
    avg = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert [t["kind"] for t in avg["transforms"]] == ["nna"]
    save_checkpoint(tmp_path / "f.pt", Transducer(ModelConfig(**dict(toy_model, vocab_size=12))), step=3)
    with pytest.raises(UserError, match="different model transforms"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "f.pt"])
    with pytest.raises(UserError, match="already converted"):
        E.convert(loaded, p)


def test_accumulator_headroom_widens_the_input_range_of_a_narrow_accumulator():
    torch.manual_seed(0)
    lin = nn.Linear(256, 8)
    with torch.no_grad():
        lin.weight.copy_(lin.weight.abs())                  # correlated products: sums grow with the fan-in
    x = torch.rand(64, 256) * 2
    sat = {}
    for headroom in (False, True):
        d = profile(acc_bits=16, mult_bits=16).to_dict()
        d["accumulator"]["headroom"] = headroom
        mod = _calibrated(E.NNALinear.from_float(lin, NNAProfile.from_dict(d)), x)
        mod.nna_mode = "int"
        c = mod._cached(mod._int_consts)
        xq = torch.clamp(torch.round(x / c["s_x"]), -127, 127)
        acc = xq.double() @ c["wq"].double().T
        sat[headroom] = (acc.abs() > 2 ** 15 - 1).float().mean().item()
        y = mod(x)
        err = (y - lin(x)).abs().mean().item()
        assert (err < 0.05 * lin(x).abs().mean().item()) == headroom, (headroom, err)
    assert sat[False] > 0.9 and sat[True] < 0.01            # rounding may tip the largest sum over
