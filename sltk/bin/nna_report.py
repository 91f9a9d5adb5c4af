"""nna-report: which operators of a model leave the NNA, and the float<->int conversions per frame."""

from __future__ import annotations

import logging

import click

from sltk.asr.checkpoint import load_model
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open

log = logging.getLogger("sltk")


@program(name="nna-report", examples=[
    "nna-report --checkpoint exp/rnnt/avg-4-5.pt --nna-config conf/nna/harsh.yaml",
    "nna-report --checkpoint exp/rnnt_aat_int8/epoch-1.pt --json exp/rnnt_aat_int8/nna_report.json",
])
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Model checkpoint (.pt).")
@click.option("--nna-config", default=None, type=click.Path(dir_okay=False),
              help="NNA profile yaml (default: the profile an accelerator-aware checkpoint records).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Also write the report as JSON to this file.")
def main(checkpoint, nna_config, json_out):
    """Report the operators that fall back to float on the CPU and the conversions per encoder frame."""
    from sltk.nna.profile import load_profile
    from sltk.nna.report import fallback_report, format_report, to_json

    model = load_model(checkpoint)
    recorded = getattr(model, "nna_profile", None)
    if nna_config:
        profile = load_profile(nna_config)
    elif recorded is not None:
        profile = recorded
    else:
        raise UserError(f"{checkpoint} records no NNA profile; give --nna-config")
    rep = fallback_report(model, profile)
    rep["checkpoint"] = str(checkpoint)
    click.echo(format_report(rep, title=f"checkpoint {checkpoint}"))
    if json_out:
        with atomic_open(json_out) as f:
            f.write(to_json(rep) + "\n")
    conv = rep["conversions"]
    summary(len(rep["operators"]), len(rep["operators"]), 0, what="operators traced",
            extra=f"{len(rep['fallbacks'])} fall back to the CPU; {conv['per_encoder_frame']:g} float<->int "
                  f"conversions per encoder frame, {conv['decoder_per_token']:g} per token")


if __name__ == "__main__":
    main()
