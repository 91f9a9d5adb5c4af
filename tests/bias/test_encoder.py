"""Context adapter: identity at init, CTC-only effect, per-utterance catalogs and masking, the
catalog encoder's states, checkpoints and the base hash, training catalogs."""

import pytest
import torch

from sltk.asr.checkpoint import load_model, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.bias.encoder import (CatalogEncoder, ContextAdapterConfig, attach, biased_ctc, bypassed, context_base_hash,
                               detach, get_adapter, has_context_adapter, load_context_adapter, set_catalog,
                               transform_entry)
from sltk.bias.train import CatalogBuilder, read_rare_words
from sltk.utils.errors import UserError

SMALL = dict(feat_dim=20, vocab_size=10, encoder_dim=16, num_heads=2, ff_dim=32, lstm_hidden=24,
             num_encoder_layers=2, decoder_dim=16, joiner_dim=16, dropout=0.0, ctc_weight=0.3)
CFG = ContextAdapterConfig(embed_dim=8, lstm_dim=6, catalog_dim=12, attention_dim=10)
YS = [[3, 4, 5], [7, 1], [2, 8, 9]]
CATS = [[[3, 4], [5], [6, 7, 8]], [], [[9]]]  # per utterance: 3 phrases, none, 1


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return Transducer(ModelConfig(**{**SMALL, **kw})).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 48, 20, generator=g), torch.tensor([48, 36, 24])


