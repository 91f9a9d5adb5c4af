"""Adapters: identity at init, the decoder hooks, fusion arithmetic, files and checkpoints."""

import pytest
import torch

from sltk.adapters import (Adapter, AdapterConfig, attach, base_hash, detach, freeze_all_but, fuse, fusion_weights,
                           load_adapter, read_adapter, save_adapter, transform_entry)
from sltk.asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.utils.errors import UserError

SMALL = dict(feat_dim=20, vocab_size=10, encoder_dim=16, num_heads=2, ff_dim=32, lstm_hidden=24,
             num_encoder_layers=3, decoder_dim=16, joiner_dim=16, dropout=0.0)
Y = torch.tensor([[3, 4, 5, 6], [7, 1, 2, 8]])


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return Transducer(ModelConfig(**{**SMALL, **kw})).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 40, 20, generator=g), torch.tensor([40, 27])


def outputs(m):
    """Encoder output, decoder forward, and the decoder's step outputs (init then 4 tokens)."""
    with torch.no_grad():
        enc, lens = m.encode(*inputs())
        dec = m.decoder(Y)
        state = m.decoder.init_state(2)
        steps = [m.decoder.output(state)]
        for u in range(Y.size(1)):
            o, state = m.decoder.step(Y[:, u], state)
            steps.append(o)
    return enc, lens, dec, torch.stack(steps, 1)


