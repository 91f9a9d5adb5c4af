"""make-synth-corpus: synthesize a voice-assistant speech corpus (Kaldi data dirs + lhotse manifests)."""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

import click

from sltk.data.synth.corpus import SETS, SIZES, CorpusConfig, make_corpus, read_word_list
from sltk.data.synth.voices import SYNTHESIZERS
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

HELP = """Synthesize a voice-assistant speech corpus into OUT_DIR.

Writes OUT_DIR/wav/*.wav (16 kHz 16-bit), Kaldi data directories
OUT_DIR/{train,dev,test,test_heldout_synth} and lhotse manifests
OUT_DIR/manifests/<set>_{recordings,supervisions}.jsonl.gz. dev shares the train
speakers; test uses voices never heard in train/dev; test_heldout_synth uses a
synthesizer that no other set uses. The same --seed gives the same corpus byte for
byte; rerunning the same command resumes where it stopped.

\b
Sizes (--num-utts overrides the number of utterances):
  size   utterances  train spk  test spk  held-out-synth spk  rare words
""" + "\n".join(f"  {n:6s} {s.num_utts:10d}  {s.train_speakers:9d}  {s.test_speakers:8d}  "
                f"{s.heldout_speakers:18d}  {s.rare_words:10d}" for n, s in SIZES.items())


def _names(value: str, option: str, valid) -> Optional[List[str]]:
    if value in ("auto", ""):
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in valid:
            what = "synthesizer" if option == "--synths" else "set"
            raise UserError(f"unknown {what} '{n}' in {option} (known: {', '.join(valid)})")
    return names


def _range(value: str, option: str) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise UserError(f"{option} must be LOW,HIGH (two numbers), got '{value}'") from None
    return lo, hi


@program(
    name="make-synth-corpus",
    help=HELP,
    examples=[
        "make-synth-corpus --size tiny data/synth_tiny",
        "make-synth-corpus --size small --nj 8 --noise-prob 0.3 --reverb-prob 0.3 data/synth",
        "make-synth-corpus --size full --nj 16 --holdout-words conf/new_words.txt "
        "--holdout-sets test --heldout-synth flite data/synth_full",
    ],
)
@click.argument("out_dir")
@click.option("--size", type=click.Choice(list(SIZES)), default="small", help="Corpus size (table above).")
@click.option("--num-utts", type=int, default=None, help="Number of utterances (default: from --size).")
@click.option("--seed", type=int, default=0, help="Random seed: the same seed gives the same corpus, byte for byte.")
@click.option("--nj", type=click.IntRange(min=1), default=1, help="Parallel synthesis processes.")
@click.option("--synths", default="auto",
              help=f"Comma-separated synthesizers for train/dev/test ({', '.join(SYNTHESIZERS)}); "
                   "auto: every installed one except the held-out one.")
@click.option("--heldout-synth", default="festival",
              help="Synthesizer used only for the test_heldout_synth set; 'none' for no such set.")
@click.option("--holdout-words", type=click.Path(dir_okay=False), default=None,
              help="File of words/phrases (one per line) kept out of every set but --holdout-sets.")
@click.option("--holdout-sets", default="test,test_heldout_synth",
              help=f"Comma-separated sets where held-out words may appear ({', '.join(SETS)}).")
@click.option("--holdout-rate", type=float, default=0.2,
              help="Fraction of the utterances in --holdout-sets made to contain a held-out word.")
@click.option("--num-rare-words", type=int, default=None, help="Invented words to use (default: from --size).")
@click.option("--rare-rate", type=float, default=0.1, help="Probability that a name slot gets an invented word.")
@click.option("--plain-frac", type=float, default=0.2, help="Fraction of plain sentences (fortunes).")
@click.option("--dev-frac", type=float, default=0.1, help="Fraction of utterances for dev (train speakers).")
@click.option("--test-frac", type=float, default=0.1, help="Fraction of utterances for test (unseen voices).")
@click.option("--heldout-frac", type=float, default=0.1, help="Fraction of utterances for test_heldout_synth.")
@click.option("--test-voice-frac", type=float, default=0.25,
              help="Fraction of each synthesizer's voices kept for the test set only.")
@click.option("--noise-prob", type=float, default=0.0, help="Probability of adding coloured noise to an utterance.")
@click.option("--snr-range", default="5,30", help="SNR range in dB for the noise, LOW,HIGH.")
@click.option("--reverb-prob", type=float, default=0.0, help="Probability of room reverberation.")
@click.option("--tempo-range", default="1,1", help="Per-utterance tempo factor range, LOW,HIGH (1,1: off).")
@click.option("--pitch-range", type=float, default=0.0, help="Per-utterance pitch shift, +- semitones (0: off).")
@click.option("--utt-tag", default="", help="Tag (lower-case letters, digits) put into every utterance id, so that "
              "corpora made with the same seed (same voices) can be combined.")
def main(out_dir, size, num_utts, seed, nj, synths, heldout_synth, holdout_words, holdout_sets, holdout_rate,
         num_rare_words, rare_rate, plain_frac, dev_frac, test_frac, heldout_frac, test_voice_frac, noise_prob,
         snr_range, reverb_prob, tempo_range, pitch_range, utt_tag):
    """Synthesize a voice-assistant speech corpus into OUT_DIR (see HELP)."""
    held = None if heldout_synth in ("none", "") else heldout_synth
    if held is not None and held not in SYNTHESIZERS:
        raise UserError(f"unknown synthesizer '{held}' in --heldout-synth (known: {', '.join(SYNTHESIZERS)}, none)")
    cfg = CorpusConfig(
        size=size, num_utts=num_utts, seed=seed, synths=_names(synths, "--synths", SYNTHESIZERS),
        heldout_synth=held,
        holdout_words=read_word_list(holdout_words) if holdout_words else [],
        holdout_sets=_names(holdout_sets, "--holdout-sets", SETS) or [],
        holdout_rate=holdout_rate, num_rare_words=num_rare_words, rare_rate=rare_rate, plain_frac=plain_frac,
        dev_frac=dev_frac, test_frac=test_frac, heldout_frac=heldout_frac, test_voice_frac=test_voice_frac,
        noise_prob=noise_prob, reverb_prob=reverb_prob, snr_range=_range(snr_range, "--snr-range"),
        tempo_range=_range(tempo_range, "--tempo-range"), pitch_range=pitch_range, utt_tag=utt_tag,
    )
    res = make_corpus(cfg, out_dir, nj=nj)
    sets = ", ".join(f"{s} {n}" for s, n in res.sets.items())
    summary(res.done, res.total, res.failed,
            extra=f"{res.skipped} already present; sets: {sets}; {res.seconds:.1f} s; wrote {out_dir}")
    if res.failed > 0.05 * res.total:
        raise click.ClickException(f"{res.failed} of {res.total} utterances failed (see the warnings above)")


if __name__ == "__main__":
    main()
