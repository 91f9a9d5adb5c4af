"""bias-decode: CTC decoding personalized with catalogs (contact lists, product names, ...)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import click
import torch

from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")


def _on_off(ctx, param, value):
    return value == "on"


@program(
    name="bias-decode",
    examples=[
        "bias-decode --checkpoint exp/context_adapter/final.pt --cuts data/test/cuts.jsonl.gz "
        "--lang-dir data/lang_bpe_500 --utt2catalog data/test/utt2catalog --out-dir exp/decode_biased",
        "bias-decode --checkpoint exp/model/avg.pt --cuts data/test/cuts.jsonl.gz --lang-dir data/lang_bpe_500 "
        "--catalog contacts.txt --method k2-lattice --encoder-bias off --boost 3 --out-dir exp/decode_k2",
    ],
)
@click.option("--checkpoint", required=True, help="Model checkpoint with a CTC head (with a context adapter for "
              "--encoder-bias on: train-context-adapter output).")
@click.option("--cuts", required=True, help="CutSet with features.")
@click.option("--lang-dir", required=True, help="Lang directory (bpe.model, tokens.txt).")
@click.option("--catalog", default=None, metavar="FILE",
              help="One catalog for every utterance: a phrase per line, optionally TAB and its own boost.")
@click.option("--utt2catalog", default=None, metavar="TABLE",
              help="A catalog per utterance: 'utt-id catalog-file' (paths relative to the table's directory).")
@click.option("--method", type=click.Choice(["prefix-beam", "k2-lattice"]), default="prefix-beam",
              help="CTC prefix beam search with the context graph, or k2 lattice decoding with the CTC topology "
                   "composed with the context graph.")
@click.option("--encoder-bias", type=click.Choice(["on", "off"]), default="on", callback=_on_off,
              help="Run the context adapter (attention over the catalog) before the CTC head.")
@click.option("--boost", type=float, default=2.0, help="Decoder biasing: bonus per matched subword token "
              "(0: no decoder biasing).")
@click.option("--adaptive", type=click.Choice(["on", "off"]), default="off", callback=_on_off,
              help="Gate each token's boost with the adapter's attention on catalog entries at the frame where "
                   "the token starts (needs --encoder-bias on; k2-lattice: applied to paths of the lattice).")
@click.option("--gate-threshold", type=float, default=0.5, help="Adaptive boosting: frames whose gate is below "
              "this get no boost; above it the boost is scaled by the gate.")
@click.option("--beam", type=int, default=8, help="prefix-beam: prefixes kept.")
@click.option("--prune-topk", type=int, default=0, help="prefix-beam: tokens tried per frame (0: the beam).")
@click.option("--search-beam", type=float, default=20.0, help="k2-lattice: search beam.")
@click.option("--output-beam", type=float, default=8.0, help="k2-lattice: output beam.")
@click.option("--num-paths", type=int, default=50, help="k2-lattice with --adaptive on: paths sampled from the "
              "lattice and rescored with the gated boost (besides the best paths with full, gated and no boost).")
@click.option("--max-duration", type=float, default=200.0, help="Seconds of audio per batch.")
@click.option("--num-threads", type=int, default=1, help="torch threads (the RTF is measured with these).")
@click.option("--out-dir", required=True, help="Writes hyp.txt, gates.txt (adaptive), rtf.json.")
def main(checkpoint, cuts, lang_dir, catalog, utt2catalog, method, encoder_bias, boost, adaptive, gate_threshold,
         beam, prune_topk, search_beam, output_beam, num_paths, max_duration, num_threads, out_dir):
    """Decode CUTS with the CTC head of a model, biased towards the phrases of a catalog: a
    global --catalog or a personal one per utterance (--utt2catalog)."""
    from lhotse.dataset import SimpleCutSampler

    from sltk.asr.checkpoint import load_model
    from sltk.asr.data import AsrBatches
    from sltk.asr.train import load_cuts
    from sltk.bias import encoder as E
    from sltk.bias.catalog import encode_catalog, read_catalog, read_utt2catalog
    from sltk.bias.context_graph import ContextGraph
    from sltk.decode.lang import load_lang
    from sltk.utils.io import atomic_open, write_table
    from sltk.utils.progress import progress

    if (catalog is None) == (utt2catalog is None):
        raise UserError("give exactly one of --catalog (one for all) and --utt2catalog (one per utterance)")
    if boost < 0:
        raise UserError(f"--boost must be >= 0, got {boost}")
    if adaptive and not encoder_bias:
        raise UserError("--adaptive on gates the boost with the context adapter's attention: it needs "
                        "--encoder-bias on")
    if beam < 1 or num_threads < 1:
        raise UserError("--beam and --num-threads must be >= 1")
    if num_paths < 0:
        raise UserError(f"--num-paths must be >= 0, got {num_paths}")
    torch.set_num_threads(num_threads)
    lang = load_lang(lang_dir)
    model = load_model(checkpoint).eval()
    if model.cfg.ctc_weight <= 0:
        log.warning("the CTC head of %s was trained with weight 0: results are meaningless", checkpoint)
    if encoder_bias and not E.has_context_adapter(model):
        raise UserError(f"{checkpoint} has no context adapter (train one with train-context-adapter), or use "
                        "--encoder-bias off")
    cutset = load_cuts(cuts, "test")

    H = None
    if method == "k2-lattice":
        from sltk.asr import loss as L

        if not L.k2_available():
            raise UserError("--method k2-lattice needs k2, which cannot be imported here")
        from sltk.bias.k2_bias import biased_ctc_graph

        H = lang.graph("H")
        HB_plain = biased_ctc_graph(H, ContextGraph([], 0.0), vocab_size=model.cfg.vocab_size)

    # catalogs: phrases -> BPE ids and, with a boost, a context graph (a k2 graph for k2-lattice);
    # built once per distinct catalog file (the last few kept: per-utterance catalogs)
    cache: Dict[str, tuple] = {}
    graph_s = 0.0

    def catalog_for(path: str):
        nonlocal graph_s
        if path not in cache:
            t0 = time.perf_counter()
            entries = encode_catalog(read_catalog(path), lang, source=path)
            graph = ContextGraph(entries, boost) if boost > 0 else None
            hb = None
            if method == "k2-lattice":
                hb = biased_ctc_graph(H, graph, vocab_size=model.cfg.vocab_size) if graph is not None else HB_plain
            if len(cache) >= 64:
                cache.pop(next(iter(cache)))
            cache[path] = ([ids for ids, _ in entries], graph, hb)
            graph_s += time.perf_counter() - t0
        return cache[path]

    per_utt: Optional[Dict[str, str]] = read_utt2catalog(utt2catalog) if utt2catalog else None
    ids_in = [c.id for c in cutset]
    if per_utt is not None:
        missing = [u for u in ids_in if u not in per_utt]
        if missing:
            raise UserError(f"{len(missing)} utterances of {cuts} have no catalog in {utt2catalog}, e.g. {missing[0]}")

    hyps: Dict[str, str] = {}
    gates_out: Dict[str, str] = {}
    audio = decode_s = 0.0
    ds = AsrBatches()
    sampler = SimpleCutSampler(cutset, max_duration=max_duration, shuffle=False)
    with torch.no_grad():
        for batch_cuts in progress(sampler, desc="bias-decode"):
            b = ds[batch_cuts]
            t0 = time.perf_counter()
            cats = [catalog_for(per_utt[u] if per_utt is not None else catalog) for u in b["ids"]]
            enc, enc_lens = model.encode(b["feats"], b["feat_lens"])
            gate = None
            if encoder_bias:
                E.set_catalog(model, [c[0] for c in cats])
                lp = model.ctc_logprobs(enc)
                gate = E.get_adapter(model).bias_gate
            else:
                with E.bypassed(model) if E.has_context_adapter(model) else _null():
                    lp = model.ctc_logprobs(enc)
            if method == "prefix-beam":
                from sltk.bias.prefix_beam import prefix_beam_search

                best = []
                for i in range(lp.size(0)):
                    T = int(enc_lens[i])
                    g = gate[i, :T] if (adaptive and gate is not None) else None
                    nb = prefix_beam_search(lp[i, :T], blank=model.blank_id, beam=beam, graph=cats[i][1], gate=g,
                                            gate_threshold=gate_threshold, prune_topk=prune_topk or None)
                    best.append(nb[0][0] if nb else [])
            else:
                from sltk.bias.k2_bias import k2_adaptive_decode, k2_biased_decode

                best = []
                for i in range(lp.size(0)):
                    if adaptive and gate is not None:
                        T = int(enc_lens[i])
                        best += k2_adaptive_decode(lp[i: i + 1], enc_lens[i: i + 1], cats[i][2], cats[i][1],
                                                   gate[i: i + 1, :T], gate_threshold=gate_threshold,
                                                   num_paths=num_paths, search_beam=search_beam,
                                                   output_beam=output_beam)
                    else:
                        best += k2_biased_decode(lp[i: i + 1], enc_lens[i: i + 1], cats[i][2],
                                                 search_beam=search_beam, output_beam=output_beam)
            decode_s += time.perf_counter() - t0
            audio += sum(c.duration for c in batch_cuts)
            for i, (u, h) in enumerate(zip(b["ids"], best)):
                hyps[u] = lang.tokens_to_text(h)
                if gate is not None:
                    T = int(enc_lens[i])
                    gates_out[u] = f"{float(gate[i, :T].mean()):.4f} {float(gate[i, :T].max()):.4f}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "hyp.txt", sorted(hyps.items()))
    if gates_out:
        write_table(out / "gates.txt", sorted(gates_out.items()))  # mean and max gate per utterance
    rtf = decode_s / max(1e-9, audio)
    with atomic_open(out / "rtf.json") as f:
        json.dump({"method": method, "encoder_bias": encoder_bias, "boost": boost, "adaptive": adaptive,
                   "utterances": len(hyps), "audio_s": round(audio, 3), "decode_s": round(decode_s, 3),
                   "graph_s": round(graph_s, 3), "rtf": round(rtf, 5), "num_threads": num_threads}, f, indent=1)
        f.write("\n")
    empty = sum(1 for h in hyps.values() if not h)
    summary(len(hyps), len(ids_in), 0, what="utterances decoded",
            extra=f"{method}, encoder bias {'on' if encoder_bias else 'off'}, boost {boost:g}"
                  f"{', adaptive' if adaptive else ''}; RTF {rtf:.3f} (graphs {graph_s:.1f} s); {empty} empty; "
                  f"wrote {out}/hyp.txt")


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()
