"""Compute features for a corpus and store them as lhotse (and optionally Kaldi) archives.

The driver behind ``compute-features``. Layout of a features directory::

    FEATS_DIR/features.json          the options the features were computed with
    FEATS_DIR/feats.<job>.lca        lilcom-chunky archive of job <job> (lhotse storage)
    FEATS_DIR/feats.<job>.ark        Kaldi float matrices of job <job> (with write_kaldi)
    FEATS_DIR/parts/cuts.<job>.jsonl.gz   the cuts job <job> finished (rewritten atomically)
    FEATS_DIR/parts/feats.<job>.scp       their Kaldi index (with write_kaldi)
    FEATS_DIR/cuts.jsonl.gz          the merged CutSet with features, sorted by cut id
    FEATS_DIR/cmvn.json              global feature statistics (with cmvn_stats)

Jobs run in a process pool (one torch thread each), every job appending to its own
archives. A job checkpoints now and then: it flushes its archives, then atomically
rewrites its Kaldi index and its partial manifest. A rerun keeps what the partial manifests
list (truncating each archive after its last listed entry, dropping what a killed run wrote
past its last checkpoint) and computes only the rest, so a killed or partly failed run
resumes where it stopped. Failed utterances (unreadable audio, ...) are warnings, counted,
and retried by the next run; more than ``max_failed_percent`` of them fails the run.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import logging
import multiprocessing
import os
import queue as queue_mod
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch

# lhotse is imported here, before any worker is forked, so that workers share it.
from lhotse import AudioSource, CutSet, Features, MonoCut, Recording, RecordingSet
from lhotse.augmentation import Speed
from lhotse.features.io import LilcomChunkyWriter
from lhotse.utils import fastcopy, perturb_num_samples

from sltk.audio.features import FeatureComputer, FeatureOptions
from sltk.audio.io import AudioError, AudioInfo, read_audio, read_cut_audio
from sltk.data.kaldi import DataDir, c_sorted
from sltk.data.kaldi_ark import ArkWriter, scp_end_offsets
from sltk.data.lhotse_io import to_lhotse
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open, read_table, write_table
from sltk.utils.progress import progress

log = logging.getLogger("sltk")

CONFIG_NAME = "features.json"
CUTS_NAME = "cuts.jsonl.gz"
CMVN_NAME = "cmvn.json"
_OUR_FILES = re.compile(r"^(feats\.\d+\.(lca|ark)|cuts\.jsonl\.gz|cmvn\.json|features\.json)$")


@dataclass
class ExtractConfig:
    """What to compute and how (everything but the input and output paths)."""

    options: FeatureOptions = field(default_factory=FeatureOptions)
    channel: int = -1                     # -1: mono audio expected
    speed_perturb: Tuple[float, ...] = ()  # extra copies, e.g. (0.9, 1.1)
    nj: int = 1
    lilcom_tick_power: int = -5           # lilcom precision: multiples of 2**tick_power
    write_kaldi: Optional[str] = None     # directory for feats.scp and utt2num_frames
    cmvn_stats: bool = False
    max_failed_percent: float = 5.0
    overwrite: bool = False
    checkpoint_s: float = 30.0            # at least this long between checkpoints of a job

    def stored_config(self) -> dict:
        """What must not change between a run and its resumption."""
        return {**self.options.to_dict(), "channel": self.channel,
                "lilcom_tick_power": self.lilcom_tick_power}


@dataclass
class ExtractResult:
    total: int            # utterances asked for
    done: int             # utterances with features now (resumed ones included)
    failed: int
    resumed: int          # utterances whose features a previous run had computed
    num_cuts: int         # cuts in the manifest (speed-perturbed copies included)
    cuts_path: Optional[Path]
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (utterance, message)


def sp_id(cut_id: str, factor: float) -> str:
    """The id lhotse's ``perturb_speed`` gives a copy (``<id>_sp<factor>``)."""
    return f"{cut_id}_sp{factor}"


def parse_speed_perturb(text: str) -> Tuple[float, ...]:
    """``"0.9,1.1"`` -> (0.9, 1.1); empty -> ()."""
    if not text or not str(text).strip():
        return ()
    out = []
    for tok in str(text).split(","):
        try:
            f = float(tok)
        except ValueError:
            raise UserError(f"--speed-perturb: {tok.strip()!r} is not a number") from None
        if not (0.1 <= f <= 10.0) or f == 1.0:
            raise UserError(f"--speed-perturb: factor {f} must be in [0.1, 10] and not 1")
        if f not in out:
            out.append(f)
    return tuple(out)


