"""synth-prosody: expressive TTS with prosody embeddings at utterance, word or phoneme level
(a FastSpeech2-like model, a VAE reference encoder, a text-side predictor); see sltk.tts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from sltk.utils.cli import program_group, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path, read_table

log = logging.getLogger("sltk")

GRANS = ["none", "utterance", "word", "phoneme"]


@program_group(name="synth-prosody", examples=[
    "synth-prosody make-data --num-utts 1000 data/train",
    "synth-prosody align data/train exp/align_train",
    "synth-prosody align --aligner exp/align_train/aligner.json data/test exp/align_test",
    "synth-prosody train --granularity word exp/align_train exp/word",
    "synth-prosody synth exp/word/final.pt 'is the *red* lamp in the kitchen?' -o out.wav",
    "synth-prosody eval exp/word/final.pt exp/align_test exp/word/eval",
])
def main(verbose):
    """Expressive TTS with prosody embeddings at utterance, word or phoneme granularity."""


@main.command(name="make-data", examples=["synth-prosody make-data --num-utts 40 data/tiny",
                                          "synth-prosody make-data --num-utts 200 --seed 7 --utt-tag te data/test"])
@click.argument("out_dir")
@click.option("--num-utts", type=click.IntRange(min=1), default=200, help="Utterances to synthesize.")
@click.option("--seed", type=int, default=0, help="Random seed (the content depends only on it and the options).")
@click.option("--voices", default="en-us+m3", help="Comma-separated espeak-ng voices (voice+variant).")
@click.option("--focus-frac", type=click.FloatRange(0, 1), default=0.85, help="Share of utterances with a focus word.")
@click.option("--mark-frac", type=click.FloatRange(0, 1), default=0.5,
              help="Share of focus words marked in the text (*word*).")
@click.option("--question-frac", type=click.FloatRange(0, 1), default=0.35, help="Share of questions.")
@click.option("--utt-tag", default="", help="A tag in every utterance id (e.g. tr, te).")
@click.option("--nj", type=click.IntRange(min=1), default=1, help="Parallel processes.")
def make_data(out_dir, num_utts, seed, voices, focus_frac, mark_frac, question_frac, utt_tag, nj):
    """Synthesize the espeak-ng SSML prosody corpus into the data directory OUT_DIR."""
    from sltk.tts.data import ProsodyConfig, make_corpus

    if not utt_tag.isalnum() and utt_tag:
        raise UserError(f"--utt-tag {utt_tag!r} must be letters and digits")
    vs = tuple(v.strip() for v in voices.split(",") if v.strip())
    if not vs:
        raise UserError("--voices is empty")
    cfg = ProsodyConfig(num_utts=num_utts, seed=seed, voices=vs, focus_frac=focus_frac, mark_frac=mark_frac,
                        question_frac=question_frac, utt_tag=utt_tag)
    done, total, failed = make_corpus(cfg, out_dir, nj)
    summary(done, total, failed, extra=f"data directory {out_dir}")
    if done == 0:
        raise UserError(f"no utterance could be synthesized into {out_dir} (see the warnings above)")


@main.command(examples=["synth-prosody align data/train exp/align_train",
                        "synth-prosody align --aligner exp/align_train/aligner.json data/test exp/align_test"])
@click.argument("data_dir")
@click.argument("out_dir")
@click.option("--aligner", default=None, help="Use this trained aligner (aligner.json) instead of training one.")
@click.option("--iterations", type=click.IntRange(min=1), default=8, help="Viterbi re-estimation rounds.")
@click.option("--voice", default="en-us", help="espeak-ng voice of the phonemizer.")
def align(data_dir, out_dir, aligner, iterations, voice):
    """Phonemize DATA_DIR's text, compute log-mels and phoneme durations into OUT_DIR."""
    from sltk.tts.dataset import align_data_dir

    done, total = align_data_dir(data_dir, out_dir, aligner, iterations, voice)
    summary(done, total, total - done, extra=f"alignments in {out_dir}")


@main.command(examples=["synth-prosody train --granularity word --epochs 30 exp/align_train exp/word",
                        "synth-prosody train --granularity none exp/align_train exp/none"])
