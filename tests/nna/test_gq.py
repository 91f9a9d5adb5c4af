"""General Quantizer: compander, codebook, soft assignment, tau schedule, allocation, hooks."""

import math

import pytest
import torch
from torch import nn

from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.nna import gq
from sltk.nna.qparam import BitAllocation, attach, logical_state, quantized_state, quantizers, weight_names
from sltk.utils.errors import UserError


def toy_transducer(toy_model):
    torch.manual_seed(0)
    return Transducer(ModelConfig(vocab_size=12, **toy_model))


# ------------------------------------------------------------------ compander and codebook
@pytest.mark.parametrize("mu", [1e-3, 1.0, 10.0, 255.0])
def test_mulaw_round_trip(mu):
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    assert torch.allclose(gq.inv_mulaw(gq.mulaw(x, mu), mu), x, atol=1e-12)
    assert torch.allclose(gq.mulaw(gq.inv_mulaw(x, mu), mu), x, atol=1e-12)
    assert gq.mulaw(torch.tensor([1.0, -1.0, 0.0]), mu).tolist() == pytest.approx([1.0, -1.0, 0.0])
    assert (gq.mulaw(x, mu).diff() > 0).all()  # monotone


def test_mulaw_values():
    # F(0.5) with mu = 3: ln(1 + 1.5) / ln(4)
    assert float(gq.mulaw(torch.tensor(0.5), 3.0)) == pytest.approx(math.log(2.5) / math.log(4))
    # F^-1(0.5) with mu = 3: (4^0.5 - 1) / 3 = 1/3
    assert float(gq.inv_mulaw(torch.tensor(-0.5), 3.0)) == pytest.approx(-1 / 3)


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_codebook_layout(bits):
    c = gq.codebook(0.5, 20.0, bits)
    assert c.numel() == 2 ** bits
    assert (c.diff() > 0).all()
    assert torch.allclose(c, -c.flip(0))
    assert float(c[-1]) == pytest.approx(0.5)
    if bits >= 3:  # mu-law: denser near zero than at the edges
        mid = c.numel() // 2
        assert float(c[mid + 1] - c[mid]) < float(c[-1] - c[-2])
    assert gq.codebook(1.0, 1e-6, 2).tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1], abs=1e-4)  # mu -> 0: uniform


def test_hard_assign_nearest():
    c = torch.tensor([-1.0, -0.2, 0.3, 1.0])
    w = torch.tensor([-5.0, -0.61, -0.59, 0.0, 0.04, 0.06, 0.66, 0.64, 9.0])
    assert gq.hard_assign(w, c).tolist() == [0, 0, 1, 1, 1, 2, 3, 2, 3]


# ------------------------------------------------------------------ soft assignment
def _soft_reference(w, c, inv_t):
    p = torch.softmax(-(w[:, None] - c).abs() * inv_t, dim=1)
    return (p * c).sum(1)


def test_soft_assign_matches_autograd_in_chunks():
    torch.manual_seed(0)
    w = torch.randn(37, dtype=torch.float64, requires_grad=True)
    c = torch.linspace(-2, 2, 8, dtype=torch.float64).requires_grad_()
    y = gq._SoftAssign.apply(w, c, 2.5, 5)  # 8 chunks, the last one short
    ref = _soft_reference(w, c, 2.5)
    assert torch.allclose(y, ref)
    g = torch.randn(37, dtype=torch.float64)
    gw, gc = torch.autograd.grad(y, (w, c), g)
    rw, rc = torch.autograd.grad(ref, (w, c), g)
    assert torch.allclose(gw, rw) and torch.allclose(gc, rc)
    assert torch.autograd.gradcheck(lambda a, b: gq._SoftAssign.apply(a, b, 1.5, 4), (w, c))


def test_soft_assign_temperature_is_in_centroid_spacings():
    c = torch.tensor([0.0, 10.0])
    # a weight a tenth of the spacing from a centroid: logit gap (0.8 spacing) / tau
    y = gq.soft_assign(torch.tensor([1.0]), c, tau=0.8)
    p1 = 1 / (1 + math.e)  # softmax(-0.1/0.8, -0.9/0.8)[1] = 1 / (1 + e^1)
    assert float(y) == pytest.approx(10 * p1, rel=1e-5)