# ---------------------------------------------------------------------- manifests on disk
class _Entry:
    """One cut of a manifest as its JSON line, with the few fields a merge looks at."""

    __slots__ = ("line", "storage_path", "storage_key", "num_frames")

    def __init__(self, line: str, d: Optional[dict] = None):
        self.line = line.rstrip("\n")
        feats = (d if d is not None else json.loads(self.line)).get("features") or {}
        self.storage_path = feats.get("storage_path")
        self.storage_key = feats.get("storage_key")
        self.num_frames = feats.get("num_frames")

    @classmethod
    def of(cls, cut) -> "_Entry":
        d = cut.to_dict()
        return cls(json.dumps(d, ensure_ascii=False), d)


def write_lines(lines: Iterable[str], path: PathLike) -> int:
    """Write JSON lines as a gzipped manifest, atomically; returns the number written."""
    n = 0
    with atomic_open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
            for line in lines:
                gz.write(line.encode("utf-8") + b"\n")
                n += 1
    return n


def read_entries(path: PathLike) -> Dict[str, _Entry]:
    """cut id -> :class:`_Entry` of a manifest written by :func:`write_lines`."""
    out = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    out[d["id"]] = _Entry(line, d)
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise UserError(f"cannot read cut manifest {path}: {e}") from None
    return out


def read_cuts(path: PathLike) -> List:
    try:
        return list(CutSet.from_file(path))
    except Exception as e:
        raise UserError(f"cannot read cut manifest {path}: {str(e).splitlines()[0] if str(e) else e}") from None


def _lca_end(key: str) -> int:
    """Byte after a lilcom-chunky entry whose storage key is ``offset,size1,size2,...``."""
    parts = [int(p) for p in key.split(",")]
    return sum(parts)


def _job_paths(feats_dir: Path, job: int) -> Dict[str, Path]:
    return {
        "lca": feats_dir / f"feats.{job}.lca",
        "ark": feats_dir / f"feats.{job}.ark",
        "cuts": feats_dir / "parts" / f"cuts.{job}.jsonl.gz",
        "scp": feats_dir / "parts" / f"feats.{job}.scp",
    }


def _existing_jobs(feats_dir: Path) -> List[int]:
    jobs = set()
    for p in (feats_dir / "parts").glob("cuts.*.jsonl.gz"):
        m = re.match(r"^cuts\.(\d+)\.jsonl\.gz$", p.name)
        if m:
            jobs.add(int(m.group(1)))
    return sorted(jobs)


def _kept_cuts(feats_dir: Path, job: int, kaldi: bool) -> Tuple[Dict[str, _Entry], Dict[str, str]]:
    """The cuts (and Kaldi index entries) of a job's last checkpoint that a rerun keeps:
    those in its partial manifest (and, when writing Kaldi archives, in its index too)."""
    paths = _job_paths(feats_dir, job)
    if not paths["cuts"].is_file():
        return {}, {}
    cuts = {k: e for k, e in read_entries(paths["cuts"]).items()
            if e.storage_key and e.storage_path and Path(e.storage_path).name == paths["lca"].name}
    scp: Dict[str, str] = {}
    if kaldi:
        scp = dict(read_table(paths["scp"])) if paths["scp"].is_file() else {}
        cuts = {k: c for k, c in cuts.items() if k in scp}
        scp = {k: v for k, v in scp.items() if k in cuts}
    return cuts, scp