def randomize(m, seed=5, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.context_adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def ctc_out(m):
    with torch.no_grad():
        enc, _ = m.encode(*inputs())
        return m.ctc_logprobs(enc)


def transducer_losses(m):
    with torch.no_grad():
        out = m(*inputs(), YS, backend="torch")
    return {k: v for k, v in out.items() if k != "ctc"}


@pytest.mark.parametrize("encoder", ["lstm", "conformer"])
def test_fresh_adapter_is_identity_and_transducer_untouched(encoder):
    m = model(encoder=encoder)
    lp0, tr0, names, h = ctc_out(m), transducer_losses(m), list(m.state_dict()), context_base_hash(m)
    a = attach(m, CFG, base_hash=h)
    assert has_context_adapter(m) and m.ctc_hooks == [a] and get_adapter(m) is a
    set_catalog(m, CATS)
    assert torch.equal(ctc_out(m), lp0)  # exactly: the output projection starts at zero
    # base parameter names unchanged; the adapter's under context_adapter.*; the hash ignores them
    new = [k for k in m.state_dict() if k not in names]
    assert list(m.state_dict())[: len(names)] == names and new and all(k.startswith("context_adapter.") for k in new)
    assert context_base_hash(m) == h
    # a trained (random) adapter moves the CTC output, never the transducer's losses
    randomize(m)
    lp1 = ctc_out(m)
    assert not torch.allclose(lp1, lp0, atol=1e-3)
    tr1 = transducer_losses(m)
    assert tr1.keys() == tr0.keys() and all(torch.equal(tr1[k], tr0[k]) for k in tr0)
    with bypassed(m):
        assert torch.equal(ctc_out(m), lp0)
    assert m.ctc_hooks == [a]
    detach(m)
    assert not has_context_adapter(m) and m.ctc_hooks == [] and list(m.state_dict()) == names
    assert torch.equal(ctc_out(m), lp0)


def test_attention_per_utterance_catalogs_and_masking():
    m = model()
    attach(m, CFG)
    randomize(m)
    a = m.context_adapter
    set_catalog(m, CATS)
    assert a.catalog_sizes() == [3, 0, 1]
    with torch.no_grad():
        enc, lens = m.encode(*inputs())
        lp = m.ctc_logprobs(enc)
    att, mask, gate = a.last_attention, a.last_entry_mask, a.bias_gate
    n, t = enc.shape[:2]
    assert att.shape == (n, t, 4) and mask.tolist() == [[True] * 4, [True, False, False, False],
                                                        [True, True, False, False]]
    assert torch.allclose(att.sum(-1), torch.ones(n, t))
    assert torch.all(att[1, :, 1:] == 0) and torch.all(att[2, :, 2:] == 0)  # padding entries: exactly 0
    assert torch.all(att[1, :, 0] == 1) and torch.all(gate[1] == 0)      # no catalog: all on <no-bias>
    assert gate.shape == (n, t) and gate.min() >= 0 and gate.max() <= 1
    assert torch.allclose(gate, att[..., 1:].sum(-1), atol=1e-6) and gate[0].max() > 0.01
    # each utterance is biased by its own catalog only: alone, with its catalog, the same output
    for u in range(n):
        set_catalog(m, [CATS[u]])
        with torch.no_grad():
            one = m.ctc_logprobs(enc[u: u + 1])
        assert torch.allclose(one[0], lp[u], atol=1e-5)
        assert torch.allclose(a.last_attention[0], att[u, :, : len(CATS[u]) + 1], atol=1e-6)
    # one catalog broadcasts to the batch; None means <no-bias> only
    set_catalog(m, [CATS[0]])
    with torch.no_grad():
        m.ctc_logprobs(enc)
    assert a.last_attention.shape == (n, t, 4) and a.last_entry_mask.all()
    assert torch.allclose(a.last_attention[0], att[0], atol=1e-6)
    set_catalog(m, None)
    with torch.no_grad():
        m.ctc_logprobs(enc)
    assert a.last_attention.shape == (n, t, 1) and torch.all(a.bias_gate == 0)


def test_catalog_errors():
    m = model()
    attach(m, CFG)
    with pytest.raises(UserError, match="phrase 1 has no tokens"):
        set_catalog(m, [[[3], []]])
    with pytest.raises(UserError, match="token id 10 outside the model's vocabulary"):
        set_catalog(m, [[[3, 10]]])
    set_catalog(m, CATS[:2])
    with torch.no_grad():
        enc, _ = m.encode(*inputs())
        with pytest.raises(ValueError, match="2 catalogs set for a batch of 3"):
            m.ctc_logprobs(enc)
    with pytest.raises(UserError, match="has a context adapter already"):
        attach(m, CFG)
    with pytest.raises(UserError, match="unknown key 'dim'"):
        ContextAdapterConfig.from_dict({"dim": 3})
    with pytest.raises(UserError, match="catalog_dim must be a positive integer"):
        ContextAdapterConfig(catalog_dim=0)
    with pytest.raises(UserError, match="has no context adapter"):
        set_catalog(model(), CATS)


def test_catalog_encoder_states():
    torch.manual_seed(3)
    enc = CatalogEncoder(vocab_size=10, embed_dim=5, lstm_dim=4, catalog_dim=7)
    phrases = [[3, 4, 5, 6], [2], [7, 1]]
    lens = torch.tensor([len(p) for p in phrases])
    ids = torch.zeros(3, 4, dtype=torch.long)
    for i, p in enumerate(phrases):
        ids[i, : len(p)] = torch.tensor(p)
    with torch.no_grad():
        e = enc(ids, lens)
        assert e.shape == (4, 7) and torch.equal(e[0], enc.no_bias)
        for i, p in enumerate(phrases):
            # by hand: the forward direction's output at the last token, the backward's at the first
            out, _ = enc.lstm(enc.embed(torch.tensor([p])))
            want = enc.proj(torch.cat([out[0, -1, :4], out[0, 0, 4:]]))
            assert torch.allclose(e[i + 1], want, atol=1e-6), i
        assert enc(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, dtype=torch.long)).shape == (1, 7)


def test_entries_cached_when_decoding():
    m = model()
    a = attach(m, CFG)
    set_catalog(m, CATS)
    with torch.no_grad():
        e1 = a.entries(torch.device("cpu"))
        assert a.entries(torch.device("cpu")) is e1
        set_catalog(m, CATS)
        assert a.entries(torch.device("cpu")) is not e1
        randomize(m)  # new weights: computed again
        assert not torch.allclose(a.entries(torch.device("cpu")), e1)
    e3 = a.entries(torch.device("cpu"))
    assert e3.requires_grad and a.entries(torch.device("cpu")) is not e3  # training: never cached


def test_gradients_reach_only_the_adapter():
    from sltk.adapters import freeze_all_but

    m = model()
    attach(m, CFG)
    freeze_all_but(m, "context_adapter")
    lp, lens, gate = biased_ctc(m, *inputs(), CATS)
    assert lp.shape[:2] == gate.shape and lens.tolist() == [11, 8, 5]
    lp[..., 1].sum().backward()
    grads = {n for n, p in m.named_parameters() if p.grad is not None}
    assert grads and all(n.startswith("context_adapter.") for n in grads)
    assert "context_adapter.out.weight" in grads
    # no catalog in a training batch: every adapter parameter still in the graph (data-parallel training)
    m.zero_grad(set_to_none=True)
    m.train()
    lp, _, gate = biased_ctc(m, *inputs(), None)
    lp[..., 1].sum().backward()
    assert all(p.grad is not None for p in m.context_adapter.parameters()) and torch.all(gate == 0)