@click.argument("align_dir")
@click.argument("exp_dir")
@click.option("--granularity", type=click.Choice(GRANS), default="word", help="Prosody embedding granularity.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Utterances per batch.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3,
              help="Peak Adam learning rate (cosine decay).")
@click.option("--kl-weight", type=click.FloatRange(min=0), default=0.001,
              help="Weight of the VAE's KL term (annealed from 0 over the first 30% of epochs).")
@click.option("--dim", type=click.IntRange(min=8), default=128, help="Model width.")
@click.option("--z-dim", type=click.IntRange(min=1), default=8, help="Prosody embedding size.")
@click.option("--seed", type=int, default=0, help="Random seed.")
@click.option("--max-utts", type=click.IntRange(min=0), default=0, help="Use only the first N utterances (0: all).")
@click.option("--predictor-epochs", type=click.IntRange(min=0), default=0,
              help="After training: refit the text-side predictor alone, the autoencoder frozen, for N epochs "
                   "(10% of the utterances held out; the best epoch kept). 0: only the joint training.")
def train(align_dir, exp_dir, granularity, epochs, batch_size, lr, kl_weight, dim, z_dim, seed, max_utts,
          predictor_epochs):
    """Train the acoustic model on ALIGN_DIR; checkpoints in EXP_DIR (resumes from the last epoch)."""
    from sltk.tts.train import TrainConfig, train as run

    cfg = TrainConfig(granularity=granularity, epochs=epochs, batch_size=batch_size, lr=lr, kl_weight=kl_weight,
                      dim=dim, z_dim=z_dim, seed=seed, max_utts=max_utts, predictor_epochs=predictor_epochs)
    path = run(align_dir, exp_dir, cfg)
    info = json.loads((Path(exp_dir) / "model.json").read_text())
    summary(epochs, epochs, 0, what="epochs", extra=f"{info['parameters']} parameters; model {path}")


def _resolve_model(model: str, granularity):
    from sltk.tts.train import load_model

    p = Path(model)
    if p.is_dir():
        if not granularity:
            raise UserError(f"{p} is a directory: give --granularity to pick {p}/<granularity>/final.pt")
        p = p / granularity / "final.pt"
    m, ck = load_model(p)
    return m, ck, p


@main.command(examples=["synth-prosody synth exp/word/final.pt 'turn *off* the kitchen light.' -o out.wav",
                        "synth-prosody synth --granularity word exp 'is it raining?' -o q.wav",
                        "synth-prosody synth --reference rec.wav exp/word/final.pt 'the red lamp.' -o copy.wav",
                        "synth-prosody synth --text-file data/test/text exp/word/final.pt -o out_dir"])
@click.argument("model")
@click.argument("text", required=False)
@click.option("-o", "--output", required=True, help="Output wav (one text) or directory (--text-file).")
@click.option("--text-file", default=None, help="A Kaldi text file (utt text per line): one wav per line in OUTPUT/.")
@click.option("--granularity", type=click.Choice(GRANS), default=None,
              help="Pick MODEL/<granularity>/final.pt when MODEL is a directory; 'none' with an embedding "
                   "model synthesizes with the prior mean (no prosody embedding).")
@click.option("--reference", default=None, help="Copy the prosody of this recording (of the same text).")
@click.option("--predict/--no-predict", default=True, help="Embeddings from the text predictor (else the prior mean).")
@click.option("--speed", type=click.FloatRange(0.25, 4.0), default=1.0,
              help="Speaking rate factor (durations / speed).")