# ---------------------------------------------------------------------- audio sources
class _KaldiSource:
    """Utterances of a Kaldi data directory."""

    def __init__(self, d: DataDir, channel: int):
        self.d = d
        self.channel = channel

    def ids(self) -> List[str]:
        return self.d.utt_ids

    def for_job(self, ids: List[str]) -> "_KaldiSource":
        """The source restricted to one job's utterances (keeps per-checkpoint work small)."""
        return _KaldiSource(self.d.subset(ids), self.channel)

    def load(self, utt: str, sample_rate: int) -> Tuple[np.ndarray, Tuple[AudioInfo, float, float]]:
        if self.d.segments is not None:
            reco, start, end = self.d.segments[utt]
        else:
            reco, start, end = utt, 0.0, None
        if reco not in self.d.wav_scp:
            raise AudioError(f"recording {reco} of utterance {utt} is not in wav.scp")
        samples, info = read_audio(self.d.wav_scp[reco], start, end, self.channel, sample_rate)
        return samples, (info, start, len(samples) / info.sampling_rate)

    def cuts(self, meta: Dict[str, Tuple[AudioInfo, float, float]]) -> Dict[str, object]:
        """Cuts (without features) of the utterances in ``meta`` (utt -> what load returned)."""
        ch = max(self.channel, 0)
        recs = {}
        for utt, (info, _, _) in meta.items():
            reco = self.d.recording_of(utt)
            if reco not in recs:
                channels = list(range(info.num_channels))
                recs[reco] = Recording(
                    id=reco, sources=[AudioSource(type=info.source_type, channels=channels, source=info.source)],
                    sampling_rate=info.sampling_rate, num_samples=info.num_samples,
                    duration=info.duration, channel_ids=channels)
        rec_set = RecordingSet.from_recordings(recs.values())
        _, sups = to_lhotse(self.d.subset(meta), recordings=rec_set)
        out = {}
        for sup in sups:
            _, start, duration = meta[sup.id]
            if sup.channel != ch:
                sup = fastcopy(sup, channel=ch)
            out[sup.id] = MonoCut(id=sup.id, start=start, duration=duration, channel=ch,
                                  recording=recs[sup.recording_id], supervisions=[sup])
        return out


class _CutSource:
    """Cuts of a lhotse CutSet (mono cuts with recordings)."""

    def __init__(self, cuts: Dict[str, object]):
        self.by_id = cuts

    def ids(self) -> List[str]:
        return c_sorted(self.by_id)

    def for_job(self, ids: List[str]) -> "_CutSource":
        return self

    def load(self, cut_id: str, sample_rate: int):
        cut = self.by_id[cut_id]
        if type(cut).__name__ not in ("MonoCut", "DataCut"):
            raise AudioError(f"cut {cut_id} is a {type(cut).__name__}; only mono cuts are supported")
        return read_cut_audio(cut, sample_rate), None

    def cuts(self, meta: Dict[str, object]) -> Dict[str, object]:
        return {i: fastcopy(self.by_id[i], features=None) for i in meta}


# ---------------------------------------------------------------------- one job
@dataclass
class _Job:
    index: int
    items: List[Tuple[str, Tuple[float, ...]]]  # (utterance/cut id, speed factors to compute; 1.0 = original)


def _features_manifest(cut, shape: Tuple[int, int], opts: FeatureOptions, lca: str, key: str):
    return Features(type=f"sltk-{opts.feature_type}", num_frames=int(shape[0]),
                    num_features=int(shape[1]), frame_shift=opts.frame_shift_s,
                    sampling_rate=int(cut.sampling_rate), start=cut.start, duration=cut.duration,
                    storage_type="lilcom_chunky", storage_path=lca, storage_key=key,
                    recording_id=cut.recording_id, channels=cut.channel)


