"""kws-aec: keyword spotting and device-directed speech detection with implicit acoustic
echo cancellation (the loudspeaker reference as a second input); see sltk.kws."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import numpy as np

from sltk.utils.cli import program_group, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, read_table

log = logging.getLogger("sltk")


@program_group(name="kws-aec", examples=[
    "kws-aec simulate --num-utts 2000 --seed 1 data/train",
    "kws-aec train --variant early data/train exp/early",
    "kws-aec score exp/early/final.pt data/test > exp/early/scores.txt",
    "kws-aec eval --model exp/early/final.pt data/test exp/early/eval",
    "kws-aec detect exp/early/final.pt long_mic.wav long_ref.wav",
])
def main(verbose):
    """Keyword spotting and device-directed speech detection under loudspeaker playback."""


@main.command(examples=["kws-aec simulate --num-utts 6 --synths espeak data/tiny",
                        "kws-aec simulate --num-utts 5000 --nj 8 --clean-frac 0.25 --utt-tag tr data/train"])
@click.argument("out_dir")
@click.option("--num-utts", type=click.IntRange(min=1), default=1000, help="Utterances to simulate.")
@click.option("--seed", type=int, default=0, help="Random seed (the content depends only on it and the options).")
@click.option("--synths", default="", help="Comma-separated synthesizers (espeak, flite, festival, piper); empty: all available.")
@click.option("--clean-frac", type=click.FloatRange(0, 1), default=0.25, help="Share of utterances without playback.")
@click.option("--music-frac", type=click.FloatRange(0, 1), default=0.5, help="Share of playback that is music (else speech).")
@click.option("--ser-min", type=float, default=-10.0, help="Lowest signal-to-echo ratio (dB).")
@click.option("--ser-max", type=float, default=10.0, help="Highest signal-to-echo ratio (dB).")
@click.option("--max-delay-ms", type=click.FloatRange(0, 1000), default=100.0, help="Largest echo-path delay (ms).")
@click.option("--utt-tag", default="", help="A tag in every utterance id (e.g. tr, te).")
@click.option("--nj", type=click.IntRange(min=1), default=1, help="Parallel processes.")
def simulate(out_dir, num_utts, seed, synths, clean_frac, music_frac, ser_min, ser_max, max_delay_ms, utt_tag, nj):
    """Simulate mic + reference recordings with keyword / device-directed labels into OUT_DIR."""
    from sltk.kws.data import SimConfig, simulate as run

    if ser_min > ser_max:
        raise UserError(f"--ser-min {ser_min} is above --ser-max {ser_max}")
    if "-" in utt_tag or " " in utt_tag:
        raise UserError(f"--utt-tag {utt_tag!r} must not contain '-' or spaces")
    cfg = SimConfig(num_utts=num_utts, seed=seed, synths=tuple(s for s in synths.split(",") if s),
                    clean_frac=clean_frac, music_frac=music_frac, ser_range=(ser_min, ser_max),
                    max_delay_ms=max_delay_ms, utt_tag=utt_tag)
    done, total, failed = run(cfg, out_dir, nj=nj)
    summary(done, total, failed)
    if done == 0:
        raise UserError(f"no utterance could be simulated into {out_dir} (see the warnings above)")


@main.command(examples=["kws-aec train --variant mid --epochs 20 data/train exp/mid"])
@click.argument("data_dir")
@click.argument("out_dir")
@click.option("--variant", type=click.Choice(["mic", "early", "mid", "aec"]), default="mic", help="Model variant.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Utterances per batch.")
@click.option("--lr", type=float, default=2e-3, help="Adam learning rate.")
@click.option("--channels", type=click.IntRange(min=4), default=48, help="Channels of the TCN.")
@click.option("--num-mel-bins", type=click.IntRange(min=3), default=40, help="Log-mel bins.")
@click.option("--seed", type=int, default=0, help="Random seed.")
@click.option("--max-utts", type=click.IntRange(min=0), default=0, help="Use only the first N utterances (0: all).")
def train(data_dir, out_dir, variant, epochs, batch_size, lr, channels, num_mel_bins, seed, max_utts):
    """Train a detector on DATA_DIR; checkpoints in OUT_DIR (resumes from the last epoch)."""
    from sltk.kws.models import complexity
    from sltk.kws.train import load_model, train as run

    path = run(data_dir, out_dir, variant, epochs, batch_size, lr, channels, num_mel_bins, seed, max_utts)
    model, _ = load_model(path)
    c = complexity(model)
    with atomic_open(Path(out_dir) / "complexity.json", "w") as f:
        json.dump(c, f, indent=1)
    summary(epochs, epochs, 0, what="epochs",
            extra=f"{c['params']} parameters, {c['macs_per_s'] / 1e6:.2f} M MACs/s; model {path}")


def _write_scores(scores, out):
    f = open(out, "w") if out != "-" else sys.stdout
    try:
        for u in sorted(scores):
            f.write(f"{u} {scores[u][0]:.6f} {scores[u][1]:.6f}\n")
    finally:
        if f is not sys.stdout:
            f.close()


@main.command(examples=["kws-aec score exp/early/final.pt data/test -o exp/early/scores.txt"])
@click.argument("model")
@click.argument("data_dir")
@click.option("-o", "--output", default="-", help="Scores file (utt kw_score dd_score); - is stdout.")
@click.option("--shuffle-ref", is_flag=True, help="Feed each utterance another utterance's reference (ablation).")
@click.option("--seed", type=int, default=0, help="Seed of the reference shuffle.")
def score(model, data_dir, output, shuffle_ref, seed):
    """Per-utterance scores (keyword, device-directed) of DATA_DIR (wav.scp and ref.scp)."""
    from sltk.kws.train import load_model, read_data_dir, score as run

    m, _ = load_model(model)
    utts = read_data_dir(data_dir, need_ref=True)
    scores = run(m, utts, shuffle_ref, seed)
    _write_scores(scores, output)
    summary(len(scores), len(utts))


@main.command(examples=["kws-aec detect exp/early/final.pt mic.wav ref.wav",
                        "kws-aec detect --threshold-kw 0.8 exp/mic/final.pt mic.wav"])
@click.argument("model")
@click.argument("mic_wav")
@click.argument("ref_wav", required=False)
@click.option("--name", default="", help="The name printed first on each line (default: MIC_WAV's stem).")
@click.option("--chunk-s", type=click.FloatRange(min=0.01), default=0.1, help="Streaming chunk length (s).")
@click.option("--threshold-kw", type=click.FloatRange(0, 1), default=0.5, help="Keyword threshold.")
@click.option("--threshold-dd", type=click.FloatRange(0, 1), default=0.5, help="Device-directed threshold.")
@click.option("--min-gap-s", type=click.FloatRange(min=0), default=0.5, help="Gap that ends an event (s).")
def detect(model, mic_wav, ref_wav, name, chunk_s, threshold_kw, threshold_dd, min_gap_s):
    """Stream a long MIC_WAV (+ REF_WAV) and print "name start end kind score" per event."""
    from sltk.kws.stream import detect as run
    from sltk.kws.train import load_model, read_wav

    m, _ = load_model(model)
    mic = read_wav(mic_wav)
    if ref_wav:
        ref = read_wav(ref_wav)
        ref = np.pad(ref, (0, max(0, len(mic) - len(ref))))[: len(mic)]
    elif m.variant in ("early", "mid", "aec"):
        raise UserError(f"the {m.variant} model needs REF_WAV (the loudspeaker reference)")
    else:
        ref = None
    name = name or Path(mic_wav).stem
    n = 0
    for start, end, kind, sc in run(m, mic, ref, chunk_s, (threshold_kw, threshold_dd), min_gap_s):
        click.echo(f"{name} {start:.2f} {end:.2f} {kind} {sc:.3f}")
        n += 1
    summary(1, 1, 0, what="recordings", extra=f"{n} detections")


@main.command(name="eval", examples=["kws-aec eval --model exp/early/final.pt data/test exp/early/eval",
                                     "kws-aec eval --model exp/early/final.pt --shuffle-ref data/test exp/early/eval_shuf",
                                     "kws-aec eval --scores exp/mic/scores.txt data/test exp/mic/eval"])
@click.argument("data_dir")
@click.argument("out_dir")
@click.option("--model", default=None, help="A checkpoint to score DATA_DIR with.")
@click.option("--scores", default=None, help="A scores file of `kws-aec score` (instead of --model).")
@click.option("--far", type=click.FloatRange(0, 1, min_open=True), default=0.05, help="False-accept rate of the FRR.")
@click.option("--shuffle-ref", is_flag=True, help="Feed each utterance another utterance's reference (ablation).")
@click.option("--seed", type=int, default=0, help="Seed of the reference shuffle.")
def eval_(data_dir, out_dir, model, scores, far, shuffle_ref, seed):
    """FRR at a fixed false-accept rate per SER bin and clean, DET plots and metrics.json."""
    from sltk.kws import metrics
    from sltk.kws.train import load_model, read_data_dir, score as run

    if (model is None) == (scores is None):
        raise UserError("give exactly one of --model and --scores")
    utts = read_data_dir(data_dir, need_ref=model is not None, need_labels=True)
    if model:
        m, _ = load_model(model)
        sc = run(m, utts, shuffle_ref, seed)
    else:
        if shuffle_ref:
            raise UserError("--shuffle-ref needs --model (scores are already computed)")
        if not Path(scores).is_file():
            raise UserError(f"scores file {scores} does not exist")
        sc = {}
        for u, v in read_table(scores):
            parts = v.split()
            try:
                sc[u] = (float(parts[0]), float(parts[1]))
            except (ValueError, IndexError):
                raise UserError(f"{scores}: line of {u} must be 'utt kw_score dd_score'") from None
        missing = [u.utt for u in utts if u.utt not in sc]
        if missing:
            raise UserError(f"{scores} lacks {len(missing)} of {len(utts)} utterances (first: {missing[0]})")
    labels = {u.utt: (u.kw, u.dd) for u in utts}
    sers = {u.utt: u.ser for u in utts}
    sc = {u.utt: sc[u.utt] for u in utts}
    res = metrics.evaluate(sc, labels, sers, far)
    res.update({"data_dir": str(data_dir), "model": model, "shuffle_ref": shuffle_ref})
    if model:
        from sltk.kws.models import complexity
        res["complexity"] = complexity(m)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_scores(sc, out / "scores.txt")
    for ti, task in enumerate(("kw", "dd")):
        groups = [g for g in res["tasks"][task] if g != "all"]
        curves = {}
        for g in groups:
            us = [u for u in sc if g == "playback" and sers[u] != "clean" or metrics.condition(sers[u]) == g]
            pos = [sc[u][ti] for u in us if labels[u][ti] == 1]
            neg = [sc[u][ti] for u in us if labels[u][ti] == 0]
            if pos and neg:
                curves[g] = metrics.det_curve(pos, neg)
        metrics.plot_det(curves, out / f"det_{task}.png", title=f"{task} DET")
    with atomic_open(out / "metrics.json", "w") as f:
        json.dump(res, f, indent=1)
    for task in ("kw", "dd"):
        for g, r in res["tasks"][task].items():
            frr = "n/a" if r["frr"] is None else f"{100 * r['frr']:.2f}%"
            click.echo(f"{task} {g} FRR@FA{far:g} {frr} (pos {r['positives']}, neg {r['negatives']})")
    summary(len(sc), len(utts), extra=f"metrics in {out / 'metrics.json'}")