def test_checkpoint_round_trip_and_base_check(tmp_path):
    base = model()
    save_checkpoint(tmp_path / "base.pt", base, step=0, epoch=0)
    m = model()
    attach(m, CFG, base_hash=context_base_hash(m))
    randomize(m)
    set_catalog(m, CATS)
    lp, tr = ctc_out(m), transducer_losses(m)
    entry = transform_entry(m)
    assert entry == {"kind": "context_adapter", "config": CFG.to_dict(), "base_hash": context_base_hash(base)}
    save_checkpoint(tmp_path / "ctx.pt", m, transforms=[entry], step=7)
    # load_model rebuilds the adapter from the transform (registered on demand)
    m2 = load_model(tmp_path / "ctx.pt").eval()
    set_catalog(m2, CATS)
    assert torch.equal(ctc_out(m2), lp) and all(torch.equal(transducer_losses(m2)[k], v) for k, v in tr.items())
    assert m2.context_adapter.base_hash == context_base_hash(m2)
    # the adapter onto its base: the same; onto another base: refused
    b = load_model(tmp_path / "base.pt").eval()
    load_context_adapter(b, tmp_path / "ctx.pt")
    set_catalog(b, CATS)
    assert torch.equal(ctc_out(b), lp)
    other = model(seed=1)
    with pytest.raises(UserError, match=r"trained on base model [0-9a-f]{12}, this model is [0-9a-f]{12}: a context "
                                        r"adapter refuses to load onto another base model"):
        load_context_adapter(other, tmp_path / "ctx.pt")
    assert not has_context_adapter(other)
    bigger = model(encoder_dim=24)
    with pytest.raises(UserError, match="the model configs differ too"):
        load_context_adapter(bigger, tmp_path / "ctx.pt")
    with pytest.raises(UserError, match="holds no context adapter"):
        load_context_adapter(model(), tmp_path / "base.pt")


# ---------------------------------------------------------------------------------- catalogs for training
def fake_encode(texts):
    return [[1 + (ord(c) % 9) for c in t if c != " "] for t in texts]


def test_catalog_builder():
    words = ["FACE", "BEAD", "DEAD CAB", "ZED", "QUUX", "ABC"]
    b = CatalogBuilder(words, fake_encode, distractors=2, seed=1)
    assert b.ids == fake_encode(words)
    assert sorted(b.find("FACE CAB DEAD CAB BEADS")) == [0, 2]   # whole words; a phrase as a word sequence
    assert b.find("DEAD BEAD") == [1] and b.find("face") == [0] and b.find("SURFACE DEADCAB") == []
    sel = b.select("FACE CAB DEAD CAB", "k1")
    assert len(sel) == 4 and {0, 2} <= set(sel) and len(set(sel)) == 4
    assert b.select("FACE CAB DEAD CAB", "k1") == sel                         # reproducible
    assert any(b.select("FACE", f"k{i}") != b.select("FACE", "k0") for i in range(1, 6))   # varies with the key
    none = b.select("NOTHING HERE", "k2")
    assert len(none) == 2                                                      # distractors only
    big = CatalogBuilder(words, fake_encode, distractors=50)
    assert sorted(big.select("FACE", "x")) == list(range(6))                  # capped by the list
    cats = b(["FACE", "NOTHING"], ["a", "b"])
    assert [len(c) for c in cats] == [3, 2] and b.ids[0] in cats[0] and b.ids[0] not in cats[1]
    assert all(p in b.ids for c in cats for p in c)
    with pytest.raises(UserError, match="--distractors must be >= 0"):
        CatalogBuilder(words, fake_encode, distractors=-1)


def test_read_rare_words(tmp_path):
    p = tmp_path / "rare.txt"
    p.write_text("proogis\n\nWUSTO\nProogis\n  new   york \n")
    assert read_rare_words(p) == ["PROOGIS", "WUSTO", "NEW YORK"]
    with pytest.raises(UserError, match="does not exist"):
        read_rare_words(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="holds no words"):
        read_rare_words(tmp_path / "empty.txt")
