"""Lossless conversion between Kaldi data directories and lhotse manifests.

Mapping (Kaldi -> lhotse):

* ``wav.scp`` entry -> a :class:`lhotse.Recording` with one AudioSource: ``type="file"``
  for a path, ``type="command"`` for ``<command> |`` (the command without the pipe);
  sampling rate, channels and length are read from the audio header (the command is run).
* utterance -> a :class:`lhotse.SupervisionSegment` with ``id`` = utterance id,
  ``recording_id``/``start``/``duration`` from ``segments`` (the whole recording without it),
  ``text``, ``speaker`` (utt2spk), ``gender`` (spk2gender), and every other ``utt2<name>``
  table in ``custom[<name>]`` as the string it held.

``from_lhotse`` inverts it: ``segments`` is written only when some supervision is not a
whole recording of the same id.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Dict, Optional, Tuple

import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from sltk.data.kaldi import DataDir
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_path


def audio_info(entry: str) -> Tuple[str, str, int, int, int]:
    """(source type, source, sampling rate, channels, frames) of one wav.scp entry."""
    entry = entry.strip()
    if entry.endswith("|"):
        cmd = entry[:-1].strip()
        res = subprocess.run(["bash", "-c", cmd], capture_output=True)
        if res.returncode != 0:
            raise UserError(f"wav.scp command failed ({res.returncode}): {cmd}: "
                            f"{res.stderr.decode(errors='replace').strip()[:200]}")
        try:
            info = sf.info(io.BytesIO(res.stdout))
        except Exception as e:
            raise UserError(f"wav.scp command output is not audio: {cmd}: {e}") from None
        return "command", cmd, info.samplerate, info.channels, info.frames
    try:
        info = sf.info(entry)
    except Exception as e:
        raise UserError(f"cannot read audio {entry}: {str(e).splitlines()[0]}") from None
    return "file", entry, info.samplerate, info.channels, info.frames


def to_lhotse(d: DataDir, recordings: Optional[RecordingSet] = None) -> Tuple[RecordingSet, SupervisionSet]:
    """Convert a data directory. ``recordings`` may supply already-probed recordings by id."""
    # Look recordings up in dicts: a RecordingSet finds an id by scanning (quadratic here).
    given = {r.id: r for r in recordings} if recordings is not None else {}
    recs = []
    for reco, entry in d.wav_scp.items():
        if reco in given:
            recs.append(given[reco])
            continue
        kind, src, sr, ch, frames = audio_info(entry)
        recs.append(Recording(id=reco, sources=[AudioSource(type=kind, channels=list(range(ch)), source=src)],
                              sampling_rate=sr, num_samples=frames, duration=frames / sr,
                              channel_ids=list(range(ch))))
    rec_set = RecordingSet.from_recordings(recs)
    by_id = {r.id: r for r in recs}
    sups = []
    for utt, spk in d.utt2spk.items():
        if d.segments is not None:
            reco, start, end = d.segments[utt]
            duration = end - start
        else:
            reco, start, duration = utt, 0.0, by_id[utt].duration
        custom = {name[len("utt2"):]: table[utt] for name, table in d.extra.items() if utt in table}
        sups.append(SupervisionSegment(
            id=utt, recording_id=reco, start=start, duration=duration, channel=0,
            text=d.text.get(utt) if d.text is not None else None,
            speaker=spk,
            gender=d.spk2gender.get(spk) if d.spk2gender is not None else None,
            custom=custom or None,
        ))
    return rec_set, SupervisionSet.from_segments(sups)


def from_lhotse(recordings: RecordingSet, supervisions: SupervisionSet) -> DataDir:
    """Convert manifests back to a data directory (see the module doc for the mapping)."""
    d = DataDir()
    by_id = {r.id: r for r in recordings}
    for r in by_id.values():
        if len(r.sources) != 1:
            raise UserError(f"recording {r.id} has {len(r.sources)} sources; a wav.scp entry holds one")
        s = r.sources[0]
        if s.type == "file":
            d.wav_scp[r.id] = str(s.source)
        elif s.type == "command":
            d.wav_scp[r.id] = f"{s.source} |"
        else:
            raise UserError(f"recording {r.id}: audio source type {s.type!r} has no wav.scp form")
    segs = {}
    whole = True
    have_text = False
    genders: Dict[str, str] = {}
    for sup in supervisions:
        if sup.recording_id not in d.wav_scp:
            raise UserError(f"supervision {sup.id} refers to unknown recording {sup.recording_id}")
        d.utt2spk[sup.id] = sup.speaker or sup.id
        if sup.text is not None:
            have_text = True
        segs[sup.id] = (sup.recording_id, sup.start, sup.start + sup.duration)
        rec = by_id[sup.recording_id]
        if sup.id != sup.recording_id or sup.start != 0 or abs(sup.duration - rec.duration) > 1e-6:
            whole = False
        if sup.gender:
            genders[d.utt2spk[sup.id]] = sup.gender
        for k, v in (sup.custom or {}).items():
            d.extra.setdefault(f"utt2{k}", {})[sup.id] = str(v)
    if have_text:
        d.text = {s.id: s.text or "" for s in supervisions}
    if not whole:
        d.segments = segs
    if genders:
        d.spk2gender = genders
    return d


def write_manifests(recordings: RecordingSet, supervisions: SupervisionSet, out_dir: PathLike,
                    prefix: str = "") -> Tuple[Path, Path]:
    """Write ``<prefix>recordings.jsonl.gz`` and ``<prefix>supervisions.jsonl.gz`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{prefix}recordings.jsonl.gz", out / f"{prefix}supervisions.jsonl.gz")
    for manifest, path in zip((recordings, supervisions), paths):
        with atomic_path(path) as tmp:
            manifest.to_file(tmp.with_suffix(".jsonl.gz"))
            tmp.with_suffix(".jsonl.gz").replace(tmp)
    return paths


def read_manifests(recordings_path: PathLike, supervisions_path: PathLike) -> Tuple[RecordingSet, SupervisionSet]:
    for p in (recordings_path, supervisions_path):
        if not Path(p).is_file():
            raise UserError(f"manifest {p} does not exist")
    return (RecordingSet.from_file(recordings_path).to_eager(),
            SupervisionSet.from_file(supervisions_path).to_eager())
