"""fast_beam_LG on the overfitted toy model with a word graph that knows one sentence only: that
sentence is decoded through the graph, every other utterance (words the graph cannot spell) is
decoded again without it (the fallback), and without the fallback they lose their words."""

from pathlib import Path

import pytest
import torch
from lhotse import CutSet

k2 = pytest.importorskip("k2")

from sltk.asr.checkpoint import load_model  # noqa: E402
from sltk.asr.data import AsrBatches  # noqa: E402
from sltk.asr.decode import DecodeOptions, Decoder  # noqa: E402
from sltk.decode.lang import load_lang  # noqa: E402


def one_sentence_lg(lang, text):
    """A linear token acceptor of ``text``'s lexicon spelling, each word id on its first token."""
    toks, words = [], []
    for w in text.split():
        pieces = [lang.token2id[p] for p in lang.lexicon[w]]
        toks += pieces
        words += [lang.word2id[w]] + [0] * (len(pieces) - 1)
    g = k2.linear_fsa(toks)
    g.aux_labels = torch.tensor(words + [-1], dtype=torch.int32)
    return k2.arc_sort(g)


def test_fast_beam_lg_falls_back_where_the_graph_has_no_path(toy_corpus, overfit_model):
    cuts_path, lang_dir = toy_corpus
    exp, cfg = overfit_model
    torch.set_num_threads(1)
    model = load_model(Path(exp) / f"epoch-{cfg.num_epochs}.pt").eval()
    lang = load_lang(lang_dir)
    batch = AsrBatches()[CutSet.from_file(cuts_path)]
    refs = batch["texts"]
    known = refs[0]
    plain, _, _ = Decoder(model, "fast_beam", lang, DecodeOptions(), torch.device("cpu"))(batch["feats"],
                                                                                       batch["feat_lens"])
    assert plain[0] == known and sum(p == r for p, r in zip(plain, refs)) >= 9  # an overfitted model

    others = [i for i, r in enumerate(refs) if r != known]
    assert others
    results = {}
    for fallback in (True, False):
        dec = Decoder(model, "fast_beam_LG", lang, DecodeOptions(lg_fallback=fallback), torch.device("cpu"))
        dec.graph = one_sentence_lg(lang, known)
        results[fallback] = (dec(batch["feats"], batch["feat_lens"])[0], getattr(dec, "fallbacks", 0))
    texts, n = results[True]
    assert texts[0] == known
    assert n == len(others) and all(texts[i] == plain[i] for i in others)
    texts, n = results[False]
    assert texts[0] == known and n == 0
    # without the fallback a sentence the graph cannot spell keeps at most the known words
    assert all(texts[i] != refs[i] and set(texts[i].split()) <= set(known.split()) for i in others)


def test_open_vocabulary_lg_spelling_penalty_scales_with_the_lm(toy_corpus, tmp_path):
    # LG's LM is scaled down for the transducer (lg_lm_scale); the <unk> spelling is part of that
    # LM, so each spelled piece costs the lang's penalty x the scale, or the explicit penalty.
    from sltk.asr.decode import compile_lg
    from sltk.decode.lang import prepare_lang

    cuts_path, lang_dir = toy_corpus
    text = tmp_path / "text.txt"
    text.write_text("BAD DACE\nDACE BAD BAD\nBAD FACE\n")  # a word seen once: <unk> gets LM mass
    prepare_lang([text], tmp_path / "open", bpe_model=Path(lang_dir) / "bpe.model", lm_order=2, open_vocab=True,
                 unk_penalty=-3.0)
    lang = load_lang(tmp_path / "open")
    conts = lang.unk_spelling().conts
    assert conts

    def loop_scores(lg):
        # the continuation pieces of a spelled word: arcs that only add the penalty (no LM score;
        # L has no scores, so the lexicon's continuation pieces without LM score have 0)
        arcs = lg.arcs.values()[:, :3]
        sel = torch.tensor([int(a[2]) in conts for a in arcs]) & (lg.lm_scores == 0)
        assert int(sel.sum()) > 0
        return set(round(float(x), 6) for x in lg.scores[sel]) - {0.0}

    assert loop_scores(compile_lg(lang, 1.0)) == {-3.0}
    assert loop_scores(compile_lg(lang, 0.01)) == {-0.03}
    assert loop_scores(compile_lg(lang, 0.01, unk_penalty=-0.5)) == {-0.5}
