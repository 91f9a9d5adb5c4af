"""compute-wer: word error rate of a hypothesis text against a reference text (Kaldi format)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Tuple

import click

from sltk.utils.cli import program, require_file, summary
from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, read_table

log = logging.getLogger("sltk")


def read_text_table(path: str, what: str) -> Dict[str, str]:
    """A Kaldi ``utt-id value`` table; duplicate ids are reported and the first one kept."""
    p = require_file(path, what)
    out: Dict[str, str] = {}
    dups: List[str] = []
    try:
        for key, value in read_table(p):
            if key in out:
                dups.append(key)
                continue
            out[key] = value
    except UnicodeDecodeError:
        raise UserError(f"{what} {p} is not UTF-8 text") from None
    if dups:
        log.warning("%s: %d duplicate utterance ids (first kept), e.g. %s", p, len(dups), dups[0])
    return out


def group_name(path: str, taken: set) -> str:
    name = Path(path).name
    if name.startswith("utt2") and len(name) > 4:
        name = name[4:]
    base, i = name, 2
    while name in taken:
        name = f"{base}{i}"
        i += 1
    taken.add(name)
    return name


def _read_terms(path: str, allow_empty: bool = False) -> List[str]:
    """Words or phrases, one per line (a catalog's optional TAB-separated boost is ignored),
    normalised like the transcripts; # comments and blank lines skipped."""
    from sltk.data.text_norm import normalize_text

    p = require_file(path, "terms file")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"terms file {p} is not UTF-8 text") from None
    words = [normalize_text(line.split("#", 1)[0].split("\t", 1)[0]) for line in lines]
    words = [w for w in words if w]
    if not words and not allow_empty:
        raise UserError(f"terms file {p} holds no words")
    return words


@program(
    name="compute-wer",
    examples=[
        "compute-wer data/test/text exp/ctc/decode_test/hyp.txt",
        "compute-wer data/test/text exp/ctc/decode_test/hyp.txt --out-dir exp/ctc/decode_test/scoring "
        "--group-by data/test/utt2voice --group-by data/test/utt2accent",
        "compute-wer --mode present data/test/text partial_hyp.txt",
        "compute-wer --terms data/new_words.txt data/test/text exp/adapter/decode_test/hyp.txt",
        "compute-wer --utt2terms data/test/utt2catalog data/test/text exp/bias/decode_test/hyp.txt",
    ],
)
@click.argument("ref_text")
@click.argument("hyp_text")
@click.option("--out-dir", default=None, metavar="DIR",
              help="Write wer.json, per_utt.txt, confusions.txt and wer_by_<name>.txt here.")
@click.option("--group-by", "group_by", multiple=True, metavar="FILE",
              help="Per-utterance metadata table (utt2voice, utt2accent, ...): WER per value. Repeatable.")
@click.option("--mode", type=click.Choice(["all", "present", "strict"]), default="all",
              help="all: a missing hypothesis counts as empty (deletions); present: score only "
                   "utterances with a hypothesis; strict: a missing hypothesis is an error.")
@click.option("--terms", default=None, metavar="FILE",
              help="Words or phrases, one per line (new words, a catalog): their recall, precision and F1 "
                   "(a %TERMS line; 'terms' in wer.json, per term in terms.txt).")
@click.option("--utt2terms", default=None, metavar="TABLE",
              help="Per-utterance terms: a table 'utt-id terms-file' (e.g. each utterance's personal catalog); "
                   "an utterance not in it uses --terms (or no terms).")
def main(ref_text, hyp_text, out_dir, group_by, mode, terms, utt2terms):
    """Word error rate of HYP_TEXT against REF_TEXT (Kaldi text files: utt-id transcript).

    Prints Kaldi's %WER and %SER lines on stdout.
    """
    from sltk.decode import scoring

    refs = read_text_table(ref_text, "reference text")
    hyps = read_text_table(hyp_text, "hypothesis text")
    groups_in: List[Tuple[str, Dict[str, str]]] = []
    taken: set = set()
    for path in group_by:
        groups_in.append((group_name(path, taken), read_text_table(path, "group-by table")))
    if not refs:
        raise UserError(f"reference text {ref_text} is empty")
    try:
        result = scoring.compute_wer(refs, hyps, mode=mode)
    except ValueError as e:
        raise UserError(f"{hyp_text}: {e} (--mode strict)") from None
    if result.missing_hyps:
        how = "counted as deletions" if mode == "all" else "not scored"
        log.warning("%d of %d references have no hypothesis in %s (%s), e.g. %s",
                    len(result.missing_hyps), len(refs), hyp_text, how, " ".join(result.missing_hyps[:5]))
    if result.extra_hyps:
        log.warning("%d hypotheses have no reference in %s (ignored), e.g. %s",
                    len(result.extra_hyps), ref_text, " ".join(result.extra_hyps[:5]))

    groups = {}
    for name, table in groups_in:
        unknown = [u.utt for u in result.utts if u.utt not in table]
        if unknown:
            log.warning("%s: %d scored utterances are not in the table (group <unknown>), e.g. %s",
                        name, len(unknown), unknown[0])
        groups[name] = result.by_group(table)
        log.info("WER by %s:\n%s", name, "\n".join(scoring.format_group_table(groups[name], name)))
    tstats = None
    if terms or utt2terms:
        words = _read_terms(terms) if terms else []
        per_utt = None
        if utt2terms:
            table = read_text_table(utt2terms, "utt2terms table")
            base = Path(utt2terms).parent
            cache: Dict[str, List[str]] = {}
            per_utt = {}
            for utt, f in table.items():
                path = f if Path(f).is_absolute() or Path(f).is_file() else str(base / f)
                if path not in cache:
                    cache[path] = _read_terms(path, allow_empty=True)
                per_utt[utt] = cache[path]
        scored = {u.utt: refs[u.utt] for u in result.utts}
        tstats = scoring.term_stats(scored, hyps, words, per_utt)
    subs, dels, ins = result.confusions()
    for what, c in (("substitutions", subs), ("deletions", dels), ("insertions", ins)):
        if c:
            top = ", ".join(f"{' -> '.join(k) if isinstance(k, tuple) else k} ({n})" for k, n in c.most_common(3))
            log.info("most frequent %s: %s", what, top)

    if out_dir:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        scoring.write_per_utt(d / "per_utt.txt", result)
        scoring.write_confusions(d / "confusions.txt", result)
        for name, table in groups.items():
            scoring.write_group_table(d / f"wer_by_{name}.txt", table, name)
        scoring.write_wer_json(d / "wer.json", result, groups, tstats)
        if tstats is not None:
            with atomic_open(d / "terms.txt", "w", encoding="utf-8") as f:
                f.write("# term ref hyp hits\n")
                for t, (nr, nh, k) in sorted(tstats.per_term.items()):
                    f.write(f"{t.replace(' ', '_')} {nr} {nh} {k}\n")
        log.info("wrote %s", ", ".join(["wer.json", "per_utt.txt", "confusions.txt"]
                                       + [f"wer_by_{n}.txt" for n in groups]) + f" in {d}")
    click.echo(result.total.wer_line())
    click.echo(result.total.ser_line())
    if tstats is not None:
        click.echo(tstats.line())
    click.echo(f"Scored {len(result.utts)} sentences, {len(result.missing_hyps)} not present in hyp.")
    summary(len(result.utts), len(refs), 0, what="utterances scored",
            extra=result.total.wer_line())


if __name__ == "__main__":
    main()