# ------------------------------------------------------------------ schedule
def test_tau_schedule_shapes_and_end():
    s = gq.TauSchedule(tau0=1.0, start=2, steps=4, shape="linear")
    taus = [s(i) for i in range(1, 10)]
    assert taus == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0])
    assert s.hard_from == 7
    e = gq.TauSchedule(tau0=0.5, steps=3, shape="exp", tau_min=0.005)
    assert [e(i) for i in (1, 2, 3, 4)] == pytest.approx([0.5, 0.5 * 0.01 ** (1 / 3), 0.5 * 0.01 ** (2 / 3), 0.0])
    cos = gq.TauSchedule(tau0=2.0, steps=2, shape="cosine")
    assert [cos(i) for i in (1, 2, 3)] == pytest.approx([2.0, 1.0, 0.0])
    assert gq.TauSchedule(steps=0)(1) == 0.0  # hard from the first step
    with pytest.raises(UserError, match="shape"):
        gq.TauSchedule(shape="step")


def test_schedule_ends_hard_soft_and_hard_forward_agree():
    torch.manual_seed(0)
    w = torch.randn(4000) * 0.1
    q = gq.GeneralQuantizer(4)
    q.init_from(w)
    s = gq.TauSchedule(tau0=0.5, steps=50, shape="exp", tau_min=1e-3)
    q.tau = s(s.hard_from - 1)  # the last soft step
    soft = q(w)
    q.tau = s(s.hard_from)
    assert q.tau == 0.0
    hard = q(w)
    c = q.centroids().detach()
    spacing = float(c[-1] - c[0]) / 15
    diff = (soft - hard).abs() / spacing
    # no weight is further off than half the widest gap (a weight right at a midpoint)
    assert float(diff.mean()) < 1e-3 and float(diff.max()) <= 0.5 * float(c.diff().max()) / spacing
    assert float((diff > 1e-3).float().mean()) < 0.02  # only weights near a midpoint differ at all
    assert set(hard.unique().tolist()) <= set(c.tolist())
    # the first soft step is really soft: the values are not the codebook's
    q.tau = s(1)
    assert not set(q(w).detach().unique().tolist()) <= set(c.tolist())


# ------------------------------------------------------------------ quantizer
def test_init_fits_the_scale_and_learns():
    torch.manual_seed(0)
    w = torch.randn(256, 64) * 0.05
    err = {}
    for b in (2, 4, 6):
        q = gq.GeneralQuantizer(b)
        err[b] = q.init_from(w)
        assert 0 < float(q.log_scale.exp()) <= float(w.abs().max()) + 1e-6
    assert err[2] > err[4] > err[6]
    assert err[4] < 0.15
    # the scale gets a gradient through the codebook, soft and hard
    q = gq.GeneralQuantizer(3, learn_mu=True)
    q.init_from(w)
    for tau in (0.3, 0.0):
        q.tau = tau
        q.zero_grad()
        wp = w.clone().requires_grad_()
        (q(wp) ** 2).sum().backward()
        assert q.log_scale.grad is not None and q.log_scale.grad != 0
        assert q.log_mu.grad is not None
        assert wp.grad.abs().sum() > 0


def test_hard_forward_straight_through():
    q = gq.GeneralQuantizer(2)
    q.log_scale.data.fill_(0.0)
    w = torch.tensor([0.1, -0.7, 2.0], requires_grad=True)
    y = q(w)
    assert set(y.tolist()) <= set(q.centroids().tolist())
    y.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------ allocation
def test_allocation_resolution(toy_model):
    m = toy_transducer(toy_model)
    names = weight_names(m)
    assert "encoder.layers.0.lstm.weight_ih_l0" in names and "decoder.embedding.weight" in names
    assert all(not n.endswith("bias") for n in names)
    a = BitAllocation.from_dict({"default": 4, "layers": {"decoder.embedding": "float", "encoder.layers.*": 2,
                                                         "encoder.layers.1.lstm.weight_hh_l0": 8}})
    bits = a.for_model(m)
    assert bits["decoder.embedding.weight"] is None
    assert bits["encoder.layers.0.lstm.weight_ih_l0"] == 2
    assert bits["encoder.layers.1.lstm.weight_hh_l0"] == 8  # the last matching rule wins
    assert bits["joiner.output.weight"] == 4
    assert BitAllocation.from_dict({"default": 4}, default_bits=3).for_model(m)["joiner.output.weight"] == 3


def test_allocation_refuses_unknown_layer_and_keys(toy_model, tmp_path):
    m = toy_transducer(toy_model)
    with pytest.raises(UserError, match=r"'encoder\.layers\.7' matches no weight of the model"):
        BitAllocation.from_dict({"default": 4, "layers": {"encoder.layers.7": 2}}).for_model(m)
    with pytest.raises(UserError, match="unknown key 'defaults'"):
        BitAllocation.from_dict({"defaults": 4})
    with pytest.raises(UserError, match="1..8"):
        BitAllocation.from_dict({"default": 9})
    with pytest.raises(UserError, match="1..8"):
        BitAllocation.from_dict({"default": 4, "layers": {"joiner": 0}})
    with pytest.raises(UserError, match="no 'default'"):
        BitAllocation.from_dict({"layers": {"joiner": 2}})
    p = tmp_path / "alloc.yaml"
    p.write_text("default: 4\nlayers:\n  joiner.nope: 3\n")
    with pytest.raises(UserError, match=r"alloc\.yaml: 'joiner\.nope' matches no weight"):
        BitAllocation.from_yaml(p).for_model(m)
    with pytest.raises(UserError, match="does not exist"):
        BitAllocation.from_yaml(tmp_path / "missing.yaml")


