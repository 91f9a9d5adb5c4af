"""CTC decoding: greedy and k2 lattice search (H and HLG) on hand-made posteriors."""

import math

import pytest
import torch

from sltk.decode.ctc import ctc_greedy, ctc_k2_decode, hyps_to_text

# Three frames over V = 3 (0 = blank, 1 = a, 2 = b), every frame P = (0.5, 0.4, 0.1).
# Frame-wise argmax is blank, blank, blank: greedy output "" and the best single
# alignment has probability 0.5^3 = 0.125. Summed over its alignments, "a" is more likely:
#   one a-frame:   3 * 0.4 * 0.5^2   = 0.300
#   two a-frames:  2 * 0.4^2 * 0.5   = 0.160  (aa- and -aa; a-a would be "a a")
#   three:         0.4^3             = 0.064
#   P("a") = 0.524 > P("") = 0.125; its best alignment has probability 0.4 * 0.5^2 = 0.1
P_FLAT = torch.tensor([[[0.5, 0.4, 0.1]] * 3]).log()


def test_greedy_hand_computed():
    lp = torch.tensor([
        [[0.5, 0.4, 0.1]] * 3,                                 # blank blank blank -> []
        [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],   # a a b -> [1, 2]
        [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]],   # a - a -> [1, 1]
        [[0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],   # b a b, only 2 frames -> [2, 1]
    ]).log()
    assert ctc_greedy(lp, torch.tensor([3, 3, 3, 2])) == [[], [1, 2], [1, 1], [2, 1]]
    assert ctc_greedy(lp, [0, 1, 3, 3]) == [[], [1], [1, 1], [2, 1, 2]]


def test_greedy_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ctc_greedy(torch.zeros(3, 4), [3])
    with pytest.raises(ValueError):
        ctc_greedy(torch.zeros(2, 3, 4), [3])


@pytest.fixture(scope="module")
def H():
    pytest.importorskip("k2")
    from sltk.decode.graphs import build_ctc_topo

    return build_ctc_topo(2)


def test_k2_one_best_with_H_is_the_best_alignment(H):
    hyps, scores = ctc_k2_decode(P_FLAT, [3], H, method="1best", return_scores=True)
    assert hyps == [[]] == ctc_greedy(P_FLAT, [3])
    assert scores[0].item() == pytest.approx(3 * math.log(0.5), abs=1e-5)


def test_k2_nbest_sums_alignments_and_finds_the_better_sequence(H):
    # The most probable label sequence (summed over alignments) is "a", not the
    # collapsed frame-wise argmax "".
    hyps, scores = ctc_k2_decode(P_FLAT, [3], H, method="nbest", num_paths=200, nbest_scale=1.0,
                                 return_scores=True)
    assert hyps == [[1]]
    assert scores[0].item() == pytest.approx(math.log(0.524), abs=1e-5)
    # With the best alignment only (tropical rescoring, icefall's choice) "" wins again.
    hyps, scores = ctc_k2_decode(P_FLAT, [3], H, method="nbest", num_paths=200, log_semiring=False,
                                 return_scores=True)
    assert hyps == [[]]
    assert scores[0].item() == pytest.approx(3 * math.log(0.5), abs=1e-5)


