#!/usr/bin/env python3
"""How much of a WER comes from words (and sentences) the model saw in training.

For a decoding directory (ref.txt, hyp.txt) and the training transcripts: the share of
reference words that are out of the training vocabulary (OOV), the WER on the utterances whose
reference is entirely in-vocabulary, how many of the errors are OOV reference words that
were not recognized, and the WER on the utterances whose sentence is not one of the training
transcripts (the short commands recur, so a larger training set contains more of the test
sentences: this WER compares models trained on different amounts of text fairly). A word-level
LM (fast_beam_LG, HLG) can never output an OOV word unless its lang is open-vocabulary (the
_unk methods); the other methods can only spell one from subwords."""

import argparse
import json
from pathlib import Path

from sltk.decode.scoring import EPS, align, compute_wer
from sltk.utils.io import read_table


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-text", required=True, help="Kaldi text file of the training set")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("decode_dirs", nargs="+", help="directories with ref.txt and hyp.txt")
    a = ap.parse_args()
    train = [t for _, t in read_table(a.train_text)]
    vocab = {w for t in train for w in t.split()}
    sentences = {" ".join(t.split()) for t in train}
    out = {}
    for d in map(Path, a.decode_dirs):
        refs = {k: v for k, v in read_table(d / "ref.txt")}
        hyps = {k: v for k, v in read_table(d / "hyp.txt")}
        n_words = n_oov = oov_missed = 0
        iv_refs = {}
        for k, r in refs.items():
            words = r.split()
            n_words += len(words)
            oov = [w for w in words if w not in vocab]
            n_oov += len(oov)
            if not oov:
                iv_refs[k] = r
            for rw, hw in align(words, hyps.get(k, "").split()):
                if rw != EPS and rw not in vocab and rw != hw:
                    oov_missed += 1
        all_res = compute_wer(refs, hyps)
        new_refs = {k: r for k, r in refs.items() if " ".join(r.split()) not in sentences}
        iv_res, new_res = (compute_wer(sub, {k: hyps.get(k, "") for k in sub}) for sub in (iv_refs, new_refs))
        row = {"wer": round(all_res.total.wer, 2), "oov_rate": round(100 * n_oov / max(1, n_words), 2),
               "oov_words_missed": oov_missed, "oov_words": n_oov, "errors": all_res.total.errors,
               "iv_utterances": len(iv_refs), "utterances": len(refs), "wer_iv_utterances": round(iv_res.total.wer, 2),
               "unseen_sentence_utterances": len(new_refs), "wer_unseen_sentences": round(new_res.total.wer, 2)}
        out[str(d)] = row
        print(f"{d}: WER {row['wer']:.2f}% | OOV rate {row['oov_rate']:.2f}% of reference words, "
              f"{oov_missed} of {n_oov} OOV words misrecognized ({100 * oov_missed / max(1, row['errors']):.1f}% "
              f"of the {row['errors']} errors) | WER on the {len(iv_refs)}/{len(refs)} all-in-vocabulary "
              f"utterances {row['wer_iv_utterances']:.2f}% | WER on the {len(new_refs)}/{len(refs)} utterances whose "
              f"sentence is not a training transcript {row['wer_unseen_sentences']:.2f}%")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