@click.option("--vocoder", default="griffin-lim", help="Vocoder (griffin-lim).")
def synth(model, text, output, text_file, granularity, reference, predict, speed, vocoder):
    """Synthesize TEXT (or every line of --text-file) with MODEL (a checkpoint or an experiment dir)."""
    import soundfile as sf

    from sltk.tts.features import MelConfig
    from sltk.tts.phonemize import phonemize
    from sltk.tts.synthesize import synthesize_text
    from sltk.tts.vocoder import get_vocoder

    if (text is None) == (text_file is None):
        raise UserError("give exactly one of TEXT and --text-file")
    if reference and text_file:
        raise UserError("--reference is for one TEXT (a recording of it), not for --text-file")
    if reference and not Path(reference).is_file():
        raise UserError(f"reference recording {reference} does not exist")
    m, ck, path = _resolve_model(model, granularity)
    g = m.cfg.granularity
    if granularity and granularity not in (g, "none"):
        raise UserError(f"{path} was trained at granularity {g!r}, not {granularity!r}")
    if granularity == "none" or g == "none":
        embedding = "zero"
        if reference:
            raise UserError("--reference needs a model with prosody embeddings (granularity none has none)")
    elif reference:
        embedding = "reference"
    else:
        embedding = "predict" if predict else "zero"
    if text_file:
        if not Path(text_file).is_file():
            raise UserError(f"text file {text_file} does not exist")
        items = list(read_table(text_file))
        if not items:
            raise UserError(f"text file {text_file} is empty")
    else:
        items = [("", text)]
    for utt, t in items:  # every text is checked before anything is written
        try:
            phonemize(t, ck.get("voice", "en-us"))
        except UserError as e:
            raise UserError(f"{text_file}: {utt}: {e}" if text_file else str(e)) from None
    voc = get_vocoder(vocoder, MelConfig(**ck["mel"]))
    out = Path(output)
    if text_file:
        if out.exists() and not out.is_dir():
            raise UserError(f"-o {out} must be a directory with --text-file")
        out.mkdir(parents=True, exist_ok=True)
    elif out.is_dir():
        raise UserError(f"-o {out} is a directory; give a .wav file name")
    sr = ck["mel"]["sample_rate"]
    seconds = 0.0
    for utt, t in items:
        y = synthesize_text(m, ck, t, voc, embedding, reference, speed)
        dest = out / f"{utt}.wav" if text_file else out
        with atomic_path(dest) as tmp:
            sf.write(str(tmp), y, sr, subtype="PCM_16", format="WAV")
        seconds += len(y) / sr
    summary(len(items), len(items), extra=f"{seconds:.1f} s of audio, granularity {g}, embedding {embedding}, "
                                          f"written to {out}")


@main.command(name="eval", examples=["synth-prosody eval exp/word/final.pt exp/align_test exp/word/eval",
                                     "synth-prosody eval --max-utts 20 exp/none/final.pt exp/align_test exp/none/eval",
                                     "synth-prosody eval --asr-model asr/final.pt --asr-lang data/lang_bpe_100 "
                                     "--asr-features data/fbank/train/features.json "
                                     "exp/word/final.pt exp/align_test ev"])
@click.argument("model")
@click.argument("align_dir")
@click.argument("out_dir")
@click.option("--max-utts", type=click.IntRange(min=0), default=0,
              help="Evaluate only the first N utterances (0: all).")
