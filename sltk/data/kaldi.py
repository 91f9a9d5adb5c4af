"""Kaldi data directories: read, write, validate, fix, split, subset.

A data directory holds text tables keyed by utterance or recording id, one ``key value``
line each, sorted in C-locale byte order:

=============  ==================================================  ===========
file           line                                                required
=============  ==================================================  ===========
wav.scp        ``<reco-id> <path>`` or ``<reco-id> <command> |``   yes
utt2spk        ``<utt-id> <speaker-id>``                           yes
spk2utt        ``<speaker-id> <utt-id> ...`` (derived from utt2spk) written
text           ``<utt-id> <transcript>``                           no
segments       ``<utt-id> <reco-id> <start-s> <end-s>``            no
spk2gender     ``<speaker-id> m|f``                                no
utt2*          any other per-utterance table (utt2dur, utt2voice,  no
               utt2accent, utt2synth, utt2intent, utt2slots, ...)
=============  ==================================================  ===========

Without ``segments`` every utterance is a whole recording and its id is the recording id.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open, read_table, write_table

Segment = Tuple[str, float, float]  # recording id, start (s), end (s)

# Per-utterance tables that are not metadata (handled by dedicated fields).
_CORE = ("wav.scp", "utt2spk", "spk2utt", "text", "segments", "spk2gender")


def c_sorted(keys: Iterable[str]) -> List[str]:
    """Sort as ``LC_ALL=C sort`` does: by UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def format_time(x: float) -> str:
    """Seconds as the shortest decimal that reads back to the same float (no exponent)."""
    s = repr(float(x))
    if "e" in s or "E" in s:
        s = f"{x:.9f}".rstrip("0").rstrip(".")
    elif s.endswith(".0"):
        s = s[:-2]
    return s


