"""convert-accent: non-parallel many-to-many accent conversion with a conditional
normalizing flow (remap, warp, attend); see sltk.vc."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sltk.utils.cli import program_group, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_path

log = logging.getLogger("sltk")


@program_group(name="convert-accent", examples=[
    "convert-accent make-data --accents en-us,en-gb-x-rp,en-gb-scotland,en-029 data/full",
    "convert-accent train --epochs 30 data/full/train exp/flow",
    "convert-accent train-judges data/full/judge exp/judges",
    "convert-accent convert --text 'The car is parked.' --source-accent en-us --speaker m3_p0_r100 "
    "--target-accent en-gb-scotland exp/flow/final.pt in.wav out.wav",
    "convert-accent eval exp/flow/final.pt exp/judges/judges.pt data/full/eval exp/eval",
])
def main(verbose):
    """Accent conversion with a conditional normalizing flow: remap, warp, attend."""


warp_option = click.option(
    "--warp", type=click.Choice(["relative", "absolute"]), default="relative",
    help="Duration warping: relative (each word stretched by the accents' typical length ratio, the source's "
         "rhythm kept) or absolute (every phone at its target-accent mean duration).")


@main.command(name="make-data", examples=[
    "convert-accent make-data --accents en-us,en-gb-scotland --voices m3,f2 --train-per-voice 4 data/tiny",
    "convert-accent make-data --nj 2 data/full"])
@click.argument("out_dir")
@click.option("--accents", default="en-us,en-gb-x-rp,en-gb-scotland,en-029", help="Comma-separated espeak-ng accents.")
@click.option("--voices", default="m1,m3:-1:1.05,f2,f4:1:0.95",
              help="Comma-separated voices VARIANT[:PITCH[:RATE]] (each speaks every accent).")
@click.option("--train-per-voice", type=click.IntRange(min=1), default=30, help="Training sentences per accent and voice.")
@click.option("--judge-per-voice", type=click.IntRange(min=1), default=8, help="Judge sentences per accent and voice.")
@click.option("--eval-sentences", type=click.IntRange(min=1), default=6,
              help="Parallel evaluation sentences (each by every voice in every accent).")
@click.option("--seed", type=int, default=0, help="Random seed of the sentences.")
@click.option("--nj", type=click.IntRange(min=1), default=1, help="Parallel processes.")
def make_data(out_dir, accents, voices, train_per_voice, judge_per_voice, eval_sentences, seed, nj):
    """Synthesize the multi-accent corpus (train, judge, eval data directories) into OUT_DIR."""
    from sltk.vc.data import DataConfig, make_data as run

    cfg = DataConfig(tuple(a for a in accents.split(",") if a), tuple(v for v in voices.split(",") if v),
                     train_per_voice, judge_per_voice, eval_sentences, seed)
    done, total, failed = run(cfg, out_dir, nj)
    summary(done, total, failed)
    if done == 0:
        raise UserError(f"no utterance could be synthesized into {out_dir} (see the warnings above)")


@main.command(examples=["convert-accent train --epochs 2 data/tiny/train exp/tiny/flow"])
@click.argument("data_dir")
@click.argument("out_dir")
@click.option("--epochs", type=click.IntRange(min=1), default=20, help="Flow training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Pieces per batch.")
@click.option("--crop", type=click.IntRange(min=4), default=64, help="Frames per training piece.")
@click.option("--lr", type=float, default=1e-3, help="Adam learning rate.")
@click.option("--steps", type=click.IntRange(min=1), default=6, help="Flow steps (actnorm, 1x1 mixing, coupling).")
@click.option("--hidden", type=click.IntRange(min=4), default=96, help="Channels of the coupling networks.")
@click.option("--noise", type=click.FloatRange(min=0), default=0.05, help="Dequantisation noise (normalised units).")
@click.option("--aligner-iterations", type=click.IntRange(min=1), default=6, help="Forced-aligner training rounds.")
@click.option("--recognizer-epochs", type=click.IntRange(min=0), default=8,
              help="Epochs of the phone recognizer (sources without text).")
@click.option("--seed", type=int, default=0, help="Random seed.")
@click.option("--max-utts", type=click.IntRange(min=0), default=0, help="Use only the first N utterances (0: all).")
@click.option("--cond-prior/--no-cond-prior", default=True,
              help="A conditional prior N(mu(c), sigma(c)^2) on the flow's latents, predicted from the phones, "
                   "speaker and accent (Glow-TTS style).")
@click.option("--cond-context", type=click.IntRange(min=0), default=3,
              help="Dilated convolutions (dilation 2, 4, ...) that widen the conditioning's context beyond the "
                   "frame's phone (3: about 60 frames each side).")
def train(data_dir, out_dir, epochs, batch_size, crop, lr, steps, hidden, noise, aligner_iterations,
          recognizer_epochs, seed, max_utts, cond_prior, cond_context):
    """Train the flow (and its aligner, duration, phone-mapping and recognizer models) on the
    non-parallel DATA_DIR; OUT_DIR/final.pt. Rerunning resumes from OUT_DIR/last.pt."""
    from sltk.vc.train import TrainConfig, train as run

    cfg = TrainConfig(epochs, batch_size, crop, lr, steps, hidden, noise, aligner_iterations, recognizer_epochs, seed,
                      cond_prior, cond_context)
    path = run(data_dir, out_dir, cfg, max_utts)
    import torch
    ck = torch.load(path, weights_only=False)
    summary(epochs, epochs, 0, what="epochs",
            extra=f"final NLL {ck['history'][-1]:.4f} nats/dim; model {path}" if ck["history"] else f"model {path}")


@main.command(name="train-judges", examples=["convert-accent train-judges --epochs 12 data/full/judge exp/judges"])
@click.argument("judge_dir")
@click.argument("out_dir")
@click.option("--epochs", type=click.IntRange(min=1), default=10, help="Epochs of each judge.")
@click.option("--hidden", type=click.IntRange(min=4), default=64, help="Channels of the judges.")
@click.option("--seed", type=int, default=0, help="Random seed.")
def train_judges(judge_dir, out_dir, epochs, hidden, seed):
    """Train the accent-ID and speaker-ID judges on the held-apart JUDGE_DIR; OUT_DIR/judges.pt."""
    from sltk.vc.evaluate import train_judges as run

    acc = run(judge_dir, out_dir, epochs, hidden, seed)
    summary(2, 2, 0, what="judges", extra=f"held-out accuracy: accent-ID {100 * acc['accent_acc']:.1f}%, "
                                          f"speaker-ID {100 * acc['speaker_acc']:.1f}%")


@main.command(examples=[
    "convert-accent convert --source-accent en-us --speaker m3_p0_r100 --target-accent en-gb-scotland "
    "--text 'The car is parked at the farm.' exp/flow/final.pt in.wav out.wav",
    "convert-accent convert --source-accent en-029 --speaker f2_p0_r100 --target-accent en-us exp/flow/final.pt in.wav out.wav"])
@click.argument("model")
@click.argument("in_wav")
@click.argument("out_wav")
@click.option("--target-accent", required=True, help="The accent to convert to.")
@click.option("--source-accent", required=True, help="The accent of IN_WAV.")
@click.option("--speaker", required=True, help="The speaker of IN_WAV (one the model was trained on).")
@click.option("--text", default="", help="What IN_WAV says (else its phones are recognised and mapped).")
@click.option("--system", type=click.Choice(["plain", "remap", "remap+warp", "remap+warp+attend"]),
              default="remap+warp+attend", help="Conversion method (the ablations of `eval`).")
@click.option("--vocoder", default="griffin-lim", help="Vocoder (sltk.tts.vocoder).")
@click.option("--latent-scale", type=click.FloatRange(min=0), default=1.0,
              help="Scale of the source latents before the reverse pass (a temperature; 1: unchanged).")
@warp_option
def convert(model, in_wav, out_wav, target_accent, source_accent, speaker, text, system, vocoder, latent_scale,
            warp):
    """Convert IN_WAV (16 kHz mono) to --target-accent; write OUT_WAV."""
    import soundfile as sf

    from sltk.audio.io import read_audio
    from sltk.tts.vocoder import get_vocoder
    from sltk.vc.system import AccentConverter

    conv = AccentConverter.load(model)
    conv.latent_scale = latent_scale
    conv.warp = warp
    conv.check_accent(target_accent)
    conv.check_accent(source_accent)
    conv.check_speaker(speaker)
    voc = get_vocoder(vocoder, conv.mel_cfg)
    x, _ = read_audio(in_wav, expected_sample_rate=conv.mel_cfg.sample_rate)
    a = conv.analyse(x, source_accent, speaker, text or None)
    mel = conv.convert(a, target_accent, system)
    y = voc(mel)
    with atomic_path(Path(out_wav)) as tmp:
        sf.write(str(tmp), y, conv.mel_cfg.sample_rate, subtype="PCM_16", format="WAV")
    summary(1, 1, 0, what="utterances",
            extra=f"{source_accent} -> {target_accent} ({system}): {a.mel.shape[0]} -> {mel.shape[0]} frames, {out_wav}")


@main.command(name="eval", examples=[
    "convert-accent eval exp/flow/final.pt exp/judges/judges.pt data/full/eval exp/eval",
    "convert-accent eval --no-text exp/flow/final.pt exp/judges/judges.pt data/full/eval exp/eval_no_text",
    "convert-accent eval --max-pairs 24 --asr-model ../../assistant/asr1/exp/full/model_conformer/avg-2-3.pt "
    "--asr-lang ../../assistant/asr1/data/full/lang_bpe_100 "
    "--asr-features ../../assistant/asr1/data/full/fbank/train/features.json "
    "exp/flow/final.pt exp/judges/judges.pt data/full/eval exp/eval_asr"])
@click.argument("model")
@click.argument("judges")
@click.argument("eval_dir")
@click.argument("out_dir")
@click.option("--targets", type=click.Choice(["one", "all"]), default="one",
              help="Convert each utterance to one other accent (a rotation) or to all others.")
@click.option("--max-pairs", type=click.IntRange(min=0), default=0, help="Evaluate only the first N pairs (0: all).")
@click.option("--num-wavs", type=click.IntRange(min=0), default=4, help="Pairs whose outputs are vocoded into OUT_DIR/wav.")
@click.option("--asr-model", default="", help="An sltk transducer checkpoint for CER (optional).")
@click.option("--asr-lang", default="", help="Its lang directory (with --asr-model).")
@click.option("--asr-features", default="", help="The features.json of its features (with --asr-model).")
@click.option("--no-text", is_flag=True,
              help="Analyse the sources without their transcripts: phones recognised by the model's phone "
                   "recognizer and mapped to the target accent by its learned phone-to-phone mapper.")
@click.option("--latent-scale", type=click.FloatRange(min=0), default=1.0,
              help="Scale of the source latents before the reverse pass, for every converting system.")
@warp_option
def eval_(model, judges, eval_dir, out_dir, targets, max_pairs, num_wavs, asr_model, asr_lang, asr_features,
          no_text, latent_scale, warp):
    """The five systems on the parallel EVAL_DIR: target-accent posterior, speaker cosine,
    MCD to the parallel target, duration against it (and CER); OUT_DIR/metrics.json, results.md."""
    from sltk.vc.evaluate import evaluate

    asr = None
    if asr_model:
        if not asr_lang or not asr_features:
            raise UserError("--asr-model needs --asr-lang and --asr-features")
        from sltk.tts.evaluate import AsrJudge
        asr = AsrJudge(asr_model, asr_lang, asr_features)
    res = evaluate(model, judges, eval_dir, out_dir, targets, max_pairs, asr, num_wavs, use_text=not no_text,
                   latent_scale=latent_scale, warp=warp)
    md = (Path(out_dir) / "results.md").read_text()
    click.echo(md, nl=False)
    full, plain = res["remap+warp+attend"], res["plain"]
    summary(int(full["pairs"]), int(full["pairs"]), what="conversion pairs",
            extra=f"target-accent posterior {plain['accent_post']:.3f} (plain) -> {full['accent_post']:.3f} "
                  f"(remap+warp+attend); metrics in {Path(out_dir) / 'metrics.json'}")
