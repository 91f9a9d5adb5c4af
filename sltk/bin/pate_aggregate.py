"""pate-aggregate: label a public set by a noisy vote of teachers trained on private shards (PATE)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional

import click
import numpy as np
import torch

from sltk.asr.decode import METHODS
from sltk.privacy.accountant import CONVERSIONS
from sltk.privacy.pate import MECHANISMS, UNITS
from sltk.utils.cli import program, summary
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")


@program(
    name="pate-aggregate",
    examples=[
        "pate-aggregate exp/teachers/{1..10}/avg.pt --cuts data/public/cuts.jsonl.gz --lang-dir data/lang_bpe_500 "
        "--mechanism confident-gnmax --sigma 2 --sigma1 4 --threshold 8 --delta 1e-5 --out-dir data/public_pate",
        "pate-aggregate --teacher t1.pt --teacher t2.pt --teacher t3.pt --cuts public.jsonl.gz --lang-dir lang "
        "--mechanism gnmax --sigma 1 --unit token --nonblank-only --sigma1 1 --out-dir exp/pate_token",
        "pate-aggregate t*.pt --cuts public.jsonl.gz --lang-dir lang --mechanism lnmax --laplace-scale 20 "
        "--decode-method modified_beam --out-dir exp/pate_lnmax",
    ],
)
@click.argument("teachers", nargs=-1)
@click.option("--teacher", "teacher_opts", multiple=True, metavar="CKPT",
              help="A teacher checkpoint (repeatable; adds to the positional ones). One per disjoint private shard.")
@click.option("--cuts", required=True, help="CutSet of the public set, with features (its transcripts, if any, "
              "are only used to report the labels' WER).")
@click.option("--lang-dir", required=True, help="Lang directory (prepare-lang output) the teachers were trained with.")
@click.option("--mechanism", type=click.Choice(MECHANISMS), default="gnmax",
              help="gnmax: argmax of counts + N(0, sigma^2); lnmax: + Laplace(scale); confident-gnmax: answer only "
                   "when max count + N(0, sigma1^2) >= threshold, then GNMax.")
@click.option("--sigma", type=float, default=None, help="Std of the Gaussian vote noise (GNMax; Confident-GNMax's "
              "answer step).")
@click.option("--sigma1", type=float, default=None, help="Std of the threshold step's noise (Confident-GNMax; the "
              "non-blank gate of --nonblank-only).")
@click.option("--threshold", type=float, default=None, help="Confident-GNMax: threshold on the max vote count.")
@click.option("--laplace-scale", type=float, default=None, help="LNMax: scale b of the Laplace noise (eps = 2/b "
              "per query).")
@click.option("--unit", type=click.Choice(UNITS), default="utterance",
              help="utterance: teachers vote their 1-best transcripts, one query per utterance; token: a vote per "
                   "CTC frame over the vocabulary, then CTC collapse (every frame is a query: expensive).")
@click.option("--votes", type=click.Choice(["hard", "soft"]), default="hard",
              help="token unit: each teacher votes its frame argmax (hard) or its posterior vector (soft).")
@click.option("--nonblank-only", is_flag=True, help="token unit: vote only on frames that pass a noisy check "
              "'non-blank votes + N(0, sigma1^2) >= --blank-threshold' (accounted); the others are blank.")
@click.option("--blank-threshold", type=float, default=None,
              help="--nonblank-only: threshold on the non-blank votes [default: half the teachers].")
@click.option("--min-answered", type=float, default=1.0,
              help="token unit: keep an utterance when at least this fraction of its frames was answered "
                   "(Confident-GNMax leaves some unanswered; they become blank).")
@click.option("--delta", type=float, default=1e-5, help="delta of the (eps, delta) guarantee.")
@click.option("--conversion", type=click.Choice(CONVERSIONS), default="classic",
              help="RDP to (eps, delta): classic (Mironov 2017, as the PATE papers) or balle2020 (tighter).")
@click.option("--seed", type=int, default=0, help="Seed of the noise. A rerun with another seed asks every query "
              "again: its privacy cost adds to this one's.")
@click.option("--decode-method", type=click.Choice(METHODS), default="greedy",
              help="utterance unit: how the teachers decode their 1-best transcripts.")
@click.option("--beam", type=int, default=4, help="modified_beam: hypotheses kept.")
@click.option("--data-dependent/--no-data-dependent", default=True,
              help="Also compute the data-dependent eps (Papernot et al. 2018; not itself private).")
@click.option("--max-duration", type=float, default=300.0, help="Seconds of audio per batch.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Device for the teachers.")
@click.option("--num-threads", type=int, default=1, help="torch threads.")
@click.option("--out-dir", required=True, help="Writes a Kaldi data dir of the answered utterances (text = the "
              "labels), cuts.jsonl.gz (for train-transducer), privacy.json and votes.txt.")
def main(teachers, teacher_opts, cuts, lang_dir, mechanism, sigma, sigma1, threshold, laplace_scale, unit, votes,
         nonblank_only, blank_threshold, min_answered, delta, conversion, seed, decode_method, beam, data_dependent,
         max_duration, device, num_threads, out_dir):
    """Label the public CUTS with a noisy aggregate of TEACHERS' votes (PATE: GNMax, LNMax or
    Confident-GNMax), with Rényi-DP accounting of every query.

    votes.txt holds noiseless vote statistics of the private teachers (agreement = top count /
    teachers): diagnostics for the experimenter, not covered by the privacy guarantee. So is the
    data-dependent eps in privacy.json; its 'eps' (data-independent) is the formal guarantee.
    """
    from sltk.asr.train import load_cuts
    from sltk.decode.lang import load_lang
    from sltk.privacy.pate import NoisyAggregator

    paths = list(teachers) + list(teacher_opts)
    _check_options(paths, mechanism, sigma, sigma1, threshold, laplace_scale, unit, votes, nonblank_only,
                   blank_threshold, min_answered, delta, beam, num_threads)
    for p in paths:
        if not Path(p).is_file():
            raise UserError(f"teacher checkpoint {p} does not exist")
    dups = sorted({p for p in paths if paths.count(p) > 1})
    if dups:
        log.warning("teacher %s is given %d times: PATE's guarantee assumes one teacher per disjoint shard",
                    dups[0], paths.count(dups[0]))
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device")
    torch.set_num_threads(num_threads)
    dev = torch.device(device)
    lang = load_lang(lang_dir)
    cutset = load_cuts(cuts, "public")
    no_feats = [c.id for c in cutset if not c.has_features]
    if no_feats:
        raise UserError(f"{len(no_feats)} cuts of {cuts} have no features (run compute-features), e.g. {no_feats[0]}")
    if len(cutset) == 0:
        raise UserError(f"public cuts {cuts} are empty")
    n = len(paths)
    if blank_threshold is None:
        blank_threshold = n / 2

    agg = NoisyAggregator(mechanism, sigma=sigma, sigma1=sigma1, threshold=threshold, laplace_scale=laplace_scale,
                          seed=seed, num_voters=n, data_dependent=data_dependent)
    ids = sorted((c.id for c in cutset), key=lambda s: s.encode("utf-8"))
    labels: Dict[str, Optional[str]] = {}
    vote_lines: List[str] = []
    if unit == "utterance":
        hyps = [_teacher_transcripts(p, lang, cutset, decode_method, beam, max_duration, dev) for p in paths]
        from sltk.privacy.pate import aggregate_transcripts

        vote_lines.append("# utt-id agreement top-count candidates answered")
        for u in ids:
            v = aggregate_transcripts([h[u] for h in hyps], agg)
            labels[u] = v.label
            vote_lines.append(f"{u} {v.agreement:.4f} {v.top_count} {v.num_candidates} {int(v.label is not None)}")
    else:
        from sltk.privacy.pate import aggregate_frames

        frames = _teacher_frame_votes(paths, lang, cutset, votes, max_duration, dev)
        vote_lines.append("# utt-id agreement frames queried answered-frames answered")
        for u in ids:
            v = aggregate_frames(frames(u), agg, n, blank=lang.blank_id, nonblank_only=nonblank_only,
                                 blank_threshold=blank_threshold, min_answered=min_answered)
            labels[u] = None if v.ids is None else lang.tokens_to_text(v.ids)
            vote_lines.append(f"{u} {v.agreement:.4f} {v.frames} {v.queried} {v.answered} {int(v.ids is not None)}")

    answered = {u: t for u, t in labels.items() if t is not None}
    kept = {u: t.strip() for u, t in answered.items() if t.strip()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"unit": unit, "num_teachers": n, "teachers": paths, **agg.report(delta, conversion),
              "utterances": {"total": len(ids), "answered": len(answered), "kept": len(kept),
                             "empty": len(answered) - len(kept)},
              "privacy_unit": "one private example, hence one teacher's shard: an utterance, or a speaker when "
                              "the shards are split by speaker",
              "sensitivity": "one teacher changing its vote moves two counts by 1 (L2 sqrt(2), L1 2); the max "
                             "count by at most 1",
              "votes_txt": "noiseless vote statistics: private diagnostics, not covered by the guarantee"}
    if unit == "token":
        report.update(votes=votes, nonblank_only=nonblank_only, min_answered=min_answered,
                      queries_note="every frame asked is a query (the non-blank gate is a threshold step)")
        if nonblank_only:
            report["blank_threshold"] = blank_threshold
    else:
        report["decode_method"] = decode_method
    _write_outputs(out, cutset, kept, report, vote_lines)

    refs = {c.id: " ".join(s.text for s in c.supervisions if s.text) for c in cutset}
    wer = ""
    if kept and all(refs.get(u) for u in kept):
        from sltk.decode.scoring import compute_wer

        res = compute_wer({u: refs[u] for u in kept}, kept)
        wer = f"; labels vs the cuts' transcripts: {res.total.wer_line()}"
    e, ed = report["eps"], report["data_dependent"]["eps"]
    dt = report["delta_total"]
    if dt > delta:
        log.warning("open candidate sets (utterance unit): the guarantee holds with delta %.3g, not %g; use "
                    "confident-gnmax with a higher threshold or smaller sigma, or --unit token", dt, delta)
    summary(len(kept), len(ids), 0, what="utterances labelled",
            extra=f"{len(answered)} answered ({len(answered) - len(kept)} empty dropped); {mechanism}, unit {unit}, "
                  f"{report['queries']} queries: eps {_fmt(e)} at delta {dt:.3g} (data-dependent {_fmt(ed)}){wer}; "
                  f"wrote {out}")


def _fmt(x) -> str:
    return x if isinstance(x, str) else f"{x:.4g}"


def _check_options(paths, mechanism, sigma, sigma1, threshold, laplace_scale, unit, votes, nonblank_only,
                   blank_threshold, min_answered, delta, beam, num_threads) -> None:
    if len(paths) < 2:
        raise UserError(f"PATE needs at least 2 teacher checkpoints, got {len(paths)} (positional or --teacher)")
    if not 0 < delta < 1:
        raise UserError(f"--delta must be in (0, 1), got {delta}")
    if mechanism in ("gnmax", "confident-gnmax") and not (sigma is not None and sigma > 0):
        raise UserError(f"--mechanism {mechanism} needs --sigma > 0 (std of the vote noise)")
    if mechanism == "lnmax":
        if not (laplace_scale is not None and laplace_scale > 0):
            raise UserError("--mechanism lnmax needs --laplace-scale > 0")
        if sigma is not None:
            raise UserError("--sigma is for the Gaussian mechanisms; lnmax uses --laplace-scale")
    elif laplace_scale is not None:
        raise UserError(f"--laplace-scale is for lnmax, not --mechanism {mechanism}")
    if mechanism == "confident-gnmax":
        if threshold is None or not (sigma1 is not None and sigma1 > 0):
            raise UserError("--mechanism confident-gnmax needs --threshold and --sigma1 > 0")
    elif threshold is not None:
        raise UserError(f"--threshold is for confident-gnmax, not --mechanism {mechanism}")
    if unit == "utterance":
        if votes != "hard" or nonblank_only:
            raise UserError("--votes and --nonblank-only apply to --unit token")
    else:
        if nonblank_only and not (sigma1 is not None and sigma1 > 0):
            raise UserError("--nonblank-only needs --sigma1 > 0 (noise of the non-blank check)")
        if not 0 < min_answered <= 1:
            raise UserError(f"--min-answered must be in (0, 1], got {min_answered}")
    if sigma1 is not None and sigma1 <= 0:
        raise UserError(f"--sigma1 must be > 0, got {sigma1}")
    if blank_threshold is not None and not nonblank_only:
        raise UserError("--blank-threshold needs --nonblank-only")
    if beam < 1 or num_threads < 1:
        raise UserError("--beam and --num-threads must be >= 1")


def _load_teacher(path: str, lang, dev: torch.device):
    from sltk.asr.checkpoint import load_model

    model = load_model(path).to(dev).eval()
    if model.cfg.vocab_size != lang.vocab_size:
        raise UserError(f"teacher {path} has {model.cfg.vocab_size} tokens but the lang dir {lang.vocab_size}")
    return model


def _batches(cutset, max_duration: float):
    from lhotse.dataset import SimpleCutSampler

    from sltk.asr.data import AsrBatches

    ds = AsrBatches()
    for b in SimpleCutSampler(cutset, max_duration=max_duration, shuffle=False):
        yield ds[b]


def _teacher_transcripts(path: str, lang, cutset, method: str, beam: int, max_duration: float,
                         dev: torch.device) -> Dict[str, str]:
    """One teacher's 1-best transcript of every cut (teachers are loaded one at a time)."""
    from sltk.asr.decode import DecodeOptions, Decoder
    from sltk.utils.progress import progress

    model = _load_teacher(path, lang, dev)
    dec = Decoder(model, method, lang, DecodeOptions(beam=beam), dev)
    out: Dict[str, str] = {}
    for b in progress(_batches(cutset, max_duration), desc=f"teacher {Path(path).name}"):
        texts, _, _ = dec(b["feats"], b["feat_lens"])
        out.update(zip(b["ids"], texts))
    log.info("teacher %s: %d transcripts (%s)", path, len(out), method)
    return out