def run_job(job: _Job, source, cfg: ExtractConfig, feats_dir: Path) -> Iterator[tuple]:
    """Compute one job's features; yields ("ok", id), ("fail", id, message), and at last
    ("end", job index).

    A speed-perturbed copy is computed from the utterance's audio resampled with lhotse's
    ``Speed`` transform and cut to the length lhotse gives the perturbed cut, i.e. what
    ``cut.perturb_speed(f).load_audio()`` returns for a whole-recording cut (for a segment
    lhotse resamples the recording, so the first and last few samples may differ)."""
    torch.set_num_threads(1)
    opts = cfg.options
    sr = int(opts.sample_frequency)
    kaldi = cfg.write_kaldi is not None
    paths = _job_paths(feats_dir, job.index)
    paths["cuts"].parent.mkdir(parents=True, exist_ok=True)

    kept, scp = _kept_cuts(feats_dir, job.index, kaldi)
    # Drop what a killed run appended after its last checkpoint.
    lca_end = max((_lca_end(e.storage_key) for e in kept.values()), default=0)
    truncated = _truncate(paths["lca"], lca_end)
    if kaldi:
        truncated |= _truncate(paths["ark"], max(scp_end_offsets(scp).values(), default=0))

    source = source.for_job([i for i, _ in job.items])
    comp = FeatureComputer(opts)
    lca_name = str(paths["lca"])
    writer = LilcomChunkyWriter(lca_name, tick_power=cfg.lilcom_tick_power,
                                mode="ab" if paths["lca"].exists() else "wb")
    ark = ArkWriter(paths["ark"], "ab" if paths["ark"].exists() else "wb") if kaldi else None
    built = dict(kept)                # cut id -> _Entry of the cut with features
    pending: Dict[str, tuple] = {}    # utterance -> (load meta, {factor: (feats shape, key)})
    last_ckpt = time.time()
    ckpt_cost = 0.0
    dirty = truncated or not paths["cuts"].is_file()

    def checkpoint():
        nonlocal last_ckpt, ckpt_cost, dirty
        if not (pending or dirty):
            return
        t0 = time.time()
        if pending:
            base = source.cuts({u: m for u, (m, _) in pending.items()})
            for utt, (_, outs) in pending.items():
                for factor, (shape, key, rx) in outs.items():
                    c = base[utt] if factor == 1.0 else base[utt].perturb_speed(factor)
                    feats_meta = _features_manifest(c, shape, opts, lca_name, key)
                    built[c.id] = _Entry.of(fastcopy(c, features=feats_meta))
                    if rx is not None:
                        scp[c.id] = rx
            pending.clear()
        writer.file.flush()
        os.fsync(writer.file.fileno())
        if ark is not None:
            ark.flush()
            write_table(paths["scp"], scp.items())
        write_lines((built[k].line for k in c_sorted(built)), paths["cuts"])
        last_ckpt = time.time()
        ckpt_cost = last_ckpt - t0
        dirty = False

    try:
        for utt, factors in job.items:
            try:
                samples, meta = source.load(utt, sr)
                outs = {}
                for factor in factors:
                    if factor == 1.0:
                        x = samples
                    else:  # as lhotse's load_audio() of the perturbed cut does
                        x = Speed(factor=factor)(samples[None, :], sr)[0]
                        x = x[:perturb_num_samples(len(samples), factor)]
                    feats = comp(x).numpy()
                    cid = utt if factor == 1.0 else sp_id(utt, factor)
                    if feats.shape[0] == 0:
                        raise AudioError(f"{cid}: {len(x)} samples are too short for one frame")
                    outs[factor] = (feats, cid)
            except Exception as e:  # one bad utterance is a warning, as in Kaldi
                msg = str(e) if isinstance(e, AudioError) else f"{type(e).__name__}: {e}"
                yield ("fail", utt, msg)
                continue
            written = {}
            for factor, (feats, cid) in outs.items():
                # The Kaldi archive first: lilcom quantizes the array it compresses in place.
                rx = ark.write(cid, feats) if ark is not None else None
                key = writer.write(cid, feats)
                written[factor] = (feats.shape, key, rx)
            pending[utt] = (meta, written)
            yield ("ok", utt)
            if time.time() - last_ckpt > max(cfg.checkpoint_s, 5 * ckpt_cost):
                checkpoint()
        checkpoint()
    finally:
        writer.close()
        if ark is not None:
            ark.close()
    yield ("end", job.index)


def _truncate(path: Path, size: int) -> bool:
    """Cut ``path`` to ``size`` bytes if longer; whether it was."""
    if path.exists() and path.stat().st_size > size:
        with open(path, "r+b") as f:
            f.truncate(size)
        return True
    return False


# ---------------------------------------------------------------------- the pool
_WORKER: dict = {}


def _init_worker(q, source, cfg, feats_dir) -> None:
    torch.set_num_threads(1)
    _WORKER.update(q=q, source=source, cfg=cfg, feats_dir=feats_dir)


def _pool_job(job: _Job) -> None:
    q = _WORKER["q"]
    try:
        for ev in run_job(job, _WORKER["source"], _WORKER["cfg"], _WORKER["feats_dir"]):
            q.put(ev)
    except BaseException:
        q.put(("error", job.index, traceback.format_exc()))


def _mp_context():
    # fork shares the (possibly large) corpus description with the workers for free; the
    # parent has run no torch computation yet, so no thread pool is forked half-way.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")


