"""train-context-adapter: train a contextual adapter (catalog-biased CTC) on a frozen base transducer."""

from __future__ import annotations

from pathlib import Path

import click

from sltk.bin.train_adapter import ADAPTER_DEFAULTS, train_config, train_options
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

# training options of train-transducer that do not apply: the start is --base, and only the CTC
# loss is computed (the transducer losses do not depend on the adapter)
NOT_USED = ("init_checkpoint", "loss", "prune_range", "simple_loss_scale", "am_scale", "lm_scale", "warm_step")


@program(name="train-context-adapter", examples=[
    "train-context-adapter --base exp/rnnt/avg-4-5.pt --rare-words data/synth/rare_words.txt "
    "--cuts-train exp/fbank/train/cuts.jsonl.gz --cuts-dev exp/fbank/dev/cuts.jsonl.gz "
    "--lang-dir data/lang_bpe_500 --exp-dir exp/ctx exp/ctx/ctx.pt",
    "train-context-adapter ... --distractors 50 --catalog-dim 256 --max-steps 3000 exp/ctx/ctx.pt   "
    "# rerun: resumes from --exp-dir",
    "train-context-adapter --config conf/context_adapter.yaml --base exp/rnnt/avg-4-5.pt --rare-words "
    "data/synth/rare_words.txt --exp-dir exp/ctx exp/ctx/ctx.pt   # decode OUT with bias-decode",
])
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--base", required=True, type=click.Path(dir_okay=False),
              help="Base model checkpoint (frozen; trained with a CTC loss; its config is the model config).")
@click.option("--rare-words", required=True, type=click.Path(dir_okay=False),
              help="Catalog phrases, one word (or phrase) per line, e.g. the corpus's rare_words.txt: each "
                   "utterance's catalog holds those its transcript contains (whole words) plus distractors.")
@click.option("--distractors", default=20, type=int,
              help="Random other phrases of --rare-words added to each utterance's catalog (seeded by --seed).")
@click.option("--catalog-dim", default=128, type=int, help="Size of a catalog entry's vector (D_c).")
@click.option("--attention-dim", default=128, type=int, help="Size of the adapter's queries, keys and values.")
@click.option("--embed-dim", default=64, type=int, help="Size of the catalog encoder's token embedding.")
@click.option("--lstm-dim", default=64, type=int, help="Hidden size of the catalog encoder's BiLSTM (per direction).")
@train_options(exclude=NOT_USED, defaults=ADAPTER_DEFAULTS)
def main(out, base, rare_words, distractors, catalog_dim, attention_dim, embed_dim, lstm_dim, **kw):
    """Train a contextual adapter on a frozen base transducer: a catalog encoder and a per-frame
    attention over catalog phrases that bias the CTC head's input; writes the model checkpoint
    OUT (base + adapter, loadable with load_model); resumable."""
    from sltk.bias.encoder import ContextAdapterConfig
    from sltk.bias.train import train_context_adapter

    if not Path(base).is_file():
        raise UserError(f"--base checkpoint {base} does not exist")
    acfg = ContextAdapterConfig(embed_dim=embed_dim, lstm_dim=lstm_dim, catalog_dim=catalog_dim,
                                attention_dim=attention_dim)
    cfg = train_config(kw)
    r = train_context_adapter(base, out, cfg, rare_words, acfg, distractors=distractors)
    dev = r["dev"]
    loss = ""
    if dev:
        loss = (f", dev CTC loss/frame {dev['ctc']:.4f} with catalogs (base {dev['ctc_base']:.4f}), bias gate "
                f"{dev['gate_rare']:.3f} on utterances with catalog words, {dev['gate_none']:.3f} without")
    summary(1, 1, what="context adapters",
            extra=f"{out}: {r['num_params']} adapter parameters, {r['bytes']} bytes, {r['steps']} steps"
                  f"{loss}{' (already done)' if r['skipped'] else ''}")


if __name__ == "__main__":
    main()