# ------------------------------------------------------------------ model level
@pytest.mark.parametrize("encoder", ["lstm", "conformer"])
def test_quantizer_reaches_every_module(toy_model, encoder):
    """The forward pass of a quantized model uses the quantized weights everywhere: LSTMs (which
    cache their weights), attention (which may take a fused fast path in eval), convolutions."""
    if encoder == "conformer":
        toy_model.update(encoder="conformer", num_heads=2, ff_dim=64, conv_kernel=5)
    m = toy_transducer(toy_model).eval()
    bits = BitAllocation.uniform(2).for_model(m)
    gq.apply_gq(m, bits)
    feats, lens = torch.randn(2, 40, 20), torch.tensor([40, 31])
    with torch.no_grad():
        enc_q, _ = m.encode(feats, lens)
        ref = Transducer(m.cfg).eval()
        ref.load_state_dict(quantized_state(m))
        enc_r, _ = ref.encode(feats, lens)
        ref.load_state_dict(logical_state(m))
        enc_f, _ = ref.encode(feats, lens)
    assert torch.equal(enc_q, enc_r)
    assert not torch.allclose(enc_q, enc_f, atol=1e-3)


def test_hook_anneals_to_codebook_values(toy_model):
    """A few training steps through the schedule: afterwards each quantized tensor has at most
    2^b distinct values, all of them its codebook's; float layers keep their float weights."""
    m = toy_transducer(toy_model)
    alloc = BitAllocation.from_dict({"default": 3, "layers": {"decoder.embedding": "float", "joiner.output": 1,
                                                             "encoder.layers.0": 5}})
    hook = gq.GQHook(alloc, gq.TauSchedule(tau0=0.5, steps=6, shape="exp", tau_min=0.01), learn_mu=True)
    hook.on_model(m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    feats, lens = torch.randn(2, 30, 20), torch.tensor([30, 30])
    for step in range(1, 10):
        hook.on_step(step, m)
        enc, _ = m.encode(feats, lens)
        dec = m.decoder(torch.tensor([[1, 2], [3, 4]]))[:, :1]
        loss = m.ctc_logprobs(enc).mean() + m.joiner(enc, dec).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(q.tau == 0.0 for _, q in gq.gq_quantizers(m))
    counts = gq.distinct_values(m)
    assert set(counts) == {n for n, b in hook.bits.items() if b is not None}
    for name, module, q in quantizers(m):
        with torch.no_grad():
            values = getattr(module, name.rpartition(".")[2]).unique()
        assert values.numel() <= 2 ** q.bits, name
        assert set(values.tolist()) <= set(q.centroids().tolist()), name
    assert counts["joiner.output.weight"][1] == 2
    assert "decoder.embedding.weight" not in counts
    meta = hook.checkpoint_meta()
    assert meta["bits"]["encoder.layers.0.lstm.weight_hh_l0"] == 5 and meta["bits"]["decoder.embedding.weight"] is None
    # the transform rebuilds the structure of a fresh model so that the state dict loads
    fresh = Transducer(m.cfg)
    gq.apply_meta(fresh, meta)
    fresh.load_state_dict(m.state_dict())
    fresh_state = quantized_state(fresh)
    for k, v in quantized_state(m).items():
        assert torch.equal(fresh_state[k], v), k


def test_attach_twice_refused(toy_model):
    m = toy_transducer(toy_model)
    attach(m, "joiner.output.weight", gq.GeneralQuantizer(2))
    with pytest.raises(ValueError, match="already"):
        attach(m, "joiner.output.weight", gq.GeneralQuantizer(2))


def test_soft_assignment_memory_is_chunked():
    """A large tensor at 8 bits in small chunks gives the same result as one chunk."""
    torch.manual_seed(0)
    w = torch.randn(3000) * 0.1
    c = gq.codebook(0.3, 10.0, 8)
    chunked = gq.soft_assign(w, c, 0.2, chunk_elems=256 * 7)
    assert torch.allclose(chunked, gq.soft_assign(w, c, 0.2, chunk_elems=1 << 30))


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.lin = nn.Linear(4, 3)


def test_allocation_on_any_module():
    names = weight_names(_Tiny())
    assert names == ["emb.weight", "lin.weight"]