def test_nbest_lists_hand_computed(H):
    # P_FLAT's candidates with their probabilities summed over alignments (hand-computed at the
    # top of this file, and: "b" 3*0.1*0.25 + 2*0.01*0.5 + 0.001 = 0.086, "a a" only a-a = 0.08,
    # "a b" ab- a-b -ab aab abb = 0.02*3 + 0.016 + 0.004 = 0.08), best first; nbest() picks the first
    from sltk.decode.ctc import get_lattice, nbest, nbest_lists

    want = {(): 0.125, (1,): 0.524, (2,): 0.086, (1, 1): 0.08, (1, 2): 0.08}
    lattice, index = get_lattice(P_FLAT, [3], H)
    (lst,) = nbest_lists(lattice, num_paths=300, nbest_scale=1.0)
    assert index == [0] and lst[0][0] == [1]
    assert [sc for _, sc in lst] == sorted((sc for _, sc in lst), reverse=True)
    assert len({tuple(c) for c, _ in lst}) == len(lst)
    seen = {tuple(c): sc for c, sc in lst}
    assert len(set(seen) & set(want)) >= 4  # 300 samples find the likely ones
    for c, p in want.items():
        if c in seen:
            assert seen[c] == pytest.approx(math.log(p), abs=1e-5), c
    hyps, scores = nbest(lattice, num_paths=300, nbest_scale=1.0)
    assert hyps[0] == lst[0][0] and scores[0].item() == pytest.approx(lst[0][1], abs=1e-5)
    # posterior pruning first: the unlikely arcs go, "a" stays best, its score can only drop (fewer
    # alignments) and fewer candidates remain
    (pruned,) = nbest_lists(lattice, num_paths=300, nbest_scale=1.0, prune_prob=0.1)
    assert pruned[0][0] == [1] and pruned[0][1] <= lst[0][1] + 1e-6 and len(pruned) < len(lst)
    assert nbest(lattice, num_paths=300, nbest_scale=1.0, prune_prob=0.1)[0] == [[1]]


def test_k2_batch_lengths_and_empty_sequences(H):
    lp = torch.tensor([
        [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]],
        [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]],
        [[0.1, 0.1, 0.8]] * 4,
    ]).log()
    lens = torch.tensor([4, 3, 0])
    for method in ("1best", "nbest"):
        hyps, scores = ctc_k2_decode(lp, lens, H, method=method, return_scores=True)
        assert hyps == [[1, 2], [2, 1], []] == ctc_greedy(lp, lens)
        assert scores[2].item() == float("-inf")
    # best alignment of sequence 0: a - b - = 0.8 * 0.8 * 0.8 * 0.9
    _, scores = ctc_k2_decode(lp, lens, H, return_scores=True)
    assert scores[0].item() == pytest.approx(math.log(0.8 ** 3 * 0.9), abs=1e-5)
    with pytest.raises(ValueError):
        ctc_k2_decode(lp, [5, 3, 3], H)
    ctc_k2_decode(lp, [5, 3, 3], H, subsampling_factor=4)  # rounding slack is allowed


