"""prepare_lang: tables, lexicon, n-gram LM (hand-computed Kneser-Ney), G and HLG."""

import json
import math

import pytest

from sltk.decode.lang import add_disambig_symbols, load_lang, prepare_lang, read_symbols
from sltk.decode.ngram import read_arpa, train_kneser_ney, write_arpa
from sltk.utils.errors import UserError

CORPUS = [
    "turn on the kitchen lights",
    "turn off the lights",
    "play some jazz in the kitchen",
    "play the song yesterday",
    "set a timer for ten minutes",
    "what is the weather in paris",
    "call anna",
    "turn the music down",
]


# ----------------------------------------------------------------------------- n-gram LM
def test_kneser_ney_bigram_hand_computed():
    # "<s> a b </s>", "<s> a </s>". Unigram continuation counts: a 1, b 1, </s> 2 (total 4,
    # D1 = n1/(n1+2 n2) = 2/4); uniform floor over {a, b, </s>}:
    #   p(a) = (1-.5)/4 + (.5*3/4)/3 = .25,  p(b) = .25,  p(</s>) = 1.5/4 + .125 = .5
    # Bigram raw counts: <s> a 2, a b 1, a </s> 1, b </s> 1; D2 = 3/(3+2) = .6
    #   p(a|<s>) = (2-.6)/2 + (.6*1/2) * .25 = .775
    #   p(b|a) = .4/2 + (.6*2/2) * .25 = .35,  p(</s>|a) = .2 + .6*.5 = .5,  p(a|a) = .6*.25
    lm = train_kneser_ney([["a", "b"], ["a"]], order=2)
    expect = {("a", ()): .25, ("b", ()): .25, ("</s>", ()): .5, ("a", ("<s>",)): .775,
              ("b", ("a",)): .35, ("</s>", ("a",)): .5, ("a", ("a",)): .15}
    for (w, h), p in expect.items():
        assert 10 ** lm.logprob(w, h) == pytest.approx(p, abs=1e-9), (w, h)
    assert lm.bows[1][("a",)] == pytest.approx(math.log10(.6))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_arpa_probabilities_are_normalized(tmp_path, order):
    lm = train_kneser_ney([s.split() for s in CORPUS], order=order, extra_vocab=["unseen"])
    write_arpa(lm, tmp_path / "lm.arpa")
    lm = read_arpa(tmp_path / "lm.arpa")
    assert lm.order == order
    vocab = [w for w in lm.vocab if w != "<s>"]
    assert "unseen" in vocab and "</s>" in vocab
    histories = [(), ("<s>",), ("the",), ("<s>", "turn"), ("turn", "on"), ("the", "kitchen"),
                 ("in", "the", "kitchen"), ("unseen", "play"), ("call", "anna", "the")]
    for h in histories:
        total = sum(10 ** lm.logprob(w, h) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), h


def test_read_arpa_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_arpa(tmp_path / "none.arpa")
    (tmp_path / "bad.arpa").write_text("hello\n")
    with pytest.raises(UserError, match="not an ARPA file"):
        read_arpa(tmp_path / "bad.arpa")
    (tmp_path / "short.arpa").write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n-0.5\ta\n\\end\\\n")
    with pytest.raises(UserError, match="truncated"):
        read_arpa(tmp_path / "short.arpa")


def test_add_disambig_symbols():
    lex = [("a", ["x"]), ("ab", ["x", "y"]), ("b", ["z"]), ("c", ["z"]), ("d", ["w"])]
    out, n = add_disambig_symbols(lex)
    assert out == [("a", ["x", "#1"]), ("ab", ["x", "y"]), ("b", ["z", "#1"]), ("c", ["z", "#2"]),
                   ("d", ["w"])]
    assert n == 2


