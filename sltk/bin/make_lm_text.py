"""make-lm-text: language-model text drawn from the synthetic corpus's text generator."""

from __future__ import annotations

import logging
import random

import click

from sltk.utils.cli import program, summary

log = logging.getLogger("sltk")

HELP = """Write NUM_SENTENCES normalized sentences, one a line, to OUT for training an n-gram LM.

The sentences come from the generator make-synth-corpus draws its transcripts from: the
assistant templates with their slots filled from the catalogs (names, cities, music) and
the plain-sentence pool, at the same --plain-frac. This is the domain text an assistant's
LM is trained on, separate from the acoustic training transcripts (as LibriSpeech's LM
corpus is separate from its audio). Never in it: the invented (rare) words of a corpus,
the held-out words of --holdout-words, and any sentence of the --exclude texts (give the
dev and test sets: a test sentence never reaches the LM).
"""


@program(
    name="make-lm-text",
    help=HELP,
    examples=[
        "make-lm-text --num-sentences 100000 --exclude data/synth/dev --exclude data/synth/test data/lm/text.txt",
        "prepare-lang --bpe-model data/lang_bpe_100/bpe.model data/synth/train data/lm/text.txt data/lang_lm",
    ],
)
@click.argument("out")
@click.option("--num-sentences", type=click.IntRange(min=1), default=100000, show_default=True,
              help="Sentences drawn (duplicates kept: the LM counts them).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--plain-frac", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Fraction of plain sentences (make-synth-corpus's default).")
@click.option("--exclude", "excludes", multiple=True,
              help="Data directory or Kaldi text whose sentences are never written (repeatable).")
@click.option("--holdout-words", type=click.Path(dir_okay=False), default=None,
              help="Words/phrases (one a line) no sentence may contain (make-synth-corpus's option).")
def main(out, num_sentences, seed, plain_frac, excludes, holdout_words):
    """Write LM text to OUT (see HELP)."""
    from sltk.data.synth.corpus import read_word_list
    from sltk.data.synth.text import Lexicon, TextGenerator
    from sltk.decode.lang import read_transcripts
    from sltk.utils.io import atomic_open
    from sltk.utils.errors import UserError
    from sltk.utils.progress import progress

    excluded = set()
    for e in excludes:
        excluded.update(" ".join(words) for words in read_transcripts(e, kaldi_text=True))
    gen = TextGenerator(Lexicon.load(), plain_frac=plain_frac,
                        holdout=read_word_list(holdout_words) if holdout_words else ())
    rng = random.Random(f"{seed}-lm-text")
    skipped = written = 0
    with atomic_open(out, "w", encoding="utf-8") as f:
        for _ in progress(range(num_sentences), desc="make-lm-text", unit="sentences"):
            text = gen.generate(rng).text
            while text in excluded:
                skipped += 1
                if skipped > 100 * num_sentences:
                    raise UserError("almost every sentence drawn is in the --exclude texts")
                text = gen.generate(rng).text
            f.write(text + "\n")
            written += 1
    summary(written, num_sentences, 0, what="sentences",
            extra=f"{skipped} drawn sentences left out (in {len(excluded)} excluded); wrote {out}")


if __name__ == "__main__":
    main()