@click.option("--num-plots", type=click.IntRange(min=0), default=3, help="Utterances with mel/F0 contour plots.")
@click.option("--num-wavs", type=click.IntRange(min=0), default=3, help="Utterances whose wavs are kept.")
@click.option("--gl-iters", type=click.IntRange(min=1), default=32, help="Griffin-Lim iterations.")
@click.option("--asr-model", default=None, help="An sltk transducer checkpoint: adds the CER of its transcripts.")
@click.option("--asr-lang", default=None, help="The ASR model's lang directory (with --asr-model).")
@click.option("--asr-features", default=None, help="The features.json of the ASR model's training features.")
def eval_(model, align_dir, out_dir, max_utts, num_plots, num_wavs, gl_iters, asr_model, asr_lang, asr_features):
    """MCD, log-F0 RMSE/correlation, duration error (and ASR CER) of MODEL on ALIGN_DIR (oracle and
    predicted embeddings), contour plots and sample wavs; metrics.json in OUT_DIR."""
    from sltk.tts.dataset import read_align_dir
    from sltk.tts.evaluate import evaluate
    from sltk.tts.features import MelConfig
    from sltk.tts.train import load_model
    from sltk.tts.vocoder import GriffinLim

    judge = None
    if asr_model or asr_lang or asr_features:
        if not (asr_model and asr_lang and asr_features):
            raise UserError("give all of --asr-model, --asr-lang and --asr-features (or none)")
        from sltk.tts.evaluate import AsrJudge

        judge = AsrJudge(asr_model, asr_lang, asr_features)
    m, ck = load_model(model)
    utts = read_align_dir(align_dir, max_utts)
    sources = ["none"] if m.cfg.granularity == "none" else ["oracle", "predicted"]
    res = evaluate(m, ck, utts, GriffinLim(MelConfig(**ck["mel"]), n_iter=gl_iters), out_dir, sources,
                   num_plots, num_wavs, judge)
    res = {"granularity": m.cfg.granularity, "model": str(model), "align_dir": str(align_dir), **res}
    with atomic_open(Path(out_dir) / "metrics.json", "w") as f:
        json.dump(res, f, indent=1)
    for s in [*sources, "copy"]:
        r = res[s]
        click.echo(f"{m.cfg.granularity} {s}: " + " ".join(f"{k} {r[k]:.3f}" for k in
                                                          ("mcd_db", "f0_rmse_cents", "f0_corr", "dur_mae_ms",
                                                           "cer_pct") if r[k] == r[k]))
    summary(len(utts), len(utts), extra=f"metrics in {Path(out_dir) / 'metrics.json'}")


@main.command(examples=["synth-prosody report exp/tiny exp/tiny/results.md",
                         "synth-prosody report --utt2prosody exp/tiny/align_test/utt2prosody exp/tiny out.md"])
@click.argument("exp_dir")
@click.argument("output")
@click.option("--utt2prosody", default=None,
              help="The test set's utt2prosody (make-data): adds the table per subset (focus word marked in "
                   "the text, not marked, no focus word) from each eval's per_utt.jsonl.")
def report(exp_dir, output, utt2prosody):
    """The RESULTS table of EXP_DIR/<granularity>/eval/metrics.json, with the gap closed per metric."""
    from sltk.tts.evaluate import PROSODY_SUBSETS, results_table, subset_metrics

    metrics = {}
    for g in GRANS:
        p = Path(exp_dir) / g / "eval" / "metrics.json"
        if p.is_file():
            try:
                metrics[g] = json.loads(p.read_text())
            except ValueError as e:
                raise UserError(f"{p} is not valid JSON: {e}") from None
    if not metrics:
        raise UserError(f"no {exp_dir}/<granularity>/eval/metrics.json found (run synth-prosody eval)")
    lines = results_table(metrics)
    if utt2prosody:
        if not Path(utt2prosody).is_file():
            raise UserError(f"--utt2prosody {utt2prosody} does not exist")
        prosody = {}
        for utt, js in read_table(utt2prosody):
            try:
                prosody[utt] = json.loads(js)
            except ValueError:
                raise UserError(f"{utt2prosody}: utterance {utt}: not a JSON object: {js[:60]}") from None
        per_utt = {}
        for g in metrics:
            p = Path(exp_dir) / g / "eval" / "per_utt.jsonl"
            if not p.is_file():
                raise UserError(f"{p} does not exist (rerun synth-prosody eval for {g})")
            per_utt[g] = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            unknown = {r["utt"] for r in per_utt[g]} - set(prosody)
            if unknown:
                raise UserError(f"{p}: {len(unknown)} utterances not in {utt2prosody} "
                                f"(e.g. {sorted(unknown)[0]}): another test set?")
        for name, keep in PROSODY_SUBSETS:
            sub = {g: subset_metrics(rows, lambda u: keep(prosody[u])) for g, rows in per_utt.items()}
            n = max((r.get("utterances", 0) for m in sub.values() for r in m.values()), default=0)
            lines += ["", f"### Subset: {name} ({n} utterances)", ""]
            lines += results_table(sub) if n else ["(no utterances)"]
    with atomic_open(output, "w") as f:
        f.write("\n".join(lines) + "\n")
    click.echo("\n".join(lines))
    summary(len(metrics), len(GRANS), len(GRANS) - len(metrics), what="granularities", extra=f"table in {output}")