def _teacher_frame_votes(paths: List[str], lang, cutset, votes: str, max_duration: float, dev: torch.device):
    """Per-utterance (T, V) vote histograms over the teachers' CTC frames, built one teacher at a
    time (hard votes kept as frame argmaxes, soft votes summed); returns a lookup function."""
    V = lang.vocab_size
    argmaxes: Dict[str, List[np.ndarray]] = {}
    sums: Dict[str, np.ndarray] = {}
    first: Dict[str, int] = {}
    for path in paths:
        model = _load_teacher(path, lang, dev)
        if model.cfg.ctc_weight <= 0:
            log.warning("teacher %s was trained without its CTC head (ctc_weight 0): its token votes are noise", path)
        with torch.no_grad():
            for b in _batches(cutset, max_duration):
                enc, enc_lens = model.encode(b["feats"].to(dev), b["feat_lens"].to(dev))
                lp = model.ctc_logprobs(enc).float().cpu().numpy()
                for i, u in enumerate(b["ids"]):
                    T = int(enc_lens[i])
                    if first.setdefault(u, T) != T:
                        raise UserError(f"teachers {paths[0]} and {path} give {first[u]} and {T} encoder frames for "
                                        f"{u}: the token unit needs teachers with the same frame rate")
                    if votes == "hard":
                        argmaxes.setdefault(u, []).append(lp[i, :T].argmax(axis=1).astype(np.int32))
                    else:
                        sums[u] = sums.get(u, 0) + np.exp(lp[i, :T])
        log.info("teacher %s: CTC frame votes of %d utterances", path, len(first))
        del model

    def lookup(u: str) -> np.ndarray:
        if votes == "soft":
            return sums[u] if len(sums[u]) else np.zeros((0, V))
        T = first[u]
        hist = np.zeros((T, V))
        for a in argmaxes[u]:
            hist[np.arange(T), a] += 1
        return hist

    return lookup


