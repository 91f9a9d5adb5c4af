"""ctc_HLG_rnnt: the CTC head's HLG n-best candidates rescored with the transducer."""

import pytest
import torch

from sltk.asr import decode as D
from sltk.asr.checkpoint import load_model
from sltk.asr.data import AsrBatches
from sltk.decode.lang import load_lang


@pytest.fixture(scope="module")
def batch_and_model(toy_corpus, overfit_model):
    from lhotse import load_manifest

    cuts_path, lang_dir = toy_corpus
    exp, cfg = overfit_model
    model = load_model(exp / f"epoch-{cfg.num_epochs}.pt").eval()
    cuts = load_manifest(cuts_path)
    b = AsrBatches()[cuts.subset(first=3)]
    return model, load_lang(lang_dir), b


def test_transducer_logliks_are_the_models_own_loss(batch_and_model):
    # one batch of candidates for one utterance == the model's forward loss (torch backend, its
    # own encoder pass) of each candidate alone, the empty sequence included
    model, lang, b = batch_and_model
    feats, lens = b["feats"][:1, : int(b["feat_lens"][0])], b["feat_lens"][:1]
    ref = lang.encode(b["texts"][0])
    cands = [ref, ref[:-1], ref[1:] + ref[:1], [], ref + ref[:2]]
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, lens)
        got = D.transducer_logliks(model, enc, enc_lens, cands)
        want = [-float(model(feats, lens, [c], backend="torch")["rnnt"]) for c in cands]
    assert got == pytest.approx(want, rel=1e-4, abs=1e-3)
    # the overfitted model prefers its training transcript to every edit of it
    assert got[0] == max(got)


def test_rescoring_adds_the_scaled_transducer_score(batch_and_model, monkeypatch):
    # Hand-made n-best lists: the transcript with lattice score -10, a wrong sentence with -9.
    # The lattice alone picks the wrong one; the transducer's log-likelihood ll(.) at weight s
    # switches to the transcript once -10 + s ll(ref) > -9 + s ll(wrong), i.e. s > 1 / (ll(ref) - ll(wrong)).
    pytest.importorskip("k2")
    model, lang, b = batch_and_model
    ref_text = b["texts"][0]
    other = next(t for t in b["texts"][1:] if t != ref_text)
    ref_w = [lang.word2id[w] for w in ref_text.split()]
    oth_w = [lang.word2id[w] for w in other.split()]
    n = len(b["ids"])
    monkeypatch.setattr("sltk.decode.ctc.nbest_lists",  # the lattices' candidates
                        lambda *a, **k: [[(oth_w, -9.0), (ref_w, -10.0)]] + [[] for _ in range(n - 1)])
    with torch.no_grad():
        enc, enc_lens = model.encode(b["feats"], b["feat_lens"])
        ll_ref, ll_oth = D.transducer_logliks(model, enc[:1], enc_lens[:1],
                                              [lang.encode(ref_text), lang.encode(other)])
    assert ll_ref > ll_oth
    s_star = 1.0 / (ll_ref - ll_oth)
    picked = {}
    for s in (0.0, 0.9 * s_star, 1.1 * s_star, 10 * s_star):
        dec = D.Decoder(model, "ctc_HLG_rnnt", lang, D.DecodeOptions(rnnt_scale=s), torch.device("cpu"))
        texts, _, _ = dec(b["feats"], b["feat_lens"])
        assert texts[1:] == [""] * (n - 1)  # no candidate: an empty hypothesis
        picked[s] = texts[0]
    assert list(picked.values()) == [other, other, ref_text, ref_text]
    # only the rnnt_nbest best candidates by lattice score are rescored: 1 keeps the lattice's choice
    dec = D.Decoder(model, "ctc_HLG_rnnt", lang, D.DecodeOptions(rnnt_scale=10 * s_star, rnnt_nbest=1),
                    torch.device("cpu"))
    assert dec(b["feats"], b["feat_lens"])[0][0] == other


def test_rescoring_decodes_the_overfitted_utterances(batch_and_model):
    pytest.importorskip("k2")
    model, lang, b = batch_and_model
    dec = D.Decoder(model, "ctc_HLG_rnnt", lang, D.DecodeOptions(), torch.device("cpu"))
    texts, enc, enc_lens = dec(b["feats"], b["feat_lens"])
    assert texts == b["texts"]
    # the per-utterance score of a CTC method is the CTC head's log-likelihood
    assert all(s < 0 for s in dec.score(enc, enc_lens, texts))
