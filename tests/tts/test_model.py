"""The acoustic model's pieces: length regulator, word pooling, VAE shapes per granularity."""

import pytest
import torch

from sltk.tts.model import (GRANULARITIES, ModelConfig, TTSModel, frame_position, length_regulate, make_batch,
                            unit_mean, word_middle_frames)


def test_length_regulator_expands_exactly_by_durations():
    x = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [0.0]]])
    d = torch.tensor([[2, 0, 3], [1, 2, 0]])
    y, lens = length_regulate(x, d)
    assert lens.tolist() == [5, 3] and y.shape == (2, 5, 1)
    assert y[0, :, 0].tolist() == [1, 1, 3, 3, 3]
    assert y[1, :, 0].tolist() == [4, 5, 5, 0, 0]  # padded with zeros


def test_frame_position():
    p = frame_position(torch.tensor([[2, 1]]))
    assert p[0, :, 0].tolist() == [0.0, 0.5, 0.0] and p[0, :, 1].tolist() == [0.5, 0.5, 1.0]


def test_word_pooling_picks_each_words_middle_frame():
    # units: sil (2 frames) | word 1: phonemes of 2+1+3 = 6 frames | word 2: 4 frames | "." 1 frame
    dur = torch.tensor([2, 2, 1, 3, 4, 1])
    widx = torch.tensor([0, 1, 1, 1, 2, 3])
    # frames: unit 0 = 0..1 -> 0; unit 1 = 2..7 -> 2 + (6 - 1) // 2 = 4; unit 2 = 8..11 -> 9; unit 3 = 12
    assert word_middle_frames(dur, widx, 4).tolist() == [0, 4, 9, 12]


def test_unit_mean():
    x = torch.tensor([[[1.0], [3.0], [5.0], [7.0]]])
    idx = torch.tensor([[0, 0, 1, 1]])
    mask = torch.tensor([[True, True, True, False]])
    assert unit_mean(x, idx, 2, mask)[0, :, 0].tolist() == [2.0, 5.0]


def _batch(vocab_size=6):
    torch.manual_seed(0)
    items = []
    for n, units, frames in ((7, [0, 1, 1, 2, 2, 2, 3], 30), (5, [0, 1, 1, 1, 2], 21)):
        dur = torch.full((n,), frames // n)
        dur[-1] += frames - int(dur.sum())
        items.append({"phones": torch.randint(2, vocab_size + 2, (n,)), "emphasis": torch.zeros(n, dtype=torch.long),
                      "word_index": torch.tensor(units), "durations": dur, "mel": torch.randn(frames, 10)})
    return make_batch(items)


@pytest.mark.parametrize("granularity,expect_k", [("utterance", 1), ("word", 4), ("phoneme", 7)])
def test_vae_shapes_per_granularity(granularity, expect_k):
    cfg = ModelConfig(vocab=tuple("abcdef"), granularity=granularity, num_mels=10, dim=16, z_dim=3, ref_dim=8,
                      pred_dim=8, enc_layers=1, dec_layers=2)
    m = TTSModel(cfg)
    b = _batch()
    mu, logvar = m.posterior(b)
    assert mu.shape == (2, expect_k, 3) and logvar.shape == mu.shape
    enc = m.encoder(b["phones"], b["emphasis"], b["phones"] != 0)
    assert m.predict_embedding(enc, b).shape == (2, expect_k, 3)
    z = torch.arange(2 * expect_k, dtype=torch.float32).reshape(2, expect_k, 1).expand(-1, -1, 3)
    per_phone = m.broadcast(z, b)[..., 0]
    if granularity == "utterance":
        assert per_phone[0].tolist() == [0.0] * 7
    elif granularity == "word":  # each phoneme gets its word's z
        assert per_phone[0].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0]
    else:
        assert per_phone[0].tolist() == list(map(float, range(7)))
    out = m(b)
    assert set(out) >= {"loss", "mel", "dur", "kl", "pred"} and torch.isfinite(out["loss"])
    assert "pitch" not in out  # no F0 in this batch: nothing to learn the pitch from
    out["loss"].backward()
    res = m.eval().infer(b, source="oracle", durations=b["durations"])
    assert res["mel"].shape == (2, 30, 10) and res["mel_lens"].tolist() == [30, 21]
    res = m.infer(b, source="predict", speed=2.0)
    assert (res["durations"][0] >= 1).all() and res["z"].shape == (2, expect_k, 3)


def test_no_embedding_model():
    m = TTSModel(ModelConfig(vocab=tuple("abcdef"), granularity="none", num_mels=10, dim=16, enc_layers=1,
                             dec_layers=1))
    assert not hasattr(m, "ref")
    out = m(_batch())
    assert "kl" not in out and torch.isfinite(out["loss"])
    assert set(GRANULARITIES) == {"none", "utterance", "word", "phoneme"}


def test_pitch_predictor_is_trained_with_f0_and_predicts_it():
    m = TTSModel(ModelConfig(vocab=tuple("abcdef"), granularity="none", num_mels=10, dim=16, enc_layers=1,
                             dec_layers=1))
    b = _batch()
    b["pitch"] = torch.full(b["phones"].shape, 7.0)
    b["voiced"] = (b["phones"] != 0).float()
    b["voiced"][:, 0] = 0.0
    out = m(b)
    assert {"pitch", "voicing"} <= set(out) and torch.isfinite(out["loss"])
    res = m.eval().infer(b, source="zero")
    assert res["log2_f0"].shape == b["phones"].shape and ((res["log2_f0"] == 0) | (res["voiced"] > 0)).all()


def test_predictor_refit_trains_only_the_predictor_and_keeps_the_best_epoch():
    from sltk.tts.train import TrainConfig, _predictor_loss, fit_predictor

    torch.manual_seed(0)
    m = TTSModel(ModelConfig(vocab=tuple("abcdef"), granularity="word", num_mels=10, dim=16, z_dim=3, ref_dim=8,
                             pred_dim=8, enc_layers=1, dec_layers=1))
    items = []
    for k in range(12):  # the same two texts (a prosody the text determines) with their own mels
        n, units = (7, [0, 1, 1, 2, 2, 2, 3]) if k % 2 else (5, [0, 1, 1, 1, 2])
        dur = torch.full((n,), 4)
        items.append({"phones": torch.arange(2, 2 + n) % 8, "emphasis": torch.zeros(n, dtype=torch.long),
                      "word_index": torch.tensor(units), "durations": dur, "mel": torch.randn(4 * n, 10)})
    for it in items:
        it["phones"][it["phones"] < 2] = 2
    before = {k: v.clone() for k, v in m.state_dict().items()}
    batch = make_batch(items)
    loss0 = float(_predictor_loss(m.eval(), batch))
    res = fit_predictor(m, items, TrainConfig(granularity="word", batch_size=4, lr=1e-2, predictor_epochs=30))
    after = m.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("pred_") for k in changed)  # the autoencoder is frozen
    assert all(p.requires_grad for p in m.parameters())  # and unfrozen again afterwards
    hist = res["history"]
    assert len(hist) == 31 and res["kept_epoch"] == min(range(31), key=lambda e: hist[e]["dev"])
    assert float(_predictor_loss(m.eval(), batch)) < 0.5 * loss0