# ----------------------------------------------------------------------------- HLG
CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the rat",
          "the rat ran", "a dog sat", "the cat ran on the log"]


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    pytest.importorskip("k2")
    from sltk.decode.lang import prepare_lang

    d = tmp_path_factory.mktemp("ctc_lang")
    (d / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    return prepare_lang([d / "corpus.txt"], d / "lang", vocab_size=60, lm_order=2)


def peaked(lang, token_seqs, p=0.9, T=None):
    """Posteriors that spell each token sequence as 'tok blank tok blank ...'."""
    V = lang.vocab_size
    frames = [[x for t in seq for x in (t, 0)] for seq in token_seqs]
    T = T or max(len(f) for f in frames)
    lp = torch.full((len(frames), T, V), (1 - p) / (V - 1))
    for i, f in enumerate(frames):
        for t in range(T):
            lp[i, t, f[t] if t < len(f) else 0] = p
    return lp.log(), [len(f) for f in frames]


def test_hlg_maps_tokens_to_words(lang):
    HLG = lang.graph("HLG")
    sents = ["the cat sat on the mat", "a dog sat"]
    lp, lens = peaked(lang, [lang.encode(s) for s in sents])
    for method in ("1best", "nbest"):
        hyps = ctc_k2_decode(lp, lens, HLG, method=method)
        assert hyps_to_text(hyps, lang, "words") == sents
        assert hyps[1] == [lang.word2id[w] for w in "a dog sat".split()]
    # with H the same posteriors give the tokens back
    hyps = ctc_k2_decode(lp, lens, lang.graph("H"))
    assert hyps_to_text(hyps, lang, "tokens") == sents


def test_hlg_corrects_a_token_the_lexicon_does_not_allow(lang):
    # On one frame a wrong token wins narrowly over the right one: greedy spells a non-word,
    # the lexicon-and-LM constrained best path recovers the words.
    sent = "the cat sat"
    toks = lang.encode(sent)
    lp, lens = peaked(lang, [toks], p=0.5)
    wrong = next(t for t in range(3, lang.vocab_size)
                 if t not in toks and not lang.sp.id_to_piece(t).startswith("\u2581"))
    probs = lp.exp()
    probs[0, 2, wrong] = 0.45  # frame 2 spells the second token "cat": now the wrong one wins
    probs[0, 2, toks[1]] = 0.40
    probs[0, 2] /= probs[0, 2].sum()
    lp = probs.log()
    greedy = ctc_greedy(lp, lens)[0]
    assert greedy != toks and wrong in greedy
    hyps = ctc_k2_decode(lp, lens, lang.graph("HLG"))
    assert hyps_to_text(hyps, lang, "words") == [sent]


def test_nbest_agrees_with_one_best_on_peaked_posteriors(lang):
    sents = CORPUS[:4]
    lp, lens = peaked(lang, [lang.encode(s) for s in sents], p=0.95)
    for graph in (lang.graph("H"), lang.graph("HLG")):
        one = ctc_k2_decode(lp, lens, graph, method="1best")
        nb = ctc_k2_decode(lp, lens, graph, method="nbest", num_paths=20)
        assert one == nb


def test_hyps_to_text_drops_blank_and_disambig(lang):
    ids = [lang.word2id["the"], 0, lang.word2id["#0"], lang.word2id["cat"]]
    assert lang.words_to_text(ids) == "the cat"
    assert lang.tokens_to_text([0] + lang.encode("the cat") + [0]) == "the cat"
    with pytest.raises(ValueError):
        hyps_to_text([[1]], lang, "letters")


def test_per_sequence_graphs_and_modified_topology(H):
    import k2

    from sltk.decode.graphs import build_ctc_topo

    lp = torch.tensor([
        [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]],
        [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]],
    ]).log()
    # sequence 0 may only say "b": a graph that accepts blank* b+ blank*
    only_b = k2.arc_sort(k2.Fsa.from_str("0 0 0 0 0\n0 1 2 2 0\n1 1 2 0 0\n1 2 0 0 0\n1 3 -1 -1 0\n"
                                         "2 2 0 0 0\n2 3 -1 -1 0\n3", acceptor=False))
    graphs = k2.create_fsa_vec([only_b, H])
    assert ctc_k2_decode(lp, [3, 3], graphs) == [[2], [2, 1]]
    assert ctc_k2_decode(lp, [0, 3], graphs) == [[], [2, 1]]
    assert build_ctc_topo(50, modified=True).num_arcs < build_ctc_topo(50).num_arcs / 10  # O(V), not O(V^2)
    Hm = build_ctc_topo(2, modified=True)
    assert ctc_k2_decode(lp, [3, 3], Hm) == [[1, 2], [2, 1]]


