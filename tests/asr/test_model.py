"""Model pieces: shapes, the decoder step API against its training forward, checkpoints."""

import pytest
import torch

from sltk.asr.checkpoint import average_checkpoints, load_model, read_checkpoint, save_checkpoint
from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.asr.subsampling import subsampled_lengths
from sltk.utils.errors import UserError

SMALL = dict(feat_dim=20, vocab_size=10, encoder_dim=16, num_heads=2, ff_dim=32, lstm_hidden=24,
             num_encoder_layers=2, decoder_dim=16, joiner_dim=16, dropout=0.0)


@pytest.mark.parametrize("encoder", ["conformer", "lstm"])
def test_encoder_shapes_and_padding_invariance(encoder):
    torch.manual_seed(0)
    m = Transducer(ModelConfig(encoder=encoder, **SMALL)).eval()
    x = torch.randn(2, 50, 20)
    lens = torch.tensor([50, 30])
    enc, enc_lens = m.encode(x, lens)
    assert enc.shape == (2, 11, 16) and enc_lens.tolist() == [11, 6]
    assert subsampled_lengths(torch.tensor([50, 30, 7])).tolist() == [11, 6, 1]
    # the shorter utterance alone gives the same encoding as inside the padded batch
    alone, _ = m.encode(x[1:, :30], lens[1:])
    assert torch.allclose(alone[0], enc[1, :6], atol=1e-5)
    assert enc[1, 6:].abs().max() == 0


@pytest.mark.parametrize("decoder,context", [("stateless", 2), ("stateless", 1), ("lstm", 2)])
def test_decoder_step_matches_forward(decoder, context):
    torch.manual_seed(0)
    m = Transducer(ModelConfig(decoder=decoder, context_size=context, **SMALL)).eval()
    y = torch.tensor([[3, 4, 5, 6], [7, 1, 2, 8]])
    full = m.decoder(y)  # (2, 5, D)
    state = m.decoder.init_state(2)
    outs = [m.decoder.output(state)]
    for u in range(4):
        o, state = m.decoder.step(y[:, u], state)
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)
    sel = m.decoder.select_state(state, torch.tensor([1, 1, 0]))
    assert torch.allclose(m.decoder.output(sel), full[[1, 1, 0], -1], atol=1e-5)


def test_checkpoint_round_trip_and_refusal(tmp_path):
    cfg = ModelConfig(encoder="lstm", **SMALL)
    m = Transducer(cfg)
    save_checkpoint(tmp_path / "a.pt", m, step=7)
    m2 = load_model(tmp_path / "a.pt")
    assert m2.cfg == cfg and read_checkpoint(tmp_path / "a.pt")["step"] == 7
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    other = ModelConfig(encoder="conformer", **SMALL)
    with pytest.raises(UserError, match="different model .*encoder: 'conformer' vs 'lstm'"):
        load_model(tmp_path / "a.pt", expect=other)
    with pytest.raises(UserError, match="do not fit this model"):
        from sltk.asr.checkpoint import load_weights
        load_weights(Transducer(other), m.state_dict(), "a.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot be read"):
        load_model(tmp_path / "bad.pt")


def test_average_checkpoints(tmp_path):
    cfg = ModelConfig(encoder="lstm", **SMALL)
    ms = [Transducer(cfg) for _ in range(3)]
    for i, m in enumerate(ms):
        save_checkpoint(tmp_path / f"{i}.pt", m)
    avg = average_checkpoints([tmp_path / f"{i}.pt" for i in range(3)])
    k = "joiner.output.weight"
    expect = sum(m.state_dict()[k] for m in ms) / 3
    assert torch.allclose(avg["model"][k], expect, atol=1e-6)


def test_config_rejects_unknown_key():
    with pytest.raises(UserError, match="unknown key 'encoder_dims'"):
        ModelConfig.from_dict({"encoder_dims": 3})
