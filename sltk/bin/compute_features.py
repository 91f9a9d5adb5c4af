"""compute-features: Kaldi-compatible fbank/MFCC features into lhotse (and Kaldi) archives."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Tuple

import click

from sltk.audio.features import FEATURE_TYPES, WINDOW_TYPES, FeatureOptions
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

_FEATURE_FIELDS = [f for f in dataclasses.fields(FeatureOptions)]


def _feature_options(func):
    """One click option per :class:`FeatureOptions` field: names, defaults and help live there."""
    for f in reversed(_FEATURE_FIELDS):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            func = click.option(f"{flag}/--no-{f.name.replace('_', '-')}", f.name, default=f.default,
                                help=help_[:1].upper() + help_[1:] + ".")(func)
        else:
            kind = {"int": int, "float": float, int: int, float: float}.get(f.type, str)
            if f.name == "feature_type":
                kind = click.Choice(FEATURE_TYPES)
            elif f.name == "window_type":
                kind = click.Choice(WINDOW_TYPES)
            func = click.option(flag, f.name, type=kind, default=f.default,
                                help=help_[:1].upper() + help_[1:] + ".")(func)
    return func


@program(name="compute-features", examples=[
    "compute-features data/train exp/fbank/train",
    "compute-features --nj 4 --speed-perturb 0.9,1.1 --cmvn-stats data/train exp/fbank/train_sp",
    "compute-features --config conf/mfcc.yaml --write-kaldi data/dev --cuts data/dev_cuts.jsonl.gz exp/mfcc/dev",
])
@click.argument("paths", nargs=-1, metavar="[DATA_DIR] FEATS_DIR")
@click.option("--cuts", type=click.Path(dir_okay=False), default=None,
              help="Read a lhotse CutSet (cuts.jsonl.gz) instead of a Kaldi DATA_DIR.")
@_feature_options
@click.option("--channel", type=int, default=-1, help="Channel to use; -1 expects mono audio.")
@click.option("--speed-perturb", default="", metavar="F1,F2",
              help="Also compute speed-perturbed copies (cut ids suffixed _sp<F>), e.g. 0.9,1.1.")
@click.option("--nj", type=click.IntRange(min=1), default=1,
              help="Parallel jobs (processes with one torch thread each), each writing feats.<job>.lca.")
@click.option("--write-kaldi", "write_kaldi", default=None, metavar="DIR",
              help="Also write Kaldi archives FEATS_DIR/feats.<job>.ark (exact float32), and "
                   "DIR/feats.scp and DIR/utt2num_frames (e.g. the data directory; speed-perturbed "
                   "copies included).")
@click.option("--cmvn-stats/--no-cmvn-stats", default=False,
              help="Write global feature statistics (count, sum, sumsq, mean, std) to FEATS_DIR/cmvn.json.")
@click.option("--lilcom-tick-power", type=int, default=-5,
              help="lilcom precision: values are stored as multiples of 2^this.")
@click.option("--max-failed-percent", type=click.FloatRange(0, 100), default=5.0,
              help="Fail when more than this percentage of utterances cannot be processed.")
@click.option("--overwrite", is_flag=True, default=False,
              help="Discard features an earlier run left in FEATS_DIR instead of resuming.")
def main(paths: Tuple[str, ...], cuts: Optional[str], channel: int, speed_perturb: str, nj: int,
         write_kaldi: Optional[str], cmvn_stats: bool, lilcom_tick_power: int, max_failed_percent: float,
         overwrite: bool, **feature_kwargs):
    """Compute Kaldi-compatible log-mel filterbank (or MFCC) features of every utterance.

    Reads a Kaldi DATA_DIR (wav.scp, utt2spk, optional segments/text/...) or a lhotse
    CutSet (--cuts), and writes to FEATS_DIR lilcom-compressed lhotse archives
    feats.<job>.lca and the CutSet cuts.jsonl.gz with the features attached (cut ids are
    the utterance ids; supervisions keep text, speaker and metadata). Unreadable audio is a
    warning naming the file; more than --max-failed-percent failures is an error. Rerunning
    the same command resumes: utterances that already have features are skipped.
    """
    from sltk.audio.extract import ExtractConfig, compute_features, parse_speed_perturb

    if cuts is not None:
        if len(paths) != 1:
            raise UserError("with --cuts give only FEATS_DIR" if paths else "missing FEATS_DIR")
        data_dir, feats_dir = None, paths[0]
    else:
        if len(paths) != 2:
            raise UserError("expected DATA_DIR FEATS_DIR (or --cuts CUTS FEATS_DIR)")
        data_dir, feats_dir = paths
    try:
        opts = FeatureOptions(**feature_kwargs)
    except ValueError as e:
        raise UserError(f"bad feature options: {e}") from None
    cfg = ExtractConfig(options=opts, channel=channel, speed_perturb=parse_speed_perturb(speed_perturb),
                        nj=nj, lilcom_tick_power=lilcom_tick_power, write_kaldi=write_kaldi,
                        cmvn_stats=cmvn_stats, max_failed_percent=max_failed_percent, overwrite=overwrite)
    res = compute_features(feats_dir, data_dir=data_dir, cuts_path=cuts, cfg=cfg)
    extra = f"{res.resumed} resumed from an earlier run" if res.resumed else ""
    summary(res.done, res.total, res.failed, extra=extra)
    if res.failed * 100.0 > max_failed_percent * res.total:
        raise UserError(f"{res.failed} of {res.total} utterances failed (> {max_failed_percent:g}%); "
                        f"first: {res.failures[0][0]}: {res.failures[0][1]}")
    return 0


if __name__ == "__main__":
    main()
