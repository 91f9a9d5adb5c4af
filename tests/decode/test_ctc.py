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
