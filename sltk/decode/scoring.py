"""Word error rate: alignment (kaldialign), totals, per-utterance details, confusions, groups.

Outputs follow Kaldi's scoring scripts: the ``%WER`` line of ``compute-wer``, the
per-utterance ``ref``/``hyp``/``op``/``#csid`` lines of ``wer_per_utt_details.pl``, and
the substitution / deletion / insertion counts of ``wer_ops_details.pl``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from sltk.utils.io import PathLike, atomic_open

EPS = "***"  # the gap symbol of an alignment (Kaldi's align-text --special-symbol)


@dataclass
class ErrorStats:
    """Error counts over a set of utterances."""

    ref_words: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    utts: int = 0
    utts_with_errors: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def correct(self) -> int:
        return self.ref_words - self.dels - self.subs

    @property
    def wer(self) -> float:
        """Percent; ``inf`` when there are errors but no reference words, 0 when neither."""
        if self.ref_words == 0:
            return math.inf if self.errors else 0.0
        return 100.0 * self.errors / self.ref_words

    @property
    def ser(self) -> float:
        return 100.0 * self.utts_with_errors / self.utts if self.utts else 0.0

    def add(self, other: "ErrorStats") -> None:
        self.ref_words += other.ref_words
        self.ins += other.ins
        self.dels += other.dels
        self.subs += other.subs
        self.utts += other.utts
        self.utts_with_errors += other.utts_with_errors

    def wer_line(self) -> str:
        """Kaldi's ``%WER 12.34 [ 123 / 1000, 10 ins, 40 del, 73 sub ]``."""
        return (f"%WER {self.wer:.2f} [ {self.errors} / {self.ref_words}, {self.ins} ins, "
                f"{self.dels} del, {self.subs} sub ]")

    def ser_line(self) -> str:
        return f"%SER {self.ser:.2f} [ {self.utts_with_errors} / {self.utts} ]"

    def to_dict(self) -> dict:
        wer = self.wer
        return {"wer": round(wer, 4) if math.isfinite(wer) else None, "ser": round(self.ser, 4),
                "errors": self.errors, "ref_words": self.ref_words, "ins": self.ins, "del": self.dels,
                "sub": self.subs, "corr": self.correct, "utts": self.utts,
                "utts_with_errors": self.utts_with_errors}


@dataclass
class UttResult:
    """The alignment of one utterance: ``(ref_word, hyp_word)`` pairs, EPS for a gap."""

    utt: str
    alignment: List[Tuple[str, str]]
    missing_hyp: bool = False

    @property
    def ops(self) -> List[str]:
        """C (correct), S (substitution), I (insertion), D (deletion) per aligned pair."""
        out = []
        for r, h in self.alignment:
            if r == EPS:
                out.append("I")
            elif h == EPS:
                out.append("D")
            else:
                out.append("C" if r == h else "S")
        return out

    @property
    def stats(self) -> ErrorStats:
        ops = self.ops
        s = ErrorStats(ref_words=sum(1 for o in ops if o != "I"), ins=ops.count("I"),
                       dels=ops.count("D"), subs=ops.count("S"), utts=1)
        s.utts_with_errors = 1 if s.errors else 0
        return s


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[Tuple[str, str]]:
    """Minimum-edit-distance alignment of two word sequences (kaldialign)."""
    import kaldialign

    if not ref and not hyp:
        return []
    return [tuple(p) for p in kaldialign.align(list(ref), list(hyp), EPS)]


@dataclass
class WerResult:
    """Everything :func:`compute_wer` found."""

    total: ErrorStats
    utts: List[UttResult]
    missing_hyps: List[str] = field(default_factory=list)  # refs without a hypothesis
    extra_hyps: List[str] = field(default_factory=list)  # hypotheses without a reference

    def by_group(self, utt2group: Dict[str, str], unknown: str = "<unknown>") -> Dict[str, ErrorStats]:
        """Error stats per group (``utt2group`` value; ``unknown`` for utterances not in it)."""
        out: Dict[str, ErrorStats] = {}
        for u in self.utts:
            g = utt2group.get(u.utt, unknown)
            out.setdefault(g, ErrorStats()).add(u.stats)
        return {g: out[g] for g in sorted(out, key=lambda s: s.encode("utf-8"))}

    def confusions(self) -> Tuple[Counter, Counter, Counter]:
        """Counters of substituted ``(ref, hyp)`` pairs, deleted ref words, inserted hyp words."""
        subs: Counter = Counter()
        dels: Counter = Counter()
        ins: Counter = Counter()
        for u in self.utts:
            for r, h in u.alignment:
                if r == EPS:
                    ins[h] += 1
                elif h == EPS:
                    dels[r] += 1
                elif r != h:
                    subs[(r, h)] += 1
        return subs, dels, ins


