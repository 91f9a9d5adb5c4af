"""Decoding: lang directories (BPE tokens, lexicon, n-gram LM, k2 graphs), CTC decoding, scoring.

Modules: :mod:`~sltk.decode.lang` (``prepare_lang``, ``load_lang``), :mod:`~sltk.decode.ngram`
(n-gram LM training, ARPA io), :mod:`~sltk.decode.graphs` (k2: H, L, G, HLG),
:mod:`~sltk.decode.ctc` (greedy and k2 lattice CTC decoding), :mod:`~sltk.decode.scoring`
(WER). Only ``graphs`` and the k2 functions of ``ctc`` need k2; they import it themselves.
"""
