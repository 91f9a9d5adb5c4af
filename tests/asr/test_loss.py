"""RNN-T losses: the reference, torchaudio and k2 (full and pruned) agree."""

import math

import pytest
import torch

from sltk.asr import loss as L
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer, pad_targets


def test_reference_loss_hand_computed():
    # T=2, U=1, V=2 (blank 0, token 1), uniform logits: every transition has prob 1/2.
    # Paths from (0,0) to emit the token and finish: (emit at t0, blank, blank) or
    # (blank, emit at t1, blank): 2 paths of 3 transitions -> p = 2 * (1/2)^3 = 1/4.
    logits = torch.zeros(1, 2, 2, 2)
    loss = L.rnnt_loss_reference(logits, torch.tensor([[1]]), torch.tensor([2]), torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(0.25), abs=1e-6)


def random_case(seed=0, n=3, t=7, u=4, v=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, t, u + 1, v, generator=g)
    targets = torch.randint(1, v, (n, u), generator=g)
    t_lens = torch.tensor([t, t - 2, t - 1])[:n]
    u_lens = torch.tensor([u, u - 1, 2])[:n]
    return logits, targets, t_lens, u_lens


@pytest.mark.skipif(not L.torchaudio_rnnt_available(), reason="torchaudio rnnt_loss absent")
def test_reference_matches_torchaudio_value_and_grad():
    logits, targets, t_lens, u_lens = random_case()
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    la = L.rnnt_loss_full(a, targets, t_lens, u_lens, 0, "torch")
    lb = L.rnnt_loss_full(b, targets, t_lens, u_lens, 0, "torchaudio")
    assert la.item() == pytest.approx(lb.item(), rel=1e-5)
    la.backward()
    lb.backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)


def test_k2_full_matches_reference():
    pytest.importorskip("k2")
    logits, targets, t_lens, u_lens = random_case(seed=1)
    ref = L.rnnt_loss_full(logits, targets, t_lens, u_lens, 0, "torch")
    k2l = L.rnnt_loss_full(logits, targets, t_lens, u_lens, 0, "k2")
    assert k2l.item() == pytest.approx(ref.item(), rel=1e-5)


def test_per_sequence_losses_are_each_sequence_alone():
    # reduction="none": sequence i's loss is the loss of a batch holding only sequence i (cut to
    # its own lengths), for every backend present; and they sum to the batch loss
    logits, targets, t_lens, u_lens = random_case(seed=2)
    backends = ["torch"] + (["torchaudio"] if L.torchaudio_rnnt_available() else []) \
        + (["k2"] if L.k2_available() else [])
    for be in backends:
        per = L.rnnt_loss_full(logits, targets, t_lens, u_lens, 0, be, reduction="none")
        assert per.shape == (3,)
        for i in range(3):
            t, u = int(t_lens[i]), int(u_lens[i])
            alone = L.rnnt_loss_full(logits[i:i + 1, :t, :u + 1], targets[i:i + 1, :u], t_lens[i:i + 1],
                                     u_lens[i:i + 1], 0, "torch")
            assert per[i].item() == pytest.approx(alone.item(), rel=1e-5), be
        assert per.sum().item() == pytest.approx(L.rnnt_loss_full(logits, targets, t_lens, u_lens, 0, be).item(),
                                                 rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        L.rnnt_loss_full(logits, targets, t_lens, u_lens, 0, "torch", reduction="mean")


def tiny_model(**kw):
    cfg = ModelConfig(feat_dim=20, vocab_size=8, encoder="lstm", encoder_dim=16, num_encoder_layers=1,
                      lstm_hidden=16, decoder_dim=16, joiner_dim=16, dropout=0.0, **kw)
    torch.manual_seed(0)
    return Transducer(cfg).eval()


@pytest.mark.parametrize("decoder", ["stateless", "lstm"])
def test_pruned_loss_equals_full_loss_when_pruning_keeps_everything(decoder):
    """With prune_range >= U + 1 the pruned lattice is the whole lattice: k2's pruned loss
    must equal torchaudio's (or the reference) full loss on the same joiner."""
    pytest.importorskip("k2")
    model = tiny_model(decoder=decoder)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 40, 20, generator=g)
    feat_lens = torch.tensor([40, 33])
    ys = [[1, 2, 3], [4, 5]]
    full_backend = "torchaudio" if L.torchaudio_rnnt_available() else "torch"
    with torch.no_grad():
        pruned = model(feats, feat_lens, ys, backend="k2", prune_range=4)["pruned"]
        full = model(feats, feat_lens, ys, backend=full_backend)["rnnt"]
        ref = model(feats, feat_lens, ys, backend="torch")["rnnt"]
    assert pruned.item() == pytest.approx(full.item(), rel=1e-4)
    assert ref.item() == pytest.approx(full.item(), rel=1e-4)


def test_ctc_and_combine():
    model = tiny_model()
    feats = torch.randn(2, 40, 20)
    out = model(feats, torch.tensor([40, 40]), [[1, 2], [3]], backend="torch")
    assert set(out) == {"rnnt", "ctc"} and out["ctc"].item() > 0
    total = L.combine(out, "torch", step=0, warm_step=10, simple_scale=0.5, ctc_weight=0.1)
    assert total.item() == pytest.approx(out["rnnt"].item() + 0.1 * out["ctc"].item(), rel=1e-6)
    k2_losses = {"simple": torch.tensor(2.0), "pruned": torch.tensor(4.0)}
    assert L.combine(k2_losses, "k2", 0, 10, 0.5, 0).item() == pytest.approx(2.0 + 0.4)
    assert L.combine(k2_losses, "k2", 10, 10, 0.5, 0).item() == pytest.approx(1.0 + 4.0)


def test_pad_targets():
    y, lens = pad_targets([[1, 2, 3], [], [4]], pad=0)
    assert y.tolist() == [[1, 2, 3], [0, 0, 0], [4, 0, 0]] and lens.tolist() == [3, 0, 1]