def _run_pool(jobs: List[_Job], source, cfg: ExtractConfig, feats_dir: Path) -> Iterator[tuple]:
    ctx = _mp_context()
    q = ctx.Queue()
    ex = concurrent.futures.ProcessPoolExecutor(
        max_workers=len(jobs), mp_context=ctx, initializer=_init_worker,
        initargs=(q, source, cfg, feats_dir))
    try:
        futures = [ex.submit(_pool_job, j) for j in jobs]
        ended = 0
        while ended < len(jobs):
            try:
                ev = q.get(timeout=1.0)
            except queue_mod.Empty:
                for f in futures:
                    if f.done() and f.exception() is not None:
                        raise RuntimeError(f"a feature job died: {f.exception()!r}")
                if all(f.done() for f in futures):
                    try:  # the last events may still be in the pipe
                        ev = q.get(timeout=10.0)
                    except queue_mod.Empty:
                        raise RuntimeError("feature jobs ended without reporting") from None
                else:
                    continue
            if ev[0] == "end":
                ended += 1
            elif ev[0] == "error":
                raise RuntimeError(f"feature job {ev[1]} failed:\n{ev[2]}")
            else:
                yield ev
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------- the driver
def _check_config(feats_dir: Path, cfg: ExtractConfig) -> None:
    path = feats_dir / CONFIG_NAME
    want = cfg.stored_config()
    if cfg.overwrite:
        _clean(feats_dir)
    elif path.is_file():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise UserError(f"{path} is not valid JSON; remove it or use --overwrite") from None
        diff = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
        if diff:
            k = diff[0]
            raise UserError(f"{feats_dir} holds features computed with other options ({k}: "
                            f"{have.get(k)!r} there, {want.get(k)!r} now); use another directory "
                            "or --overwrite")
    elif _existing_jobs(feats_dir):
        raise UserError(f"{feats_dir} holds partial features but no {CONFIG_NAME}; use --overwrite")
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(want, f, indent=2, sort_keys=True)
        f.write("\n")


def _clean(feats_dir: Path) -> None:
    """Remove what an earlier run wrote (our file names only)."""
    if (feats_dir / "parts").is_dir():
        shutil.rmtree(feats_dir / "parts")
    for p in feats_dir.iterdir() if feats_dir.is_dir() else []:
        if p.is_file() and _OUR_FILES.match(p.name):
            p.unlink()


def load_source(data_dir: Optional[PathLike], cuts_path: Optional[PathLike], channel: int):
    if (data_dir is None) == (cuts_path is None):
        raise UserError("give either a Kaldi data directory or --cuts, not both")
    if data_dir is not None:
        d = DataDir.read(data_dir)
        if not d.utt2spk:
            raise UserError(f"{Path(data_dir) / 'utt2spk'} is empty")
        for utt in d.utt_ids:
            reco = d.recording_of(utt)
            if reco not in d.wav_scp:
                raise UserError(f"{Path(data_dir) / 'wav.scp'} has no recording {reco} (utterance {utt}); "
                                "run fix-data-dir")
        return _KaldiSource(d, channel)
    if not Path(cuts_path).is_file():
        raise UserError(f"cut manifest {cuts_path} does not exist")
    cuts = {}
    for c in read_cuts(cuts_path):
        if c.id in cuts:
            raise UserError(f"{cuts_path}: duplicate cut id {c.id}")
        cuts[c.id] = c
    if not cuts:
        raise UserError(f"{cuts_path} holds no cuts")
    return _CutSource(cuts)