def randomize(m, seed=5, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def assert_same(a, b, exact=True):
    for x, y in zip(a, b):
        assert torch.equal(x, y) if exact else torch.allclose(x, y, atol=1e-5), (x - y).abs().max()


@pytest.mark.parametrize("encoder,decoder", [("lstm", "stateless"), ("conformer", "lstm")])
@pytest.mark.parametrize("method", ["sum", "average", "attention"])
def test_fresh_adapters_change_nothing(encoder, decoder, method):
    m = model(encoder=encoder, decoder=decoder)
    base_out, names, h = outputs(m), list(m.state_dict()), base_hash(m)
    cfg = AdapterConfig(encoder_layers=[0, -1], decoder=True, bottleneck=8)
    attach(m, [("a", cfg), ("b", cfg)][: 1 if method == "sum" else 2], method)
    assert_same(outputs(m), base_out)  # exactly: the up-projections start at zero
    # the base's names are unchanged (base checkpoints load), the adapters are in the state_dict
    own = list(m.state_dict())
    assert [k for k in own if not k.startswith(("adapters.", "adapter_fusion."))] == names
    assert "adapters.0.encoder_0.up.weight" in own and "adapters.0.decoder.down.weight" in own
    assert ("adapter_fusion.encoder_2.query.weight" in own) == (method == "attention")
    assert base_hash(m) == h
    randomize(m)
    assert not torch.equal(outputs(m)[0], base_out[0])
    detach(m)
    assert_same(outputs(m), base_out)
    assert list(m.state_dict()) == names and not m.encoder.layer_hooks and not m.decoder.output_hooks


def test_adapter_module():
    a = Adapter(6, 3)
    h = torch.randn(4, 6)
    assert torch.equal(a(h), torch.zeros(4, 6))
    assert torch.equal(a.up.weight, torch.zeros(6, 3)) and torch.equal(a.up.bias, torch.zeros(6))
    with torch.no_grad():
        a.up.weight.fill_(1.0)
    z = torch.relu(a.down(torch.nn.functional.layer_norm(h, (6,))))
    assert torch.allclose(a(h), z.sum(-1, keepdim=True).expand(4, 6), atol=1e-6)


@pytest.mark.parametrize("decoder,context", [("stateless", 2), ("stateless", 1), ("lstm", 1)])
def test_decoder_hooks_keep_step_and_forward_consistent(decoder, context):
    m = model(decoder=decoder, context_size=context)
    base = m.decoder(Y)
    attach(m, [("a", AdapterConfig(encoder_layers=[], decoder=True, bottleneck=4))])
    randomize(m)
    _, _, full, steps = outputs(m)
    assert not torch.allclose(full, base, atol=1e-3)
    assert torch.allclose(steps, full, atol=1e-5)
    # the hook is the adapter: h + a(h) on the base output
    a = m.adapters[0]["decoder"]
    with torch.no_grad():
        assert torch.allclose(full, base + a(base), atol=1e-6)
    # a reordered state keeps its (adapted) output
    state = m.decoder.init_state(2)
    for u in range(Y.size(1)):
        _, state = m.decoder.step(Y[:, u], state)
    sel = m.decoder.select_state(state, torch.tensor([1, 1, 0]))
    assert torch.allclose(m.decoder.output(sel), full[[1, 1, 0], -1], atol=1e-5)


def test_config(tmp_path):
    c = AdapterConfig()
    assert c.encoder_layers == [-1] and c.decoder and c.bottleneck == 64
    assert AdapterConfig(encoder_layers=[-1, 0]).positions(3) == ["encoder_0", "encoder_2", "decoder"]
    assert AdapterConfig(encoder_layers=[1], decoder=False).positions(3) == ["encoder_1"]
    with pytest.raises(UserError, match="encoder layer 3 does not exist .*3 layers"):
        AdapterConfig(encoder_layers=[3]).positions(3)
    with pytest.raises(UserError, match="encoder layer 2 is given twice"):
        AdapterConfig(encoder_layers=[2, -1]).positions(3)
    with pytest.raises(UserError, match="places no adapter"):
        AdapterConfig(encoder_layers=[], decoder=False)
    with pytest.raises(UserError, match="bottleneck must be a positive integer"):
        AdapterConfig(bottleneck=0)
    p = tmp_path / "a.yaml"
    p.write_text("encoder_layers: [0]\nbottleneck: 8\nbotleneck: 3\n")
    with pytest.raises(UserError, match=r"unknown key 'botleneck' in adapter config .*a\.yaml"):
        AdapterConfig.from_yaml(p)
    p.write_text("encoder_layers: [0]\nbottleneck: 8\n")
    assert AdapterConfig.from_yaml(p) == AdapterConfig(encoder_layers=[0], decoder=True, bottleneck=8)
    with pytest.raises(UserError, match="does not exist"):
        AdapterConfig.from_yaml(tmp_path / "missing.yaml")


def two_adapter_files(tmp_path, base, cfg=AdapterConfig(encoder_layers=[-1], bottleneck=6)):
    """Two adapter files for ``base`` with random weights."""
    paths = []
    for i, name in enumerate(["one", "two"]):
        m = load_model(base)
        attach(m, [(name, cfg)])
        randomize(m, seed=10 + i)
        paths.append(tmp_path / f"{name}.adapter")
        save_adapter(paths[-1], m, info={"words": name})
    return paths


@pytest.fixture
def base_ckpt(tmp_path):
    p = tmp_path / "base.pt"
    save_checkpoint(p, model(encoder="lstm"), step=0, epoch=0)
    return p


def test_fusion_arithmetic(tmp_path, base_ckpt):
    a1, a2 = two_adapter_files(tmp_path, base_ckpt)
    base = load_model(base_ckpt).eval()
    enc0, lens, dec0, _ = outputs(base)
    valid = torch.arange(enc0.size(1))[None, :] < lens[:, None]
    single = load_model(base_ckpt).eval()
    load_adapter(single, a1)
    ad1 = [single.adapters[0][k] for k in ("encoder_2", "decoder")]
    m2 = load_model(base_ckpt).eval()
    fuse(m2, [a2], "sum")
    ad2 = [m2.adapters[0][k] for k in ("encoder_2", "decoder")]
    with torch.no_grad():
        e1, e2 = ad1[0](enc0), ad2[0](enc0)
        d1, d2 = ad1[1](dec0), ad2[1](dec0)

    def check(m, enc_expect, dec_expect, exact=False):
        enc, _, dec, steps = outputs(m)
        assert_same((enc[valid], dec, steps[:, -1]), (enc_expect[valid], dec_expect, dec_expect[:, -1]), exact)

    check(single, enc0 + e1, dec0 + d1)
    # one adapter: sum and average are that adapter alone, exactly
    for method in ("sum", "average"):
        m = load_model(base_ckpt).eval()
        fuse(m, [a1], method)
        assert_same(outputs(m), outputs(single))
    m = load_model(base_ckpt).eval()
    fuse(m, [a1, a2], "sum")
    check(m, enc0 + e1 + e2, dec0 + d1 + d2)
    m = load_model(base_ckpt).eval()
    fuse(m, [a1, a2], "average")
    check(m, enc0 + (e1 + e2) / 2, dec0 + (d1 + d2) / 2)

    # attention over two copies of one adapter without the base candidate: the adapter alone
    m = load_model(base_ckpt).eval()
    fuse(m, [a1, a1], "attention", include_base=False)
    check(m, enc0 + e1, dec0 + d1)
    w = fusion_weights(m)
    assert set(w) == {"encoder_2", "decoder"} and w["decoder"].shape[-1] == 2
    # at init the attention is near uniform; with W_q = 0 exactly uniform: base + a1 + a2 over 3
    m = load_model(base_ckpt).eval()
    fuse(m, [a1, a2], "attention")
    outputs(m)
    assert (fusion_weights(m)["encoder_2"] - 1 / 3).abs().max() < 0.01
    with torch.no_grad():
        for f in m.adapter_fusion.values():
            f.query.weight.zero_()
    check(m, enc0 + (e1 + e2) / 3, dec0 + (d1 + d2) / 3)
    assert torch.equal(fusion_weights(m)["decoder"], torch.full_like(fusion_weights(m)["decoder"], 1 / 3))

    # mismatched positions, a model that has adapters already, an empty list: refused
    other = two_adapter_files(tmp_path / "o", base_ckpt, AdapterConfig(encoder_layers=[0], bottleneck=6))[0]
    with pytest.raises(UserError, match="different positions .*encoder_2, decoder vs encoder_0, decoder"):
        fuse(load_model(base_ckpt), [a1, other], "sum")
    with pytest.raises(UserError, match="has adapters already"):
        fuse(single, [a2], "sum")
    with pytest.raises(UserError, match="no adapter files"):
        fuse(load_model(base_ckpt), [], "sum")
    with pytest.raises(UserError, match="method must be one of"):
        fuse(load_model(base_ckpt), [a1], "max")


def test_adapter_file_and_base_hash(tmp_path, base_ckpt):
    a1, _ = two_adapter_files(tmp_path, base_ckpt)
    obj = read_adapter(a1)
    base = load_model(base_ckpt)
    h = base_hash(base)
    assert obj["format"] == "sltk-adapter-v1" and obj["name"] == "one" and obj["base_hash"] == h
    assert obj["config"] == {"encoder_layers": [-1], "decoder": True, "bottleneck": 6}
    assert obj["info"] == {"words": "one"} and obj["base_model_config"] == base.cfg.to_dict()
    per_position = 2 * 16 + (16 * 6 + 6) + (6 * 16 + 16)  # norm, down, up
    assert obj["num_params"] == sum(v.numel() for v in obj["state_dict"].values()) == 2 * per_position
    assert set(obj["state_dict"]) >= {"encoder_2.up.weight", "decoder.norm.bias"}
    # the hash: over the base weights only, any change of one value changes it
    assert len(h) == 64 and base_hash(base.state_dict()) == h == base_hash(read_checkpoint(base_ckpt)["model"])
    other = load_model(base_ckpt)
    with torch.no_grad():
        other.joiner.encoder_proj.weight[0, 0] += 1e-3  # one value of the base changed
    h2 = base_hash(other)
    assert h2 != h
    with pytest.raises(UserError) as e:
        load_adapter(other, a1)
    msg = str(e.value)
    assert f"trained on base model {h[:12]}" in msg and f"this model is {h2[:12]}" in msg
    assert "refuses to load onto another base model" in msg and not hasattr(other, "adapters")
    # another model config: named as well
    with pytest.raises(UserError, match="configs differ too .*num_encoder_layers: 3 vs 2"):
        load_adapter(model(encoder="lstm", num_encoder_layers=2), a1)
    # not an adapter file, missing file
    with pytest.raises(UserError, match=r"base\.pt is not an sltk adapter file \(a model checkpoint\)"):
        read_adapter(base_ckpt)
    with pytest.raises(UserError, match="adapter file .*nope.adapter does not exist"):
        read_adapter(tmp_path / "nope.adapter")
    (tmp_path / "bad.adapter").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot be read"):
        read_adapter(tmp_path / "bad.adapter")


@pytest.mark.parametrize("method,include_base", [("single", True), ("sum", True), ("average", True),
                                                 ("attention", False), ("attention", True)])
def test_checkpoint_round_trip(tmp_path, base_ckpt, method, include_base):
    a1, a2 = two_adapter_files(tmp_path, base_ckpt)
    m = load_model(base_ckpt).eval()
    if method == "single":
        load_adapter(m, a1)
    else:
        fuse(m, [a1, a2], method, include_base)
    if method == "attention":  # trained-looking fusion weights
        with torch.no_grad():
            for p in m.adapter_fusion.parameters():
                p.add_(torch.randn(p.shape) * 0.3)
    entry = transform_entry(m)
    assert entry["kind"] == ("adapter" if method == "single" else "adapter_fusion")
    assert entry["base_hash"] == base_hash(m)
    save_checkpoint(tmp_path / "m.pt", m, transforms=[entry], step=3)
    m2 = load_model(tmp_path / "m.pt").eval()
    assert_same(outputs(m2), outputs(m))
    assert m2.adapter_setup["method"] == ("sum" if method == "single" else method)
    assert m2.adapter_setup["include_base"] == include_base and m2.adapter_setup["names"][0] == "one"
    if method == "attention":
        assert fusion_weights(m2)["decoder"].shape[-1] == 2 + include_base
    # an adapter of the reloaded model saves to a file that loads onto the base again
    save_adapter(tmp_path / "again.adapter", m2, index=0)
    m3, m4 = load_model(base_ckpt).eval(), load_model(base_ckpt).eval()
    load_adapter(m3, tmp_path / "again.adapter")
    load_adapter(m4, a1)
    assert_same(outputs(m3), outputs(m4))


def test_freeze_all_but(base_ckpt, tmp_path):
    m = load_model(base_ckpt)
    attach(m, [("a", AdapterConfig(bottleneck=4))], "attention")
    n = freeze_all_but(m, "adapters")
    assert n == sum(p.numel() for p in m.adapters.parameters())
    assert all(p.requires_grad == k.startswith("adapters.") for k, p in m.named_parameters())
    n = freeze_all_but(m, "adapter_fusion")
    assert n == sum(p.numel() for p in m.adapter_fusion.parameters()) == 2 * 3 * 16 * 16
    with pytest.raises(UserError, match="no adapters parameters"):
        freeze_all_but(load_model(base_ckpt), "adapters")
