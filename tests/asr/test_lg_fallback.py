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