@dataclass
class DataDir:
    """A Kaldi data directory in memory. Tables are dicts keyed by utterance id
    (``segments``, ``text``, ``utt2spk``, ``extra[name]``) or recording id (``wav_scp``)."""

    wav_scp: Dict[str, str] = field(default_factory=dict)
    utt2spk: Dict[str, str] = field(default_factory=dict)
    text: Optional[Dict[str, str]] = None
    segments: Optional[Dict[str, Segment]] = None
    spk2gender: Optional[Dict[str, str]] = None
    extra: Dict[str, Dict[str, str]] = field(default_factory=dict)
    # problems noticed while reading (unsorted, duplicate keys, malformed lines)
    read_problems: List[str] = field(default_factory=list, repr=False, compare=False)
    spk2utt_file: Optional[Dict[str, List[str]]] = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ basics
    @property
    def utt_ids(self) -> List[str]:
        return c_sorted(self.utt2spk)

    @property
    def spk2utt(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for utt in self.utt_ids:
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return {s: out[s] for s in c_sorted(out)}

    def __len__(self) -> int:
        return len(self.utt2spk)

    def recording_of(self, utt: str) -> str:
        return self.segments[utt][0] if self.segments is not None else utt

    # ------------------------------------------------------------------ read / write
    @classmethod
    def read(cls, path: PathLike) -> "DataDir":
        """Read a data directory. Raises :class:`UserError` when it is missing or malformed."""
        d = Path(path)
        if not d.is_dir():
            raise UserError(f"data directory {d} does not exist")
        for req in ("wav.scp", "utt2spk"):
            if not (d / req).is_file():
                raise UserError(f"data directory {d} has no {req}")
        out = cls()
        out.wav_scp = out._read(d / "wav.scp")
        out.utt2spk = out._read(d / "utt2spk", one_token=True)
        if (d / "text").is_file():
            out.text = out._read(d / "text")
        if (d / "segments").is_file():
            out.segments = {}
            for utt, rest in out._read(d / "segments").items():
                parts = rest.split()
                try:
                    if len(parts) != 3:
                        raise ValueError
                    out.segments[utt] = (parts[0], float(parts[1]), float(parts[2]))
                except ValueError:
                    raise UserError(f"{d / 'segments'}: bad line for {utt}: expected "
                                    "'<utt> <reco> <start> <end>'") from None
        if (d / "spk2gender").is_file():
            out.spk2gender = out._read(d / "spk2gender", one_token=True)
        if (d / "spk2utt").is_file():
            out.spk2utt_file = {k: v.split() for k, v in out._read(d / "spk2utt").items()}
        for f in sorted(d.iterdir()):
            if f.is_file() and f.name.startswith("utt2") and f.name not in _CORE and f.name != "utt2spk":
                out.extra[f.name] = out._read(f)
        return out

    def _read(self, path: Path, one_token: bool = False) -> Dict[str, str]:
        table: Dict[str, str] = {}
        prev = None
        try:
            for key, value in read_table(path):
                if key in table:
                    self.read_problems.append(f"{path.name}: duplicate key {key}")
                    continue
                if one_token and len(value.split()) != 1:
                    raise UserError(f"{path}: line for {key} must have exactly one value, got {value!r}")
                if prev is not None and key.encode() < prev.encode():
                    if not any(p.startswith(f"{path.name}: not sorted") for p in self.read_problems):
                        self.read_problems.append(f"{path.name}: not sorted (LC_ALL=C sort) at key {key}")
                prev = key
                table[key] = value
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text") from None
        return table

    def write(self, path: PathLike) -> None:
        """Write every table sorted (C locale), each file atomically; spk2utt derived."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        write_table(d / "wav.scp", self.wav_scp.items())
        write_table(d / "utt2spk", self.utt2spk.items())
        write_table(d / "spk2utt", ((s, " ".join(u)) for s, u in self.spk2utt.items()))
        if self.text is not None:
            write_table(d / "text", self.text.items())
        if self.segments is not None:
            write_table(d / "segments", ((u, f"{r} {format_time(s)} {format_time(e)}")
                                         for u, (r, s, e) in self.segments.items()))
        if self.spk2gender is not None:
            write_table(d / "spk2gender", self.spk2gender.items())
        for name, table in self.extra.items():
            write_table(d / name, table.items())
        # Remove stale optional tables that this DataDir no longer has.
        for name in ("text", "segments", "spk2gender"):
            if getattr(self, name) is None and (d / name).exists():
                (d / name).unlink()

    # ------------------------------------------------------------------ checks
    def validate(self) -> List[str]:
        """Everything wrong with the directory (Kaldi's validate_data_dir.sh); empty if valid."""
        problems = list(self.read_problems)
        utts = set(self.utt2spk)
        if not utts:
            problems.append("utt2spk is empty")
        if self.spk2utt_file is not None and self.spk2utt_file != self.spk2utt:
            problems.append("spk2utt does not match utt2spk")
        if self.text is not None:
            miss = utts - set(self.text)
            if miss:
                problems.append(f"text: {len(miss)} utterances have no transcript, e.g. {c_sorted(miss)[0]}")
            extra = set(self.text) - utts
            if extra:
                problems.append(f"text: {len(extra)} utterances not in utt2spk, e.g. {c_sorted(extra)[0]}")
            empty = [u for u, t in self.text.items() if not t.strip()]
            if empty:
                problems.append(f"text: {len(empty)} empty transcripts, e.g. {c_sorted(empty)[0]}")
        if self.segments is not None:
            miss = utts ^ set(self.segments)
            if miss:
                problems.append(f"segments: {len(miss)} utterances differ from utt2spk, e.g. {c_sorted(miss)[0]}")
            for utt, (reco, s, e) in self.segments.items():
                if reco not in self.wav_scp:
                    problems.append(f"segments: recording {reco} of {utt} is not in wav.scp")
                    break
            bad = [u for u, (_, s, e) in self.segments.items() if not (0 <= s < e)]
            if bad:
                problems.append(f"segments: {len(bad)} segments with start < 0 or end <= start, e.g. {bad[0]}")
            used = {r for r, _, _ in self.segments.values()}
            unused = set(self.wav_scp) - used
            if unused:
                problems.append(f"wav.scp: {len(unused)} recordings have no segment, e.g. {c_sorted(unused)[0]}")
        else:
            miss = utts ^ set(self.wav_scp)
            if miss:
                problems.append(f"wav.scp: {len(miss)} ids differ from utt2spk (no segments file), "
                                f"e.g. {c_sorted(miss)[0]}")
        if self.spk2gender is not None:
            miss = set(self.utt2spk.values()) - set(self.spk2gender)
            if miss:
                problems.append(f"spk2gender: {len(miss)} speakers have no gender, e.g. {c_sorted(miss)[0]}")
        for name, table in self.extra.items():
            extra = set(table) - utts
            if extra:
                problems.append(f"{name}: {len(extra)} keys not in utt2spk, e.g. {c_sorted(extra)[0]}")
        # Kaldi needs speakers contiguous in utterance order (utt ids prefixed by the speaker).
        order = [self.utt2spk[u] for u in self.utt_ids]
        seen, last = set(), None
        for s in order:
            if s != last and s in seen:
                problems.append(f"utt2spk: utterances of speaker {s} are not contiguous when sorted "
                                "(prefix utterance ids with the speaker id)")
                break
            seen.add(s)
            last = s
        return problems

    def fixed(self) -> Tuple["DataDir", List[str]]:
        """A consistent copy (Kaldi's fix_data_dir.sh): keep the utterances present in every
        table, drop empty transcripts and unused recordings. Returns (copy, what was dropped)."""
        keep = set(self.utt2spk)
        notes = []

        def restrict(why: str, allowed: set) -> None:
            nonlocal keep
            gone = keep - allowed
            if gone:
                notes.append(f"dropped {len(gone)} utterances {why}, e.g. {c_sorted(gone)[0]}")
            keep &= allowed

        if self.text is not None:
            restrict("without transcript", {u for u, t in self.text.items() if t.strip()})
        if self.segments is not None:
            restrict("without a valid segment", {u for u, (r, s, e) in self.segments.items()
                                                 if r in self.wav_scp and 0 <= s < e})
        else:
            restrict("without audio in wav.scp", set(self.wav_scp))
        if self.spk2gender is not None:
            restrict("whose speaker has no gender", {u for u, s in self.utt2spk.items() if s in self.spk2gender})
        out = self.subset(keep)
        dropped_recos = len(self.wav_scp) - len(out.wav_scp)
        if dropped_recos and self.segments is not None:
            notes.append(f"dropped {dropped_recos} recordings without segments")
        return out, notes

    # ------------------------------------------------------------------ subsets and splits
    def subset(self, utts: Iterable[str]) -> "DataDir":
        """The directory restricted to ``utts`` (and the recordings and speakers they use)."""
        keep = set(utts) & set(self.utt2spk)
        out = DataDir()
        out.utt2spk = {u: self.utt2spk[u] for u in c_sorted(keep)}
        if self.segments is not None:
            out.segments = {u: self.segments[u] for u in out.utt2spk}
            recos = {r for r, _, _ in out.segments.values()}
        else:
            recos = keep
        out.wav_scp = {r: self.wav_scp[r] for r in c_sorted(recos) if r in self.wav_scp}
        if self.text is not None:
            out.text = {u: self.text[u] for u in out.utt2spk if u in self.text}
        if self.spk2gender is not None:
            spks = set(out.utt2spk.values())
            out.spk2gender = {s: g for s, g in self.spk2gender.items() if s in spks}
        out.extra = {name: {u: v for u, v in t.items() if u in keep} for name, t in self.extra.items()}
        return out

    def split(self, n: int, per_utt: bool = False) -> List["DataDir"]:
        """Split into ``n`` parts. By speaker (a speaker never crosses parts), balancing the
        number of utterances, unless ``per_utt`` or there are fewer speakers than ``n``; then
        contiguous blocks of utterances. Parts are never empty (``n`` <= #utterances)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        utts = self.utt_ids
        if n > len(utts):
            raise UserError(f"cannot split {len(utts)} utterances into {n} parts")
        spk2utt = self.spk2utt
        if per_utt or len(spk2utt) < n:
            bounds = [round(i * len(utts) / n) for i in range(n + 1)]
            return [self.subset(utts[bounds[i]:bounds[i + 1]]) for i in range(n)]
        # Contiguous speakers, cut where the running utterance count crosses i * total / n
        # (Kaldi's split_scp.pl --utt2spk), making sure no part is empty.
        spks = list(spk2utt)
        counts = [len(spk2utt[s]) for s in spks]
        total = sum(counts)
        cuts = [0]
        acc = 0
        for i, c in enumerate(counts):
            acc += c
            part = len(cuts)  # the part being filled
            remaining_spk = len(spks) - (i + 1)
            remaining_parts = n - part
            if part < n and (acc >= part * total / n or remaining_spk < remaining_parts):
                if remaining_spk >= remaining_parts:
                    cuts.append(i + 1)
        cuts = cuts[:n] + [len(spks)]
        while len(cuts) < n + 1:  # defensive: never happens when len(spks) >= n
            cuts.insert(-1, cuts[-2] + 1)
        parts = []
        for i in range(n):
            part_utts = [u for s in spks[cuts[i]:cuts[i + 1]] for u in spk2utt[s]]
            parts.append(self.subset(part_utts))
        return parts

    def copy(self) -> "DataDir":
        return copy.deepcopy(self)


def split_data_dir(src: PathLike, n: int, per_utt: bool = False) -> List[Path]:
    """Write ``src/split{n}[utt]/{1..n}`` (Kaldi's layout) unless it is newer than ``src``."""
    src = Path(src)
    d = DataDir.read(src)
    out = src / (f"split{n}utt" if per_utt else f"split{n}")
    paths = [out / str(i) for i in range(1, n + 1)]
    marker = out / ".done"
    newest = max(f.stat().st_mtime for f in src.iterdir() if f.is_file())
    if marker.exists() and marker.stat().st_mtime >= newest and all(p.is_dir() for p in paths):
        return paths
    for part, p in zip(d.split(n, per_utt=per_utt), paths):
        part.write(p)
    with atomic_open(marker) as f:
        f.write(f"{n}\n")
    return paths
