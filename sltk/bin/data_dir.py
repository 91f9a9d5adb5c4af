"""Kaldi data-directory utilities: validate, fix, split, and conversion to/from lhotse."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sltk.data.kaldi import DataDir, split_data_dir
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")


@program(name="validate-data-dir", examples=["validate-data-dir data/train"])
@click.argument("data_dir")
def validate_main(data_dir):
    """Check a Kaldi data directory: sorted tables, consistent ids, non-empty transcripts."""
    d = DataDir.read(data_dir)
    problems = d.validate()
    for p in problems:
        log.warning("%s: %s", data_dir, p)
    if problems:
        raise UserError(f"{data_dir} has {len(problems)} problem(s); run fix-data-dir {data_dir}")
    summary(len(d), len(d), 0, extra=f"{data_dir} is valid ({len(d.spk2utt)} speakers)")


@program(name="fix-data-dir", examples=["fix-data-dir data/train", "fix-data-dir data/train data/train_fixed"])
@click.argument("data_dir")
@click.argument("out_dir", required=False)
def fix_main(data_dir, out_dir):
    """Sort tables, keep utterances present in every table, rebuild spk2utt (in place by default)."""
    d = DataDir.read(data_dir)
    fixed, notes = d.fixed()
    for n in notes:
        log.warning("%s: %s", data_dir, n)
    out = out_dir or data_dir
    if out == data_dir and notes:  # keep what was dropped recoverable, like Kaldi's .backup
        d.write(Path(data_dir) / ".backup")
    fixed.write(out)
    summary(len(fixed), len(d), len(d) - len(fixed), extra=f"wrote {out}")


@program(name="split-data-dir", examples=["split-data-dir data/train 4", "split-data-dir --per-utt data/test 8"])
@click.argument("data_dir")
@click.argument("num_parts", type=click.IntRange(min=1))
@click.option("--per-utt", is_flag=True, help="Split by utterance instead of by speaker.")
def split_main(data_dir, num_parts, per_utt):
    """Split into DATA_DIR/splitN/{1..N} by speaker (by utterance when speakers are fewer than N)."""
    paths = split_data_dir(data_dir, num_parts, per_utt=per_utt)
    sizes = [len(DataDir.read(p)) for p in paths]
    summary(sum(sizes), sum(sizes), 0, extra=f"parts of {min(sizes)}..{max(sizes)} utterances in {paths[0].parent}")


@program(name="data-dir-to-lhotse", examples=["data-dir-to-lhotse data/train data/manifests --prefix train_"])
@click.argument("data_dir")
@click.argument("out_dir")
@click.option("--prefix", default="", help="File name prefix: <prefix>recordings.jsonl.gz, ...")
def to_lhotse_main(data_dir, out_dir, prefix):
    """Write lhotse recordings and supervisions manifests for a Kaldi data directory."""
    from sltk.data.lhotse_io import to_lhotse, write_manifests  # lhotse loads torch: only here

    d = DataDir.read(data_dir)
    recs, sups = to_lhotse(d)
    paths = write_manifests(recs, sups, out_dir, prefix)
    summary(len(sups), len(d), 0, extra=f"wrote {paths[0]} and {paths[1]}")


@program(name="lhotse-to-data-dir",
         examples=["lhotse-to-data-dir data/manifests/train_recordings.jsonl.gz "
                   "data/manifests/train_supervisions.jsonl.gz data/train"])
@click.argument("recordings")
@click.argument("supervisions")
@click.argument("out_dir")
def from_lhotse_main(recordings, supervisions, out_dir):
    """Write a Kaldi data directory from lhotse recordings and supervisions manifests."""
    from sltk.data.lhotse_io import from_lhotse, read_manifests

    recs, sups = read_manifests(recordings, supervisions)
    d = from_lhotse(recs, sups)
    d.write(out_dir)
    summary(len(d), len(sups), 0, extra=f"wrote {out_dir}")


_COMMANDS = {"validate": validate_main, "fix": fix_main, "split": split_main,
             "to-lhotse": to_lhotse_main, "from-lhotse": from_lhotse_main}

if __name__ == "__main__":  # python -m sltk.bin.data_dir <validate|fix|split|to-lhotse|from-lhotse> ...
    import sys

    if len(sys.argv) < 2 or sys.argv[1] not in _COMMANDS:
        sys.exit(f"usage: python -m sltk.bin.data_dir {{{'|'.join(_COMMANDS)}}} ...")
    cmd = _COMMANDS[sys.argv.pop(1)]
    cmd.main(prog_name=cmd.name)
