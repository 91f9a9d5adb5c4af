"""fuse-adapters: combine adapter files on their base transducer into one model checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sltk.bin.train_adapter import ADAPTER_DEFAULTS, fmt_dev, train_config, train_options
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")


@program(name="fuse-adapters", examples=[
    "fuse-adapters --base exp/rnnt/avg-4-5.pt --method average exp/adapters/contacts.pt exp/adapters/songs.pt "
    "exp/fused_avg.pt",
    "fuse-adapters --base exp/rnnt/avg-4-5.pt --method attention --cuts-train exp/fbank/mixed/cuts.jsonl.gz "
    "--lang-dir data/lang_bpe_500 --exp-dir exp/fusion exp/adapters/contacts.pt exp/adapters/songs.pt exp/fused.pt",
    "decode-transducer --checkpoint exp/fused.pt ...   # the fused model decodes like any checkpoint",
])
@click.argument("paths", nargs=-1, required=True, metavar="ADAPTER... OUT")
@click.option("--base", required=True, type=click.Path(dir_okay=False),
              help="The base model checkpoint every adapter was trained on (checked by its hash).")
@click.option("--method", type=click.Choice(["sum", "average", "attention"]), required=True,
              help="sum: h + sum_k a_k(h); average: h + mean_k a_k(h); attention: a trained per-frame attention over "
                   "the adapters' outputs (needs training data).")
@click.option("--include-base/--no-include-base", default=True,
              help="attention: the base itself (no adapter) is one of the candidates.")
@train_options(defaults=ADAPTER_DEFAULTS)
def main(paths, base, method, include_base, **kw):
    """Fuse K >= 1 adapter files with their base model into OUT, a model checkpoint (sum, average or attention)."""
    from sltk.adapters.train import fuse_adapters

    if len(paths) < 2:
        raise UserError("give at least one adapter file and the output checkpoint: ADAPTER... OUT")
    *adapters, out = paths
    if not Path(base).is_file():
        raise UserError(f"--base checkpoint {base} does not exist")
    cfg = train_config(kw)
    if method != "attention" and (cfg.cuts_train or cfg.exp_dir):
        log.warning("--method %s needs no training: --cuts-train/--exp-dir are ignored", method)
    r = fuse_adapters(base, adapters, out, method, include_base, cfg if method == "attention" else None)
    loss = f", dev loss/frame {fmt_dev(r['dev'])}" if r.get("dev") else ""
    summary(r["adapters"], len(adapters), what="adapters fused",
            extra=f"{method} into {out}: {r['num_params']} adapter/fusion parameters, {r['bytes']} bytes, "
                  f"{r['steps']} training steps{loss}{' (already done)' if r['skipped'] else ''}")


if __name__ == "__main__":
    main()
