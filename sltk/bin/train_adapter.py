"""train-adapter: train one residual adapter on a frozen base transducer, into its own file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import click

from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

# training defaults for adapters and fusion layers: the base is trained already
ADAPTER_DEFAULTS = {"num_epochs": 5, "warmup_steps": 100, "warm_step": 1, "average_last": 0}


def train_options(exclude: Sequence[str] = ("init_checkpoint",), defaults: Optional[Dict] = None):
    """train-transducer's training options (its option builder and help), less ``exclude``,
    with other ``defaults``: a decorator for another program's command."""
    from sltk.bin.train_transducer import _options

    def deco(f):
        def probe():
            pass

        _options(probe)
        params = [p for p in probe.__click_params__ if p.name not in exclude]
        for p in params:
            if defaults and p.name in defaults:
                p.default = defaults[p.name]
        f.__click_params__ = getattr(f, "__click_params__", []) + params
        return f

    return deco


def train_config(kw: Dict):
    """The TrainConfig of the training options in ``kw`` (popped from it)."""
    from sltk.asr.train import TrainConfig

    keys = [k for k in TrainConfig.keys() if k in kw]
    return TrainConfig(**{k: kw.pop(k) for k in keys})


def fmt_dev(dev: Dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in dev.items())


@program(name="train-adapter", examples=[
    "train-adapter --base exp/rnnt/avg-4-5.pt --cuts-train exp/fbank/contacts/cuts.jsonl.gz "
    "--lang-dir data/lang_bpe_500 --exp-dir exp/adapter_contacts exp/adapters/contacts.pt",
    "train-adapter --base exp/rnnt/avg-4-5.pt --adapter-config conf/adapter.yaml --mix-cuts "
    "exp/fbank/train/cuts.jsonl.gz --mix-frac 0.3 --info words=local/contacts.txt ... exp/adapters/contacts.pt",
    "train-adapter ... --max-steps 2000 exp/adapters/contacts.pt   # rerun: resumes from --exp-dir",
])
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--base", required=True, type=click.Path(dir_okay=False),
              help="Base model checkpoint (frozen; its config is the model config; training starts from it).")
@click.option("--adapter-config", type=click.Path(dir_okay=False), default=None,
              help="YAML of adapter settings: encoder_layers (0-based, negative from the end; default [-1]), "
                   "decoder (true), bottleneck (64).")
@click.option("--name", default=None, help="Adapter name stored in the file (default: OUT's file stem).")
@click.option("--mix-cuts", default="", help="CutSet of general data (with features) to mix into the training cuts.")
@click.option("--mix-frac", default=0.0, type=float,
              help="With --mix-cuts: share of general cuts in the combined training set (0 < F < 1), written to "
                   "EXP_DIR/cuts_train_mixed.jsonl.gz.")
@click.option("--info", multiple=True, metavar="KEY=VALUE",
              help="Free-form KEY=VALUE stored in the adapter file (repeatable), e.g. the words it is for.")
@train_options(defaults=ADAPTER_DEFAULTS)
def main(out, base, adapter_config, name, mix_cuts, mix_frac, info, **kw):
    """Train one residual adapter on a frozen base transducer and write it to OUT (its own file); resumable."""
    from sltk.adapters.modules import AdapterConfig
    from sltk.adapters.train import train_adapter

    extra = {}
    for item in info:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--info takes KEY=VALUE, got {item!r}")
        extra[key] = value
    if not Path(base).is_file():
        raise UserError(f"--base checkpoint {base} does not exist")
    acfg = AdapterConfig.from_yaml(adapter_config) if adapter_config else AdapterConfig()
    cfg = train_config(kw)
    r = train_adapter(base, out, cfg, acfg, name=name or Path(out).stem, mix_cuts=mix_cuts, mix_frac=mix_frac,
                      info=extra)
    loss = f", dev loss/frame {fmt_dev(r['dev'])} (base {fmt_dev(r['base_dev'])})" if r.get("dev") else ""
    summary(1, 1, what="adapters",
            extra=f"{r['name']!r} in {out}: {r['num_params']} parameters, {r['bytes']} bytes, {r['steps']} steps"
                  f"{loss}{' (already done)' if r['skipped'] else ''}")


if __name__ == "__main__":
    main()