def compute_features(feats_dir: PathLike, data_dir: Optional[PathLike] = None,
                     cuts_path: Optional[PathLike] = None,
                     cfg: Optional[ExtractConfig] = None) -> ExtractResult:
    """Compute (or resume computing) the features of every utterance; see the module doc."""
    cfg = cfg or ExtractConfig()
    feats_dir = Path(feats_dir)
    if data_dir is not None and Path(data_dir).resolve() == feats_dir.resolve():
        raise UserError(f"FEATS_DIR must not be the data directory {data_dir} (use --write-kaldi "
                        f"{data_dir} for a feats.scp there)")
    source = load_source(data_dir, cuts_path, cfg.channel)
    feats_dir.mkdir(parents=True, exist_ok=True)
    _check_config(feats_dir, cfg)
    kaldi = cfg.write_kaldi is not None
    factors = (1.0,) + tuple(cfg.speed_perturb)
    ids = source.ids()

    # What earlier runs finished.
    kept: Dict[str, _Entry] = {}
    for j in _existing_jobs(feats_dir):
        kept.update(_kept_cuts(feats_dir, j, kaldi)[0])
    todo: List[Tuple[str, Tuple[float, ...]]] = []
    for i in ids:
        missing = tuple(f for f in factors if (i if f == 1.0 else sp_id(i, f)) not in kept)
        if missing:
            todo.append((i, missing))
    resumed = len(ids) - len(todo)
    nj = max(1, min(cfg.nj, len(todo)))
    if resumed:
        log.info("%d of %d utterances already have features in %s (skipped)", resumed, len(ids), feats_dir)
    if todo:
        log.info("computing %s features of %d utterances%s with %d job(s)", cfg.options.feature_type,
                 len(todo), f" (+ speed perturbation {','.join(map(str, cfg.speed_perturb))})"
                 if cfg.speed_perturb else "", nj)

    bounds = [round(k * len(todo) / nj) for k in range(nj + 1)]
    jobs = [_Job(k + 1, todo[bounds[k]:bounds[k + 1]]) for k in range(nj) if bounds[k + 1] > bounds[k]]
    if not jobs:
        events: Iterator[tuple] = iter(())
    elif len(jobs) == 1:
        events = (ev for ev in run_job(jobs[0], source, cfg, feats_dir) if ev[0] != "end")
    else:
        events = _run_pool(jobs, source, cfg, feats_dir)

    failures: List[Tuple[str, str]] = []
    for ev in progress(events, total=len(todo), desc="compute-features", unit="utt"):
        if ev[0] == "fail":
            failures.append((ev[1], ev[2]))
            log.warning("skipping %s: %s", ev[1], ev[2])

    total, failed = len(ids), len(failures)
    result = ExtractResult(total=total, done=total - failed, failed=failed, resumed=resumed,
                           num_cuts=0, cuts_path=None, failures=failures)
    if failed * 100.0 > cfg.max_failed_percent * total:
        return result  # the caller reports; no merged manifest that a later stage would trust

    # Merge the partial manifests into one, in cut id order.
    wanted = {i if f == 1.0 else sp_id(i, f) for i in ids for f in factors}
    merged: Dict[str, _Entry] = {}
    merged_scp: Dict[str, str] = {}
    for j in _existing_jobs(feats_dir):
        cuts, scp = _kept_cuts(feats_dir, j, kaldi)
        merged.update({k: c for k, c in cuts.items() if k in wanted})
        merged_scp.update({k: v for k, v in scp.items() if k in wanted})
    order = c_sorted(merged)
    result.num_cuts = write_lines((merged[k].line for k in order), feats_dir / CUTS_NAME)
    result.cuts_path = feats_dir / CUTS_NAME
    log.info("wrote %d cuts with features to %s", result.num_cuts, result.cuts_path)
    if kaldi:
        kdir = Path(cfg.write_kaldi)
        kdir.mkdir(parents=True, exist_ok=True)
        write_table(kdir / "feats.scp", merged_scp.items())
        write_table(kdir / "utt2num_frames", ((k, str(merged[k].num_frames)) for k in order))
        log.info("wrote %s and utt2num_frames", kdir / "feats.scp")
    if cfg.cmvn_stats:
        stats = feature_stats(CutSet.from_jsonl_lazy(feats_dir / CUTS_NAME))
        with atomic_open(feats_dir / CMVN_NAME, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
        log.info("wrote global feature statistics of %d frames to %s", stats["count"], feats_dir / CMVN_NAME)
    return result


def feature_stats(cuts: Iterable, max_cuts: Optional[int] = None) -> dict:
    """Global statistics of the stored features of ``cuts`` (the first ``max_cuts`` of them):
    frame count, per-dimension sum and sum of squares (float64), and the mean and standard
    deviation they give. This is what ``FEATS_DIR/cmvn.json`` holds."""
    count = 0
    total = sq = None
    for i, c in enumerate(cuts):
        if max_cuts is not None and i >= max_cuts:
            break
        f = c.load_features().astype(np.float64)
        if total is None:
            total = np.zeros(f.shape[1])
            sq = np.zeros(f.shape[1])
        count += f.shape[0]
        total += f.sum(0)
        sq += (f * f).sum(0)
    if total is None or count == 0:
        raise UserError("no features to compute statistics of")
    mean = total / count
    var = np.maximum(sq / count - mean * mean, 1e-20)
    return {"count": int(count), "dim": int(total.shape[0]), "sum": total.tolist(), "sumsq": sq.tolist(),
            "mean": mean.tolist(), "std": np.sqrt(var).tolist()}


def read_cmvn_stats(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 arrays from a ``cmvn.json`` written by :func:`compute_features`."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        mean = np.asarray(d["mean"], dtype=np.float32)
        std = np.asarray(d["std"], dtype=np.float32)
    except FileNotFoundError:
        raise UserError(f"CMVN statistics {path} do not exist") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a cmvn.json of compute-features ({e})") from None
    return mean, std
