#!/usr/bin/env python3
"""Split a training set by speaker into private shards (one per PATE teacher) and a public set.

The privacy unit is the speaker: a speaker's utterances (and their speed-perturbed copies)
are all in one shard, or all public. Speakers are shuffled with --seed; the first
--num-public-spk become public, the others go to --num-shards shards (each speaker to the
shard with the fewest utterances so far, so shards are balanced). The public speakers'
original utterances (no perturbed copies: each would be one more query) are shuffled and
split into a labelled seed (--seed-utts, transcripts kept: the public-only model and every
other arm start from it) and the unlabelled queries (--num-queries of the rest, 0: all;
transcripts removed from their cuts, kept aside in ref_text to score the labels; the cuts in
random order, so that their first Q are a random subset).

Writes, under OUT_DIR: shard<k>/, private/ (all shards), public_seed/, public_queries/, each a
Kaldi data dir (a subset of --data-dir) with cuts.jsonl.gz (a subset of --cuts), and
split.json (speakers of each part, counts).
"""

import argparse
import json
import os
import random
import sys
from pathlib import Path

from lhotse import CutSet
from lhotse.utils import fastcopy

from sltk.data.kaldi import DataDir


def write_cuts(cuts, path: Path, keep_order: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp.jsonl.gz")
    CutSet.from_cuts(cuts if keep_order else sorted(cuts, key=lambda c: c.id)).to_file(tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="Kaldi data dir of the training set (utt2spk, text, ...)")
    ap.add_argument("--cuts", required=True, help="its cuts with features (may hold speed-perturbed copies)")
    ap.add_argument("--num-shards", type=int, required=True)
    ap.add_argument("--num-public-spk", type=int, required=True)
    ap.add_argument("--seed-utts", type=int, required=True, help="labelled public utterances")
    ap.add_argument("--num-queries", type=int, default=0, help="unlabelled public utterances (0: all the rest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("out_dir")
    a = ap.parse_args()

    d = DataDir.read(a.data_dir)
    spk2utt = d.spk2utt
    speakers = sorted(spk2utt)
    if a.num_shards < 2 or a.num_public_spk < 1:
        sys.exit("split_private_public.py: need --num-shards >= 2 and --num-public-spk >= 1")
    if len(speakers) < a.num_shards + a.num_public_spk:
        sys.exit(f"split_private_public.py: {a.data_dir} has {len(speakers)} speakers, fewer than "
                 f"{a.num_shards} shards + {a.num_public_spk} public speakers (the privacy unit is the speaker)")
    rng = random.Random(a.seed)
    rng.shuffle(speakers)
    public_spk = sorted(speakers[: a.num_public_spk])
    shards = [[] for _ in range(a.num_shards)]
    load = [0] * a.num_shards
    for s in speakers[a.num_public_spk:]:
        k = min(range(a.num_shards), key=lambda i: (load[i], i))
        shards[k].append(s)
        load[k] += len(spk2utt[s])
    public_utts = sorted(u for s in public_spk for u in spk2utt[s])
    rng.shuffle(public_utts)
    if a.seed_utts < 1 or a.seed_utts >= len(public_utts):
        sys.exit(f"split_private_public.py: --seed-utts {a.seed_utts}: the public speakers have {len(public_utts)} "
                 "utterances; leave at least one to query")
    seed_utts = public_utts[: a.seed_utts]
    queries = public_utts[a.seed_utts:]
    if a.num_queries > 0:
        if a.num_queries > len(queries):
            sys.exit(f"split_private_public.py: --num-queries {a.num_queries} > the {len(queries)} public utterances "
                     "left after the seed")
        queries = queries[: a.num_queries]

    cuts = list(CutSet.from_file(a.cuts))
    utt2spk = d.utt2spk

    def speaker(c):
        s = c.supervisions[0].speaker if c.supervisions else None
        return s or utt2spk.get(c.id)

    by_spk = {}
    for c in cuts:
        s = speaker(c)
        if s is None or s not in spk2utt:
            sys.exit(f"split_private_public.py: cut {c.id} has no speaker of {a.data_dir}")
        by_spk.setdefault(s, []).append(c)
    by_id = {c.id: c for c in cuts}
    missing = [u for u in public_utts if u not in by_id]
    if missing:
        sys.exit(f"split_private_public.py: {len(missing)} public utterances have no cut in {a.cuts}, "
                 f"e.g. {missing[0]}")

    out = Path(a.out_dir)
    parts = {f"shard{k + 1}": shards[k] for k in range(a.num_shards)}
    parts["private"] = [s for sh in shards for s in sh]
    summary = {"privacy_unit": "speaker: each speaker's utterances (and their speed-perturbed copies) are in one "
                               "shard, or public", "seed": a.seed, "public_speakers": public_spk, "parts": {}}
    for name, spks in parts.items():
        p = out / name
        p.mkdir(parents=True, exist_ok=True)
        utts = [u for s in spks for u in spk2utt[s]]
        d.subset(utts).write(p)
        part_cuts = [c for s in spks for c in by_spk.get(s, [])]
        write_cuts(part_cuts, p / "cuts.jsonl.gz")
        summary["parts"][name] = {"speakers": sorted(spks), "utterances": len(utts), "cuts": len(part_cuts)}
    for name, utts in (("public_seed", seed_utts), ("public_queries", queries)):
        p = out / name
        p.mkdir(parents=True, exist_ok=True)
        d.subset(utts).write(p)
        sel = [by_id[u] for u in utts]
        if name == "public_queries":  # unlabelled: the transcripts stay aside, to score the labels
            (p / "ref_text").write_text("".join(f"{u} {d.text[u]}\n" for u in sorted(utts)))
            sel = [fastcopy(c, supervisions=[fastcopy(s, text=None) for s in c.supervisions]) for c in sel]
        # queries in their shuffled order: the first Q of them are a random subset (fewer queries at small eps)
        write_cuts(sel, p / "cuts.jsonl.gz", keep_order=name == "public_queries")
        summary["parts"][name] = {"speakers": sorted({utt2spk[u] for u in utts}), "utterances": len(utts),
                                  "cuts": len(sel)}
    tmp = out / ".split.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, out / "split.json")
    print(f"split_private_public.py: {len(speakers) - a.num_public_spk} private speakers in {a.num_shards} shards "
          f"({min(load)}-{max(load)} utterances each), {a.num_public_spk} public speakers: {len(seed_utts)} "
          f"labelled seed + {len(queries)} unlabelled queries -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