# ----------------------------------------------------------------------------- lang dir
@pytest.fixture(scope="module")
def lang_dir(tmp_path_factory):
    pytest.importorskip("k2")
    d = tmp_path_factory.mktemp("lang")
    data = d / "data"
    data.mkdir()
    (data / "text").write_text("".join(f"utt{i:02d} {s}\n" for i, s in enumerate(CORPUS)))
    prepare_lang([data], d / "lang", vocab_size=40, lm_order=3)
    return d / "lang"


def test_tables_are_consistent(lang_dir):
    lang = load_lang(lang_dir)
    tokens = read_symbols(lang_dir / "tokens.txt")
    assert [t for t, i in sorted(tokens.items(), key=lambda x: x[1])][:3] == ["<blk>", "<sos/eos>", "<unk>"]
    assert sorted(tokens.values()) == list(range(len(tokens)))
    assert tokens["#0"] == lang.vocab_size  # disambiguation symbols follow the model's tokens
    words_lines = (lang_dir / "words.txt").read_text().split("\n")[:-1]
    assert words_lines[0] == "<eps> 0"
    assert [l.split()[0] for l in words_lines[-3:]] == ["#0", "<s>", "</s>"]
    words = [l.split()[0] for l in words_lines[1:-3]]
    assert words == sorted({w for s in CORPUS for w in s.split()}, key=lambda w: w.encode())
    assert [int(l.split()[1]) for l in words_lines] == list(range(len(words_lines)))
    assert set(lang.lexicon) == set(words)
    for w, pieces in lang.lexicon.items():
        assert all(p in tokens for p in pieces)
        assert lang.sp.decode_pieces(pieces) == w
        assert lang.sp.encode(w, out_type=str) == pieces
    cfg = json.loads((lang_dir / "lang.json").read_text())
    assert cfg["vocab_size"] == lang.vocab_size and cfg["lm_order"] == 3


def test_arpa_of_prepare_lang_is_normalized(lang_dir):
    lm = read_arpa(lang_dir / "lm_3gram.arpa")
    vocab = [w for w in lm.vocab if w != "<s>"]
    for h in [("<s>",), ("<s>", "turn"), ("the", "kitchen"), ("music", "anna")]:
        assert sum(10 ** lm.logprob(w, h) for w in vocab) == pytest.approx(1.0, abs=1e-4)


def test_g_accepts_training_sentences_with_the_arpa_score(lang_dir):
    from sltk.decode.graphs import sentence_score

    lang = load_lang(lang_dir)
    G = lang.graph("G")
    lm = read_arpa(lang_dir / "lm_3gram.arpa")
    backoff = lang.word2id["#0"]
    for s in CORPUS[:4] + ["the kitchen lights", "anna play jazz"]:
        score = sentence_score(G, [lang.word2id[w] for w in s.split()], backoff)
        # G's best path is at least the ARPA path (the exact n-gram or its backoff chain)
        assert score >= lm.sentence_logprob(s.split()) * math.log(10) - 1e-3
        assert score == pytest.approx(lm.sentence_logprob(s.split()) * math.log(10), abs=0.05)
    assert sentence_score(G, [lang.word2id["<s>"]], backoff) == float("-inf")


def test_graphs_load(lang_dir):
    import k2

    lang = load_lang(lang_dir)
    HLG = lang.graph("HLG")
    assert HLG.num_arcs > 0 and isinstance(HLG.aux_labels, k2.RaggedTensor)
    assert "ArcSorted" in HLG.properties_str
    assert int(HLG.labels.max()) < lang.vocab_size  # disambiguation tokens removed
    assert int(HLG.aux_labels.values.max()) < lang.word2id["#0"]
    assert (HLG.scores - HLG.lm_scores).abs().max() < 1e-5  # all of HLG's scores come from G
    L = lang.graph("L_disambig")
    assert int(L.labels.max()) >= lang.token2id["#0"]
    H = lang.graph("H")
    assert int(H.labels.max()) == lang.vocab_size - 1


