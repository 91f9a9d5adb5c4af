"""prepare-lang: BPE tokens, lexicon, n-gram LM and the k2 graphs H, L, G, HLG of a lang directory."""

from __future__ import annotations

import logging

import click

from sltk.utils.cli import program, summary

log = logging.getLogger("sltk")


@program(
    name="prepare-lang",
    examples=[
        "prepare-lang data/train data/lang_bpe_500",
        "prepare-lang --vocab-size 200 --lm-order 2 data/train data/lm_text.txt data/lang_bpe_200",
        "prepare-lang --bpe-model exp/bpe.model --arpa data/lm/3gram.arpa data/train data/lang_test",
        "prepare-lang --bpe-model data/lang_bpe_100/bpe.model --open-vocab data/train data/lang_bpe_100_unk",
    ],
)
@click.argument("texts", nargs=-1, required=True)
@click.argument("lang_dir")
@click.option("--vocab-size", type=click.IntRange(min=4), default=500,
              help="BPE vocabulary size, <blk>=0, <sos/eos>=1, <unk>=2 included (fewer if the text is tiny).")
@click.option("--lm-order", type=click.IntRange(min=0), default=3,
              help="Order of the word n-gram LM (Kneser-Ney) for G and HLG; 0: no LM, G nor HLG.")
@click.option("--modified-ctc-topo", is_flag=True, help="Build H with k2's modified CTC topology.")
@click.option("--bpe-model", type=click.Path(dir_okay=False), default=None,
              help="Use this sentencepiece model (e.g. the one a model was trained with) "
                   "instead of training one.")
@click.option("--arpa", type=click.Path(dir_okay=False), default=None,
              help="Use this ARPA LM instead of training one (its order wins over --lm-order; "
                   "its words join the lexicon).")
@click.option("--kaldi-text/--plain-text", default=None,
              help="Whether text files start with an utterance id "
                   "[default: only files named 'text'; data dirs always].")
@click.option("--graphs/--no-graphs", default=None,
              help="Build the k2 graphs H, L, G, HLG [default: when k2 is installed].")
@click.option("--open-vocab", is_flag=True,
              help="Open vocabulary: the word <unk> spelled by any BPE piece sequence in L_disambig, HLG "
                   "and LG, and given LM probability where the words seen once occur; decoders then "
                   "output words outside the lexicon.")
@click.option("--unk-penalty", type=float, default=-6.0, show_default=True,
              help="--open-vocab: log score added per token of a spelled <unk> word (<= 0). At 0, a "
                   "CTC head's best tokens out-score the lexicon's spelling of known words; -6 was "
                   "best of 0/-2/-4/-6/-8 on asr1's dev set (RESULTS.md). It is HLG's; decode-transducer "
                   "compiles LG with its own --lg-unk-penalty.")
@click.option("--overwrite", is_flag=True, help="Redo everything even if the outputs exist.")
def main(texts, lang_dir, vocab_size, lm_order, modified_ctc_topo, bpe_model, arpa, kaldi_text, graphs,
         open_vocab, unk_penalty, overwrite):
    """Prepare a lang directory from training transcripts.

    TEXTS are data directories (their text), Kaldi text files, or plain text files with one
    sentence a line. LANG_DIR gets bpe.model, tokens.txt, words.txt, lexicon.txt, H.pt,
    L.pt, L_disambig.pt, lm_<N>gram.arpa, G_<N>gram.pt, HLG.pt and lang.json. Outputs that
    exist from the same settings are kept (rerunning resumes).
    """
    from sltk.decode.lang import prepare_lang

    lang = prepare_lang(texts, lang_dir, vocab_size=vocab_size, lm_order=lm_order,
                        modified_ctc_topo=modified_ctc_topo, bpe_model=bpe_model, arpa=arpa,
                        kaldi_text=kaldi_text, overwrite=overwrite, graphs=graphs, open_vocab=open_vocab,
                        unk_penalty=unk_penalty)
    n = lang.config.get("num_sentences", 0)
    extra = (f"{lang_dir}: {lang.vocab_size} tokens, {len(lang.lexicon)} words, "
             + (f"{lang.lm_order}-gram LM" if lang.lm_order > 0 else "no LM")
             + (", HLG" if lang.has_graph("HLG") else ", no HLG")
             + (", open vocabulary" if lang.open_vocab else ""))
    summary(n, n, 0, what="sentences", extra=extra)


if __name__ == "__main__":
    main()
