"""Reading audio robustly: a wav.scp entry (a file or a ``command |``), a segment of it, or a
lhotse cut, as float32 samples in [-1, 1].

Every failure (missing, unreadable, corrupt or empty audio, a segment outside the file, a
sample rate other than the expected one, several channels where one was expected, NaN
samples) raises :class:`AudioError` whose message names the file and the problem, so a
program can warn about one utterance and go on (Kaldi's per-utterance ``WARNING``).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from sltk.utils.errors import UserError

# A segment may end a little after its file (rounding of Kaldi's segment times, or the
# end of the last segment written as the nominal duration): clip silently up to this.
SEGMENT_END_TOLERANCE_S = 0.5


class AudioError(UserError):
    """Audio that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    """What the header said: enough to describe the recording in a lhotse manifest."""

    source_type: str  # "file" or "command" (lhotse AudioSource types)
    source: str       # the path, or the command without its trailing "|"
    sampling_rate: int
    num_channels: int
    num_samples: int

    @property
    def duration(self) -> float:
        return self.num_samples / self.sampling_rate


def _first_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    if not msg:
        return type(e).__name__
    # soundfile says "Error opening '<path>': <why>."; the caller names the file already.
    return re.sub(r"^Error opening .*?: ", "", msg[0]).rstrip(".")


def _open(entry: str) -> Tuple[sf.SoundFile, str, str]:
    """Open a wav.scp entry with soundfile: (file, source type, source)."""
    entry = entry.strip()
    if not entry:
        raise AudioError("empty wav.scp entry")
    if entry.endswith("|"):
        cmd = entry[:-1].strip()
        try:
            res = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise AudioError(f"audio command timed out: {cmd}") from None
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip().splitlines()
            raise AudioError(f"audio command failed (exit {res.returncode}): {cmd}"
                             + (f": {err[-1]}" if err else ""))
        if not res.stdout:
            raise AudioError(f"audio command produced no output: {cmd}")
        try:
            return sf.SoundFile(io.BytesIO(res.stdout)), "command", cmd
        except Exception as e:
            raise AudioError(f"output of audio command is not audio: {cmd}: {_first_line(e)}") from None
    if not os.path.exists(entry):
        if ":" in entry and os.path.exists(entry.rsplit(":", 1)[0]):
            raise AudioError(f"Kaldi archive audio ({entry}) is not supported; extract it to files "
                             "or use a 'command |' entry")
        raise AudioError(f"audio file {entry} does not exist")
    if os.path.getsize(entry) == 0:
        raise AudioError(f"audio file {entry} is empty (0 bytes)")
    try:
        return sf.SoundFile(entry), "file", entry
    except Exception as e:
        raise AudioError(f"cannot read audio file {entry}: {_first_line(e)}") from None


def read_audio(entry: str, start: float = 0.0, end: Optional[float] = None, channel: int = -1,
               expected_sample_rate: Optional[int] = None) -> Tuple[np.ndarray, AudioInfo]:
    """Samples of one wav.scp entry (from ``start`` to ``end`` seconds, the whole file when
    ``end`` is None) as a 1-D float32 array in [-1, 1], and the file's :class:`AudioInfo`.

    ``channel`` -1 expects mono audio (as Kaldi's ``--channel=-1``); 0, 1, ... picks one.
    """
    f, kind, source = _open(entry)
    name = source if kind == "file" else f"'{source} |'"
    with f:
        info = AudioInfo(kind, source, int(f.samplerate), int(f.channels), int(f.frames))
        sr = info.sampling_rate
        if expected_sample_rate is not None and sr != int(expected_sample_rate):
            raise AudioError(f"{name} has sample rate {sr} Hz, expected {int(expected_sample_rate)} Hz "
                             "(resample it, or set --sample-frequency)")
        if channel < 0 and info.num_channels != 1:
            raise AudioError(f"{name} has {info.num_channels} channels; pick one with --channel")
        if channel >= info.num_channels:
            raise AudioError(f"{name} has {info.num_channels} channel(s), no channel {channel}")
        if info.num_samples == 0:
            raise AudioError(f"{name} holds no samples")
        first = int(round(start * sr))
        last = info.num_samples if end is None else int(round(end * sr))
        if first < 0 or first >= info.num_samples or last <= first:
            raise AudioError(f"segment {start}-{end} s is outside {name} ({info.duration:.3f} s)")
        if last > info.num_samples:
            if (last - info.num_samples) / sr > SEGMENT_END_TOLERANCE_S:
                raise AudioError(f"segment end {end} s is beyond the end of {name} ({info.duration:.3f} s)")
            last = info.num_samples
        try:
            if first:
                f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(f"cannot read audio {name}: {_first_line(e)}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name} holds no samples (truncated file?)")
    if data.shape[0] < last - first:
        raise AudioError(f"{name} is truncated: read {data.shape[0]} of {last - first} samples")
    samples = np.ascontiguousarray(data[:, max(channel, 0)])
    if not np.isfinite(samples).all():
        raise AudioError(f"{name} contains NaN or infinite samples")
    return samples, info


def recording_name(recording) -> str:
    """A lhotse Recording's sources, for messages."""
    try:
        return ", ".join(str(s.source) for s in recording.sources)
    except Exception:
        return str(getattr(recording, "id", "?"))


def read_cut_audio(cut, expected_sample_rate: Optional[int] = None) -> np.ndarray:
    """Samples of a lhotse mono cut (1-D float32), every failure an :class:`AudioError`
    naming the recording's source."""
    rec = getattr(cut, "recording", None)
    if rec is None:
        raise AudioError(f"cut {cut.id} has no recording")
    name = recording_name(rec)
    if expected_sample_rate is not None and cut.sampling_rate != int(expected_sample_rate):
        raise AudioError(f"{name} (cut {cut.id}) has sample rate {cut.sampling_rate} Hz, expected "
                         f"{int(expected_sample_rate)} Hz (resample the cuts, or set --sample-frequency)")
    try:
        audio = cut.load_audio()
    except Exception as e:
        raise AudioError(f"cannot read audio {name} (cut {cut.id}): {_first_line(e)}") from None
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        if audio.shape[0] != 1:
            raise AudioError(f"{name} (cut {cut.id}) has {audio.shape[0]} channels; expected a mono cut")
        audio = audio[0]
    if audio.size == 0:
        raise AudioError(f"{name} (cut {cut.id}) holds no samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name} (cut {cut.id}) contains NaN or infinite samples")
    return np.ascontiguousarray(audio)