# ----------------------------------------------------------------------------- open vocabulary
@pytest.fixture(scope="module")
def open_lang(lang, tmp_path_factory):
    from sltk.decode.lang import prepare_lang

    d = tmp_path_factory.mktemp("ctc_open_lang")
    (d / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    # peaked() gives a wrong token ln(0.9 / (0.1 / 58)) = 6.3 less than the right one per frame:
    # a spelling penalty of 2 per token lets clear acoustics spell a new word (-50 does not, below)
    return prepare_lang([d / "corpus.txt"], d / "lang", bpe_model=lang.dir / "bpe.model", lm_order=2,
                        open_vocab=True, unk_penalty=-2.0)


def test_open_vocab_tables_and_lm(lang, open_lang):
    from sltk.decode.ngram import read_arpa

    assert open_lang.open_vocab and not lang.open_vocab
    # same tokens and lexicon word ids; <unk> just before #0; #unk after the disambiguation tokens
    assert open_lang.vocab_size == lang.vocab_size
    assert all(open_lang.word2id[w] == i for w, i in lang.word2id.items() if i < lang.word2id["#0"])
    assert open_lang.word2id["<unk>"] == open_lang.word2id["#0"] - 1 == lang.word2id["#0"]
    assert open_lang.token2id["#unk"] == len(open_lang.token2id) - 1
    assert "<unk>" not in open_lang.lexicon
    # words seen once in CORPUS: "mat", "ate". The LM saw "the cat sat on the <unk>" and
    # "a cat <unk> the rat", so <unk> follows "the" and "cat" with a bigram, not by backing off.
    lm = read_arpa(open_lang.dir / "lm_2gram.arpa")
    assert ("the", "<unk>") in lm.probs[2] and ("cat", "<unk>") in lm.probs[2]
    assert ("dog", "<unk>") not in lm.probs[2]
    assert ("mat",) in lm.probs[1]  # the singletons keep their own probability
    spell = open_lang.unk_spelling()
    pieces = [open_lang.sp.id_to_piece(i) for i in range(open_lang.vocab_size)]
    assert sorted(spell.starts + spell.conts) == list(range(3, open_lang.vocab_size))
    assert all(pieces[t].startswith("\u2581") for t in spell.starts)
    assert not any(pieces[t].startswith("\u2581") for t in spell.conts)


def test_open_vocab_hlg_spells_a_new_word(lang, open_lang):
    # "tag" and "rog" are in no transcript; the BPE pieces spell them. The closed HLG can only
    # substitute a known word; the open one spells them from the tokens, and keeps the known
    # sentences as they are.
    sents = ["the cat sat on the mat", "a dog sat", "the cat sat on the tag", "the rog ran"]
    assert "tag" not in lang.word2id and "rog" not in lang.word2id
    lp, lens = peaked(lang, [lang.encode(s) for s in sents])
    closed = hyps_to_text(ctc_k2_decode(lp, lens, lang.graph("HLG")), lang, "words")
    assert closed[:2] == sents[:2] and closed[2] != sents[2] and closed[3] != sents[3]
    HLG = open_lang.graph("HLG")
    for method in ("1best", "nbest"):
        toks = ctc_k2_decode(lp, lens, HLG, method=method, output="tokens")
        assert hyps_to_text(toks, open_lang, "tokens") == sents, method
    words = hyps_to_text(ctc_k2_decode(lp, lens, HLG), open_lang, "words")
    assert words == sents[:2] + ["the cat sat on the <unk>", "the <unk> ran"]


def test_open_vocab_lm_prefers_a_known_word_on_ambiguous_audio(lang, open_lang):
    # A frame that is half "▁mat", half the spelling of "▁m at" (same letters): the lexicon path
    # with the LM's "mat" should win over the spelled <unk>, so the text is the same either way;
    # with a large penalty per spelled piece, even a clear new word is not spelled.
    from sltk.decode.lang import prepare_lang

    lp, lens = peaked(lang, [lang.encode("the cat sat on the mat")])
    toks = ctc_k2_decode(lp, lens, open_lang.graph("HLG"), output="tokens")
    words = ctc_k2_decode(lp, lens, open_lang.graph("HLG"))
    assert hyps_to_text(words, open_lang, "words") == ["the cat sat on the mat"]
    assert hyps_to_text(toks, open_lang, "tokens") == ["the cat sat on the mat"]
    d = open_lang.dir.parent / "penalized"
    strict = prepare_lang([open_lang.dir.parent / "corpus.txt"], d, bpe_model=lang.dir / "bpe.model",
                          lm_order=2, open_vocab=True, unk_penalty=-50.0)
    lp, lens = peaked(lang, [lang.encode("the cat sat on the tag")])
    out = hyps_to_text(ctc_k2_decode(lp, lens, strict.graph("HLG"), output="tokens"), strict, "tokens")
    assert out != ["the cat sat on the tag"] and "<unk>" not in out[0]


def test_expand_unk_hand_made():
    # LG: 0 -#unk(9)/<unk>(5), score -1-> 1 -(-1)-> 2 (final). Tokens: starts {3, 4}, conts {6}.
    # The expansion accepts exactly a start token then any number of 6s, each piece adding the
    # penalty -0.5 and the first carrying the arc's score and word.
    import k2

    from sltk.decode.graphs import UnkSpelling, expand_unk, fsa_from_arcs

    LG = fsa_from_arcs([(0, 1, 9, -1.0), (1, 2, -1, 0.0)], aux_labels=[5, -1])
    LG.lm_scores = torch.tensor([-1.0, 0.0])
    out = expand_unk(LG, UnkSpelling(9, [3, 4], [6], penalty=-0.5))

    def best(seq):
        lin = k2.linear_fsa(seq)
        inter = k2.connect(k2.intersect(k2.arc_sort(out), lin, treat_epsilons_specially=False))
        if inter.num_arcs == 0:
            return None
        path = k2.shortest_path(k2.create_fsa_vec([inter]), use_double_scores=True)
        words = [w for w in path.aux_labels.values.tolist() if w > 0]
        return words, float(path.get_tot_scores(use_double_scores=True, log_semiring=False)[0])

    assert best([3]) == ([5], pytest.approx(-1.5))
    assert best([4, 6, 6]) == ([5], pytest.approx(-2.5))
    assert best([6]) is None and best([3, 3]) is None and best([]) is None
    assert (out.lm_scores.sum() - (-1.0) * 4) == pytest.approx(0.0)  # both starts, to 1 or to the loop


def test_g_with_a_short_history_after_unk():
    # Open-vocabulary G: after <unk> the history is <unk> alone, so that every spelled word
    # returns to one state. The score of "<s> a <unk> b </s>" is then
    #   ln P(a|<s>) + ln P(<unk>|<s> a) + ln P(b|<unk>) + ln P(</s>|<unk> b),
    # the trigram P(b|a <unk>) replaced by the bigram; without the option it is the trigram.
    from sltk.decode.graphs import arpa_to_fsa, sentence_score
    from sltk.decode.ngram import train_kneser_ney

    sents = [s.split() for s in ["a <unk> b", "a <unk> c", "c <unk> c", "b <unk> b a", "a b c"]]
    lm = train_kneser_ney(sents, order=3)
    words = ["a", "b", "c", "<unk>", "#0"]
    w2i = {w: i + 1 for i, w in enumerate(words)}
    ids = [w2i[w] for w in ["a", "<unk>", "b"]]
    ln = math.log(10)

    def lp(w, h):
        return lm.logprob(w, h) * ln

    full, _ = arpa_to_fsa(lm, w2i, w2i["#0"])
    short, stats = arpa_to_fsa(lm, w2i, w2i["#0"], short_history="<unk>")
    assert stats["short_history_ngrams"] > 0
    trigram = lp("a", ("<s>",)) + lp("<unk>", ("<s>", "a")) + lp("b", ("a", "<unk>")) + lp("</s>", ("<unk>", "b"))
    bigram = lp("a", ("<s>",)) + lp("<unk>", ("<s>", "a")) + lp("b", ("<unk>",)) + lp("</s>", ("<unk>", "b"))
    assert abs(trigram - bigram) > 0.05
    assert sentence_score(full, ids, w2i["#0"]) == pytest.approx(trigram, abs=1e-4)
    assert sentence_score(short, ids, w2i["#0"]) == pytest.approx(bigram, abs=1e-4)