def _write_outputs(out: Path, cutset, kept: Dict[str, str], report: Dict, vote_lines: List[str]) -> None:
    """data dir (text, utt2spk, spk2utt, wav.scp [+ segments] when the cuts have recordings),
    cuts.jsonl.gz with the labels, privacy.json, votes.txt."""
    from lhotse import CutSet, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.utils import fastcopy

    from sltk.data.kaldi import DataDir
    from sltk.data.lhotse_io import from_lhotse
    from sltk.utils.io import atomic_open, atomic_path, write_table

    by_id = {c.id: c for c in cutset}
    new_cuts, sups = [], []
    for u in sorted(kept, key=lambda s: s.encode("utf-8")):
        c = by_id[u]
        old = c.supervisions[0] if c.supervisions else None
        reco = c.recording_id if c.has_recording else (old.recording_id if old else u)
        if old is not None:
            sup = fastcopy(old, id=u, start=0.0, duration=c.duration, text=kept[u])
        else:
            sup = SupervisionSegment(id=u, recording_id=reco, start=0.0, duration=c.duration, channel=0, text=kept[u])
        new_cuts.append(fastcopy(c, supervisions=[sup]))
        sups.append(SupervisionSegment(id=u, recording_id=reco, start=c.start, duration=c.duration, channel=0,
                                       text=kept[u], speaker=old.speaker if old is not None else None))

    recs = {}
    have_audio = bool(new_cuts) and all(c.has_recording for c in new_cuts)
    if have_audio:
        for c in new_cuts:
            recs[c.recording.id] = c.recording
        if any(len(r.sources) != 1 or r.sources[0].type not in ("file", "command") for r in recs.values()):
            log.warning("some recordings are not single files or commands: no wav.scp written")
            have_audio = False
    if have_audio:
        d = from_lhotse(RecordingSet.from_recordings(recs.values()), SupervisionSet.from_segments(sups))
        problems = d.validate()
        if any("not contiguous" in p for p in problems):
            log.warning("speaker ids are not prefixes of the utterance ids: utt2spk maps each utterance to itself")
            d.utt2spk = {u: u for u in d.utt2spk}
        for p in d.validate():
            log.warning("%s: %s", out, p)
        d.write(out)
    else:
        if new_cuts:
            log.info("the cuts have no recordings: the audio is referenced by %s (no wav.scp)", out / "cuts.jsonl.gz")
        utt2spk = {s.id: s.speaker or s.id for s in sups}
        d = DataDir(utt2spk=utt2spk)
        write_table(out / "utt2spk", utt2spk.items())
        write_table(out / "spk2utt", ((s, " ".join(us)) for s, us in d.spk2utt.items()))
        write_table(out / "text", kept.items())
        for stale in ("wav.scp", "segments"):  # from an earlier run on cuts with recordings
            if (out / stale).exists():
                (out / stale).unlink()
    with atomic_path(out / "cuts.jsonl.gz") as tmp:
        path = tmp.with_suffix(".jsonl.gz")  # lhotse picks the format from the name
        CutSet.from_cuts(new_cuts).to_file(path)
        path.replace(tmp)
    with atomic_open(out / "privacy.json") as f:
        json.dump(report, f, indent=1, default=_json_default)
        f.write("\n")
    with atomic_open(out / "votes.txt", encoding="utf-8") as f:
        f.write("\n".join(vote_lines) + "\n")


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    raise TypeError(f"not JSON serialisable: {type(x)}")


if __name__ == "__main__":
    main()