def compute_wer(refs: Dict[str, str], hyps: Dict[str, str], mode: str = "all") -> WerResult:
    """Score hypotheses against references (utt id -> transcript).

    ``mode`` (as Kaldi's compute-wer): ``all`` scores every reference, a missing hypothesis
    counting as empty (all deletions); ``present`` scores only references with a hypothesis;
    ``strict`` raises ValueError when a hypothesis is missing.
    """
    if mode not in ("all", "present", "strict"):
        raise ValueError(f"mode must be all, present or strict, got {mode!r}")
    missing = [u for u in refs if u not in hyps]
    extra = [u for u in hyps if u not in refs]
    if missing and mode == "strict":
        raise ValueError(f"{len(missing)} references have no hypothesis, e.g. {missing[0]}")
    total = ErrorStats()
    results = []
    for utt in sorted(refs, key=lambda s: s.encode("utf-8")):
        if utt not in hyps and mode == "present":
            continue
        r = UttResult(utt, align(refs[utt].split(), hyps.get(utt, "").split()), missing_hyp=utt not in hyps)
        total.add(r.stats)
        results.append(r)
    return WerResult(total=total, utts=results, missing_hyps=missing, extra_hyps=extra)


# ------------------------------------------------------------------------------ writers
def write_per_utt(path: PathLike, result: WerResult) -> None:
    """Kaldi's per-utterance details: ``ref``, ``hyp``, ``op`` lines with aligned columns and
    ``#csid`` (correct, substituted, inserted, deleted counts)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for u in result.utts:
            ops = u.ops
            widths = [max(len(r), len(h), 1) for r, h in u.alignment]
            ref = " ".join(r.ljust(w) for (r, _), w in zip(u.alignment, widths))
            hyp = " ".join(h.ljust(w) for (_, h), w in zip(u.alignment, widths))
            op = " ".join(o.ljust(w) for o, w in zip(ops, widths))
            s = u.stats
            f.write(f"{u.utt} ref  {ref}".rstrip() + "\n")
            f.write(f"{u.utt} hyp  {hyp}".rstrip() + ("  (missing)" if u.missing_hyp else "") + "\n")
            f.write(f"{u.utt} op   {op}".rstrip() + "\n")
            f.write(f"{u.utt} #csid {s.correct} {s.subs} {s.ins} {s.dels}\n")


def _by_count(c: Counter) -> List[Tuple[object, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))


def write_confusions(path: PathLike, result: WerResult) -> None:
    """Most frequent substitutions (ref hyp count), deletions and insertions (word count)."""
    subs, dels, ins = result.confusions()
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(f"# substitutions ({sum(subs.values())}): substitution REF HYP COUNT\n")
        for (r, h), c in _by_count(subs):
            f.write(f"substitution {r} {h} {c}\n")
        f.write(f"# deletions ({sum(dels.values())}): deletion REF COUNT\n")
        for w, c in _by_count(dels):
            f.write(f"deletion {w} {c}\n")
        f.write(f"# insertions ({sum(ins.values())}): insertion HYP COUNT\n")
        for w, c in _by_count(ins):
            f.write(f"insertion {w} {c}\n")


def format_group_table(groups: Dict[str, ErrorStats], title: str = "group") -> List[str]:
    """A padded table: group, WER, #words, #utts, #ins, #del, #sub (one string per line)."""
    rows = [[title, "WER", "#words", "#utts", "#ins", "#del", "#sub"]]
    for g, s in groups.items():
        rows.append([g, f"{s.wer:.2f}", str(s.ref_words), str(s.utts), str(s.ins), str(s.dels), str(s.subs)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def write_group_table(path: PathLike, groups: Dict[str, ErrorStats], title: str = "group") -> None:
    """Tab-separated: a header line, then ``group WER words utts ins del sub`` per group."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(f"# {title}\tWER\twords\tutts\tins\tdel\tsub\n")
        for g, s in groups.items():
            f.write(f"{g}\t{s.wer:.2f}\t{s.ref_words}\t{s.utts}\t{s.ins}\t{s.dels}\t{s.subs}\n")


def write_wer_json(path: PathLike, result: WerResult,
                   groups: Optional[Dict[str, Dict[str, ErrorStats]]] = None,
                   terms: Optional["TermStats"] = None) -> None:
    """Totals (and per-group stats, ``{table name: {group: stats}}``; term stats) as JSON."""
    out = {**result.total.to_dict(), "missing_hyps": len(result.missing_hyps),
           "extra_hyps": len(result.extra_hyps)}
    if groups:
        out["groups"] = {name: {g: s.to_dict() for g, s in table.items()} for name, table in groups.items()}
    if terms is not None:
        out["terms"] = terms.to_dict()
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


# ----------------------------------------------------------------------------- term recall / precision


@dataclass
class TermStats:
    """Occurrences of chosen terms (words or phrases: new words, catalog entries) in the
    references and hypotheses. Per utterance and term, ``min(ref count, hyp count)``
    occurrences are hits: a term said twice and recognised once is one hit and one miss;
    where in the utterance it was recognised is not checked."""

    ref: int = 0      # occurrences in the references
    hyp: int = 0      # occurrences in the hypotheses
    hits: int = 0
    per_term: Dict[str, Tuple[int, int, int]] = field(default_factory=dict)  # term -> (ref, hyp, hits)

    @property
    def recall(self) -> float:
        return self.hits / self.ref if self.ref else math.nan

    @property
    def precision(self) -> float:
        return self.hits / self.hyp if self.hyp else math.nan

    @property
    def f1(self) -> float:
        return 2 * self.hits / (self.ref + self.hyp) if self.ref + self.hyp else math.nan

    def line(self) -> str:
        pct = lambda x: "nan" if math.isnan(x) else f"{100 * x:.2f}"  # noqa: E731
        return (f"%TERMS recall {pct(self.recall)} [ {self.hits} / {self.ref} ], precision {pct(self.precision)} "
                f"[ {self.hits} / {self.hyp} ], F1 {pct(self.f1)}")

    def to_dict(self) -> Dict:
        nan = lambda x: None if math.isnan(x) else round(100 * x, 4)  # noqa: E731
        return {"ref": self.ref, "hyp": self.hyp, "hits": self.hits, "recall": nan(self.recall),
                "precision": nan(self.precision), "f1": nan(self.f1),
                "per_term": {t: {"ref": r, "hyp": h, "hits": k} for t, (r, h, k) in sorted(self.per_term.items())}}


def _count_phrase(tokens: Sequence[str], phrase: Sequence[str]) -> int:
    n = len(phrase)
    return sum(1 for i in range(len(tokens) - n + 1) if list(tokens[i:i + n]) == list(phrase))


def term_stats(refs: Dict[str, str], hyps: Dict[str, str], terms: Sequence[str],
               utt_terms: Optional[Dict[str, Sequence[str]]] = None) -> TermStats:
    """Recall, precision and F1 of ``terms`` (already normalised like the transcripts) over the
    utterances of ``refs``; a missing hypothesis counts as empty. ``utt_terms``: per-utterance
    term lists (a personal catalog per utterance) used instead of ``terms`` where given."""
    phrases = sorted({tuple(t.split()) for t in terms if t.split()})
    out = TermStats()
    per: Dict[str, List[int]] = {}
    for utt, ref in refs.items():
        r, h = ref.split(), hyps.get(utt, "").split()
        own = phrases
        if utt_terms is not None and utt in utt_terms:
            own = sorted({tuple(t.split()) for t in utt_terms[utt] if t.split()})
        for p in own:
            nr, nh = _count_phrase(r, p), _count_phrase(h, p)
            if nr or nh:
                c = per.setdefault(" ".join(p), [0, 0, 0])
                c[0] += nr
                c[1] += nh
                c[2] += min(nr, nh)
    for t, (nr, nh, k) in per.items():
        out.ref += nr
        out.hyp += nh
        out.hits += k
        if nr or nh:
            out.per_term[t] = (nr, nh, k)
    return out
