"""decode-transducer: decode a CutSet with a transducer checkpoint, by one or more methods."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click
import torch

from sltk.asr.checkpoint import load_model
from sltk.asr.decode import METHODS, DecodeOptions, Decoder, decode_cuts, estimate_warps, setup_nna
from sltk.asr.train import load_cuts
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, read_table, write_table
from sltk.utils.progress import progress

log = logging.getLogger("sltk")


def _read_spk2warp(path: str) -> dict:
    out = {}
    for spk, value in read_table(path):
        try:
            out[spk] = float(value)
        except ValueError:
            raise UserError(f"{path}: expected 'speaker factor' lines, got {spk!r} {value!r}") from None
        if not 0.5 <= out[spk] <= 2.0:
            raise UserError(f"{path}: warp factor {value} of {spk} is outside [0.5, 2]")
    if not out:
        raise UserError(f"{path} has no warp factors")
    return out


@program(name="decode-transducer", examples=[
    "decode-transducer --checkpoint exp/rnnt/avg-8-10.pt --cuts exp/fbank/test/cuts.jsonl.gz "
    "--lang-dir data/lang_bpe_500 --method greedy --method ctc_HLG --out-dir exp/rnnt/decode_test",
    "decode-transducer ... --method modified_beam --beam 8 --out-dir exp/rnnt/decode_dev",
    "decode-transducer --checkpoint exp/rnnt/avg-4-5.pt --nna-config conf/nna/harsh.yaml "
    "--calib-cuts exp/fbank/dev/cuts.jsonl.gz ...   # float model on the NNA's integer path (PTQ)",
])
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Model checkpoint (.pt).")
@click.option("--cuts", required=True, help="CutSet with features (compute-features output).")
@click.option("--lang-dir", required=True,
              help="Lang directory (prepare-lang output). With an open-vocabulary one (prepare-lang "
                   "--open-vocab), fast_beam_LG and ctc_HLG* output words outside the lexicon, spelled "
                   "by the tokens of the best path.")
@click.option("--method", "methods", multiple=True, default=("greedy",), type=click.Choice(METHODS),
              help="Decoding method; repeat for several (one output subdirectory each).")
@click.option("--out-dir", required=True, help="Writes <out-dir>/<method>/{hyp.txt,ref.txt,scores.txt,rtf.json}.")
@click.option("--beam", default=4, type=int, help="modified_beam: hypotheses kept.")
@click.option("--fast-beam", default=20.0, type=float, help="fast_beam: log-prob beam of k2's search.")
@click.option("--max-states", default=64, type=int, help="fast_beam: states kept per frame.")
@click.option("--max-contexts", default=8, type=int, help="fast_beam: decoder contexts per frame.")
@click.option("--search-beam", default=20.0, type=float, help="ctc_*: intersect_dense_pruned search beam.")
@click.option("--output-beam", default=8.0, type=float, help="ctc_*: lattice output beam.")
@click.option("--num-paths", default=100, type=int, help="ctc_HLG_nbest, ctc_HLG_rnnt: paths sampled.")
@click.option("--nbest-scale", default=0.5, type=float,
              help="ctc_HLG_nbest, ctc_HLG_rnnt: lattice score scale for sampling.")
@click.option("--nbest-prune", default=1e-3, type=click.FloatRange(min=0, max=1, max_open=True), show_default=True,
              help="ctc_HLG_nbest, ctc_HLG_rnnt: lattice arcs whose posterior is below this are removed before "
                   "the n-best (0: none; a large HLG's lattices otherwise need gigabytes).")
@click.option("--rnnt-scale", default=0.5, type=float, show_default=True,
              help="ctc_HLG_rnnt: weight of the transducer's log-likelihood added to each n-best candidate's "
                   "lattice score.")
@click.option("--rnnt-nbest", default=10, type=click.IntRange(min=1), show_default=True,
              help="ctc_HLG_rnnt: candidates rescored, those with the best lattice scores.")
@click.option("--lm-scale", default=1.0, type=float, help="ctc_HLG*: scale of the n-gram LM in HLG.")
@click.option("--lg-lm-scale", default=0.01, type=float, show_default=True,
              help="fast_beam_LG: scale of the n-gram LM in LG (the transducer has its own LM; at 1 the LG "
                   "search deleted words: asr1 dev WER 39.0 vs 28.6 at 0.01, RESULTS.md).")
@click.option("--lg-unk-penalty", default=-1.0, type=float, show_default=True,
              help="fast_beam_LG with an open-vocabulary lang: per-piece penalty (natural log) of a word "
                   "spelled by tokens (the lang's unk_penalty is HLG's; asr1 dev: RESULTS.md).")
@click.option("--lg-fallback/--no-lg-fallback", default=True,
              help="fast_beam_LG: decode an utterance without LG when no word sequence of LG explains it "
                   "(a word outside the lexicon); without, it keeps the best partial path.")
@click.option("--vtln-warps", default="", metavar="LIST",
              help="Test-time VTLN: comma-separated frequency-warp factors (e.g. 0.8,0.85,0.9,0.95,1,1.05,1.1); "
                   "each speaker's is the one under which the greedy hypotheses of --vtln-utts of its utterances "
                   "are most likely per frame; written to <out-dir>/spk2warp and applied to every method.")
@click.option("--spk2warp", "spk2warp_file", default=None, type=click.Path(dir_okay=False),
              help="Test-time VTLN with these factors ('speaker factor' lines, e.g. the spk2warp of an earlier "
                   "--vtln-warps run on the same cuts) instead of estimating them.")
@click.option("--vtln-utts", default=10, type=click.IntRange(min=1), help="Utterances per speaker for the VTLN estimate.")
@click.option("--max-duration", default=300.0, type=float, help="Seconds of audio per batch.")
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda"]), help="Device.")
@click.option("--num-threads", default=1, type=int, help="torch threads (RTF is measured with these).")
@click.option("--nna-config", default=None, type=click.Path(dir_okay=False),
              help="NNA profile yaml: decode on the NNA's integer path. A float checkpoint is then post-training "
                   "quantization (needs --calib-cuts); an accelerator-aware checkpoint uses its recorded profile "
                   "and ranges (and decodes on the integer path even without this option).")
@click.option("--calib-cuts", default=None, help="CutSet with features and text (e.g. dev) to calibrate activation "
                                                  "ranges for post-training quantization.")
@click.option("--calib-utts", default=200, type=int, help="Utterances of --calib-cuts used for calibration.")
@click.option("--nna-mode", default="int", type=click.Choice(["int", "fake", "float"]),
              help="Emulated models: the integer path, the fake-quantized training forward, or float.")
def main(checkpoint, cuts, lang_dir, methods, out_dir, beam, fast_beam, max_states, max_contexts, search_beam,
         output_beam, num_paths, nbest_scale, nbest_prune, rnnt_scale, rnnt_nbest, lm_scale, lg_lm_scale, lg_unk_penalty, lg_fallback, vtln_warps, spk2warp_file, vtln_utts, max_duration, device, num_threads, nna_config, calib_cuts,
         calib_utts, nna_mode):
    """Decode with greedy / beam / k2 fast beam search, or the CTC head with k2 lattices."""
    from sltk.decode.lang import load_lang

    torch.set_num_threads(num_threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device")
    dev = torch.device(device)
    model = load_model(checkpoint).to(dev).eval()
    lang = load_lang(lang_dir)
    if lang.vocab_size != model.cfg.vocab_size:
        raise UserError(f"lang dir {lang_dir} has {lang.vocab_size} tokens but the model {model.cfg.vocab_size}")
    cutset = load_cuts(cuts, "decoding")
    nna = setup_nna(model, lang, nna_config, load_cuts(calib_cuts, "calibration") if calib_cuts else None,
                    calib_utts=calib_utts, mode=nna_mode, max_duration=max_duration)
    if nna:
        log.info("decoding on an emulated NNA: %s", nna)
    opts = DecodeOptions(beam=beam, fast_beam=fast_beam, max_states=max_states, max_contexts=max_contexts,
                         search_beam=search_beam, output_beam=output_beam, num_paths=num_paths,
                         nbest_scale=nbest_scale, nbest_prune=nbest_prune, rnnt_scale=rnnt_scale, rnnt_nbest=rnnt_nbest,
                         lm_scale=lm_scale, lg_lm_scale=lg_lm_scale, lg_unk_penalty=lg_unk_penalty,
                         lg_fallback=lg_fallback)
    spk2warp = None
    if vtln_warps and spk2warp_file:
        raise UserError("give --vtln-warps (estimate the factors) or --spk2warp (use these), not both")
    if spk2warp_file:
        spk2warp = _read_spk2warp(spk2warp_file)
        vtln_warps = f"from {spk2warp_file}"
    if vtln_warps and not spk2warp_file:
        try:
            grid = sorted({float(w) for w in vtln_warps.split(",") if w.strip()})
        except ValueError:
            raise UserError(f"--vtln-warps must be comma-separated numbers, got {vtln_warps!r}") from None
        if not grid or not all(0.5 <= w <= 2.0 for w in grid):
            raise UserError(f"--vtln-warps: factors must lie in [0.5, 2], got {vtln_warps!r}")
        t0 = time.perf_counter()
        spk2warp = estimate_warps(model, lang, cutset, grid, max_utts=vtln_utts, max_duration=max_duration,
                                  device=dev, progress=progress)
        vtln_s = time.perf_counter() - t0
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_table(Path(out_dir) / "spk2warp", ((k, f"{v:g}") for k, v in sorted(spk2warp.items())))
        hist = {w: sum(1 for v in spk2warp.values() if v == w) for w in grid}
        log.info("VTLN: %d speakers in %.1f s, warp factors chosen %s", len(spk2warp), vtln_s,
                 ", ".join(f"{w:g}: {n}" for w, n in hist.items() if n))
    n_done = 0
    for method in methods:
        dec = Decoder(model, method, lang, opts, dev)
        res = decode_cuts(dec, cutset, max_duration=max_duration, progress=progress, spk2warp=spk2warp)
        out = Path(out_dir) / method
        out.mkdir(parents=True, exist_ok=True)
        write_table(out / "hyp.txt", res["hyps"].items())
        write_table(out / "ref.txt", res["refs"].items())
        write_table(out / "scores.txt", ((k, f"{v:.4f}") for k, v in res["scores"].items()))
        rtf = res["decode_s"] / max(1e-9, res["audio_s"])
        with atomic_open(out / "rtf.json") as f:
            json.dump({"method": method, "checkpoint": str(checkpoint), "lang_dir": str(lang_dir) if lang_dir else None,
                       "lm_scale": lm_scale, "lg_lm_scale": lg_lm_scale, "lg_unk_penalty": lg_unk_penalty, "rnnt_scale": rnnt_scale, "rnnt_nbest": rnnt_nbest, "utterances": len(res["hyps"]), "audio_s": round(res["audio_s"], 3),
                       "decode_s": round(res["decode_s"], 3), "rtf": round(rtf, 5), "num_threads": num_threads,
                       "device": device, "nna": nna or None, "vtln_warps": vtln_warps or None,
                       **({"vtln_estimate_s": round(vtln_s, 3)} if spk2warp and not spk2warp_file else {}),
                       **({"lg_fallbacks": getattr(dec, "fallbacks", 0)} if method == "fast_beam_LG" else {})},
                      f, indent=2)
        empty = sum(1 for h in res["hyps"].values() if not h)
        fb = f", {getattr(dec, 'fallbacks', 0)} decoded without LG (no in-lexicon path)" \
            if method == "fast_beam_LG" and opts.lg_fallback else ""
        log.info("%s: %d utterances, RTF %.4f (%.1f s for %.1f s of audio), %d empty hypotheses%s",
                 method, len(res["hyps"]), rtf, res["decode_s"], res["audio_s"], empty, fb)
        n_done += len(res["hyps"])
    summary(n_done, len(cutset) * len(methods), 0, extra=f"methods {', '.join(methods)} in {out_dir}")


if __name__ == "__main__":
    main()