def test_rerun_skips_and_other_settings_need_overwrite(lang_dir, caplog):
    data = lang_dir.parent / "data"
    before = {p.name: p.stat().st_mtime_ns for p in lang_dir.iterdir()}
    prepare_lang([data], lang_dir, vocab_size=40, lm_order=3)
    assert {p.name: p.stat().st_mtime_ns for p in lang_dir.iterdir()} == before
    with pytest.raises(UserError, match="lm_order"):
        prepare_lang([data], lang_dir, vocab_size=40, lm_order=2)


def test_resume_after_lost_outputs_and_determinism(tmp_path, lang_dir):
    data = lang_dir.parent / "data"
    out = tmp_path / "lang"
    prepare_lang([data], out, vocab_size=40, lm_order=3, graphs=False)
    assert (out / "bpe.model").read_bytes() == (lang_dir / "bpe.model").read_bytes()
    assert (out / "lm_3gram.arpa").read_text() == (lang_dir / "lm_3gram.arpa").read_text()
    assert not (out / "HLG.pt").exists()
    with pytest.raises(UserError, match="without k2 graphs"):
        load_lang(out).graph("HLG")
    # a later run with k2 adds the graphs; a missing output is rebuilt
    prepare_lang([data], out, vocab_size=40, lm_order=3)
    assert (out / "HLG.pt").exists()
    (out / "G_3gram.pt").unlink()
    prepare_lang([data], out, vocab_size=40, lm_order=3)
    assert (out / "G_3gram.pt").exists() and load_lang(out).config["graphs"]


def test_lm_order_zero_and_bad_input(tmp_path):
    pytest.importorskip("k2")
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    lang = prepare_lang([tmp_path / "corpus.txt"], tmp_path / "lang0", vocab_size=30, lm_order=0)
    assert lang.has_graph("H") and not lang.has_graph("HLG")
    with pytest.raises(UserError, match="lm-order 0"):
        lang.graph("HLG")
    with pytest.raises(UserError, match="does not exist"):
        prepare_lang([tmp_path / "missing.txt"], tmp_path / "x")
    (tmp_path / "reserved.txt").write_text("hello #1 world\n")
    with pytest.raises(UserError, match="reserved"):
        prepare_lang([tmp_path / "reserved.txt"], tmp_path / "y")
    with pytest.raises(UserError, match="no lang.json"):
        load_lang(tmp_path)


def test_given_bpe_model_and_arpa(tmp_path, lang_dir):
    pytest.importorskip("k2")
    from sltk.decode.graphs import sentence_score

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    lm = train_kneser_ney([s.split() for s in CORPUS + ["call tim", "call qxz"]], order=2)
    write_arpa(lm, tmp_path / "ext.arpa")
    lang = prepare_lang([corpus], tmp_path / "lang", bpe_model=lang_dir / "bpe.model", arpa=tmp_path / "ext.arpa")
    assert (tmp_path / "lang" / "bpe.model").read_bytes() == (lang_dir / "bpe.model").read_bytes()
    assert lang.lm_order == 2 and (tmp_path / "lang" / "lm_2gram.arpa").is_file()
    assert "tim" in lang.word2id and "tim" in lang.lexicon  # an ARPA word joins the lexicon
    assert "qxz" not in lang.word2id  # 'q', 'x' cannot be spelled with the BPE pieces
    ids = [lang.word2id["call"], lang.word2id["tim"]]
    assert sentence_score(lang.graph("G"), ids, lang.word2id["#0"]) > -20


def test_without_k2(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "k2", None)  # `import k2` now fails as on torch 2.x
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    lang = prepare_lang([tmp_path / "corpus.txt"], tmp_path / "lang", vocab_size=30, lm_order=2)
    assert not lang.config["graphs"] and not lang.has_graph("H")
    assert (tmp_path / "lang" / "lm_2gram.arpa").is_file() and lang.encode("call anna")
