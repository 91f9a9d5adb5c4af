"""Catalog files, utt2catalog tables and BPE encoding of phrases (words outside the vocabulary)."""

import logging

import pytest

from sltk.bias.catalog import encode_catalog, load_context_graph, read_catalog, read_utt2catalog
from sltk.decode.lang import prepare_lang, train_bpe
from sltk.utils.errors import UserError

SENTENCES = ["TURN ON THE KITCHEN LIGHTS", "PLAY SOME JAZZ", "CALL ANNA", "TURN THE MUSIC DOWN"]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A tiny BPE model: the letters of SENTENCES (no Q, X, V, F, B) and a few merges."""
    path = tmp_path_factory.mktemp("bpe") / "bpe.model"
    path.write_bytes(train_bpe([s.split() for s in SENTENCES], 30))
    import sentencepiece as spm

    return path, spm.SentencePieceProcessor(model_file=str(path))


def test_read_catalog(tmp_path):
    p = tmp_path / "cat.txt"
    p.write_text("# contacts\n\ncall anna\n  # indented comment\nZoë's Café\t3.0\nJAZZ 2000\t\n"
                 "kitchen-lights\t0\n", encoding="utf-8")
    assert read_catalog(p) == [("CALL ANNA", None), ("ZOE'S CAFE", 3.0), ("JAZZ TWO THOUSAND", None),
                               ("KITCHEN LIGHTS", 0.0)]


def test_read_catalog_errors(tmp_path, caplog):
    p = tmp_path / "cat.txt"
    with pytest.raises(UserError, match="does not exist"):
        read_catalog(p)
    p.write_text("call anna\n\nplay jazz\tlots\n")
    with pytest.raises(UserError, match=rf"{p}:3: boost 'lots' is not a number"):
        read_catalog(p)
    p.write_text("play jazz\t-1\n")
    with pytest.raises(UserError, match=rf"{p}:1: boost must be .* >= 0"):
        read_catalog(p)
    p.write_text("play jazz\tnan\n")
    with pytest.raises(UserError, match=rf"{p}:1: boost must be a finite"):
        read_catalog(p)
    p.write_text("play\tjazz\t2\n")
    with pytest.raises(UserError, match=rf"{p}:1: expected"):
        read_catalog(p)
    p.write_bytes(b"caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_catalog(p)
    p.write_text("!!!\nanna\n")
    with caplog.at_level(logging.WARNING, logger="sltk"):
        assert read_catalog(p) == [("ANNA", None)]
    assert f"{p}:1" in caplog.text


def test_read_utt2catalog(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.txt").write_text("anna\n")
    (tmp_path / "b.txt").write_text("jazz\n")
    table = tmp_path / "data" / "utt2catalog"
    table.parent.mkdir()
    table.write_text(f"utt1 ../cats/a.txt\n\nutt2 {tmp_path / 'b.txt'}\n")
    assert read_utt2catalog(table) == {"utt1": str(tmp_path / "data" / ".." / "cats" / "a.txt"),
                                       "utt2": str(tmp_path / "b.txt")}
    table.write_text("utt1 ../cats/a.txt\nutt2 ../cats/none.txt\n")
    with pytest.raises(UserError, match=rf"{table}:2: catalog .*none.txt of utterance utt2 does not exist"):
        read_utt2catalog(table)
    table.write_text("utt1\n")
    with pytest.raises(UserError, match=rf"{table}:1: expected"):
        read_utt2catalog(table)
    table.write_text("utt1 ../cats/a.txt\nutt1 ../cats/a.txt\n")
    with pytest.raises(UserError, match="listed twice"):
        read_utt2catalog(table)
    with pytest.raises(UserError, match="does not exist"):
        read_utt2catalog(tmp_path / "nothing")


def test_encode_in_vocabulary_phrases(bpe):
    path, sp = bpe
    out = encode_catalog([("CALL ANNA", None), ("TURN THE MUSIC DOWN", 2.0), "PLAY JAZZ"], path)
    assert out == [(sp.encode("CALL ANNA"), None), (sp.encode("TURN THE MUSIC DOWN"), 2.0),
                   (sp.encode("PLAY JAZZ"), None)]
    # the phrase's pieces are those the model sees inside a sentence
    sentence = sp.encode("PLEASE CALL ANNA NOW")
    ids = out[0][0]
    assert any(sentence[i:i + len(ids)] == ids for i in range(len(sentence)))
    assert sp.decode(ids) == "CALL ANNA"


def test_encode_words_outside_the_vocabulary(bpe, caplog):
    path, sp = bpe
    with caplog.at_level(logging.WARNING, logger="sltk"):
        out = encode_catalog([("MOZART", None), ("QUIXOTE", 1.0), ("XQV", None), ("VX FB", None),
                              ("ANNA XAVIER", 2.0)], sp, source="cat.txt")
    # MOZART: letters only, never seen as a word; Q and X of QUIXOTE are dropped
    assert [sp.decode(ids) for ids, _ in out] == ["MOZART", "UIOTE", "ANNA AIER"]
    assert [b for _, b in out] == [None, 1.0, 2.0]
    assert all(sp.unk_id() not in ids and 0 not in ids for ids, _ in out)
    assert "cat.txt: phrase 'XQV' has no BPE tokens left, skipped" in caplog.text
    assert "'VX FB' has no BPE tokens left" in caplog.text
    assert "'QUIXOTE' has characters the BPE model cannot spell; 2 of its 8 pieces dropped" in caplog.text


def test_encode_with_a_lang_directory(tmp_path, bpe):
    text = tmp_path / "text.txt"
    text.write_text("".join(s + "\n" for s in SENTENCES))
    lang = prepare_lang([text], tmp_path / "lang", vocab_size=30, lm_order=0, graphs=False)
    phrases = [("KITCHEN LIGHTS", None), ("ZEBRA QUOKKA", 1.5)]
    by_lang = encode_catalog(phrases, lang)
    assert by_lang == encode_catalog(phrases, tmp_path / "lang" / "bpe.model")
    assert by_lang[0][0] == lang.encode("KITCHEN LIGHTS")
    with pytest.raises(UserError, match="does not exist"):
        encode_catalog(phrases, tmp_path / "none.model")
    (tmp_path / "bad.model").write_text("not a model")
    with pytest.raises(UserError, match="not a sentencepiece model"):
        encode_catalog(phrases, tmp_path / "bad.model")


def test_load_context_graph(tmp_path, bpe):
    path, sp = bpe
    cat = tmp_path / "cat.txt"
    cat.write_text("call anna\nturn on the kitchen lights\t0.5\nqqq\n")
    g = load_context_graph(cat, path, boost=2.0)
    assert len(g) == 2
    anna = sp.encode("CALL ANNA")
    lights = sp.encode("TURN ON THE KITCHEN LIGHTS")
    assert g.score_sequence(anna) == 2.0 * len(anna)
    assert g.score_sequence(lights) == 0.5 * len(lights)
    assert g.score_sequence(sp.encode("CALL")) == 0.0  # a partial match is refunded
