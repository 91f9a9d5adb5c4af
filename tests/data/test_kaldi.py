"""Kaldi data directories: validate, fix, split, and the lossless lhotse round trip."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sltk.data.kaldi import DataDir, split_data_dir
from sltk.data.lhotse_io import from_lhotse, to_lhotse, write_manifests, read_manifests


def make_dir(tmp_path, n_spk=3, per_spk=4, segments=False, name="data"):
    """A small data dir: speakers spkK with utterances spkK-uttJ, 0.2 s wavs (or segments)."""
    d = tmp_path / name
    wav = tmp_path / "wav"
    wav.mkdir(exist_ok=True)
    dd = DataDir(text={}, extra={"utt2voice": {}})
    rng = np.random.default_rng(0)
    for s in range(n_spk):
        spk = f"spk{s}"
        if segments:
            reco = f"{spk}-rec"
            path = wav / f"{reco}.wav"
            sf.write(path, rng.standard_normal(16000 * per_spk) * 0.1, 16000, subtype="PCM_16")
            dd.wav_scp[reco] = str(path)
            dd.segments = dd.segments or {}
        for j in range(per_spk):
            utt = f"{spk}-utt{j}"
            if segments:
                dd.segments[utt] = (reco, j * 1.0, j * 1.0 + 0.75)
            else:
                path = wav / f"{utt}.wav"
                sf.write(path, rng.standard_normal(3200) * 0.1, 16000, subtype="PCM_16")
                dd.wav_scp[utt] = str(path)
            dd.utt2spk[utt] = spk
            dd.text[utt] = f"HELLO NUMBER {j}"
            dd.extra["utt2voice"][utt] = f"voice{s}"
    dd.spk2gender = {f"spk{s}": "mf"[s % 2] for s in range(n_spk)}
    dd.write(d)
    return d


def test_write_read_validate(tmp_path):
    d = make_dir(tmp_path)
    dd = DataDir.read(d)
    assert dd.validate() == []
    assert len(dd) == 12
    assert (d / "spk2utt").read_text().splitlines()[0] == "spk0 spk0-utt0 spk0-utt1 spk0-utt2 spk0-utt3"
    assert dd.extra["utt2voice"]["spk2-utt3"] == "voice2"


def test_validate_finds_problems(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "text").read_text().splitlines()
    # unsorted, an empty transcript, a missing transcript
    lines = [lines[1], lines[0]] + lines[2:-1]
    lines[2] = lines[2].split()[0]
    (d / "text").write_text("\n".join(lines) + "\n")
    (d / "spk2utt").write_text("spk0 spk0-utt0\n")
    problems = DataDir.read(d).validate()
    text = "\n".join(problems)
    assert "text: not sorted" in text
    assert "1 utterances have no transcript, e.g. spk2-utt3" in text
    assert "1 empty transcripts" in text
    assert "spk2utt does not match utt2spk" in text


def test_fix_repairs_and_cli(tmp_path, run_env):
    d = make_dir(tmp_path)
    text = (d / "text").read_text().splitlines()
    (d / "text").write_text("\n".join(reversed(text[1:])) + "\n")  # unsorted, spk0-utt0 missing
    (d / "wav.scp").write_text((d / "wav.scp").read_text() + "orphan /nonexistent.wav\n")
    r = subprocess.run([sys.executable, "-m", "sltk.bin.data_dir", "validate", str(d)],
                       capture_output=True, text=True, env=run_env)
    assert r.returncode == 2 and "problem(s)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "sltk.bin.data_dir", "fix", str(d)],
                       capture_output=True, text=True, env=run_env)
    assert r.returncode == 0, r.stderr
    assert "Done 11 of 12 utterances, 1 failed" in r.stderr
    fixed = DataDir.read(d)
    assert fixed.validate() == []
    assert "spk0-utt0" not in fixed.utt2spk and "orphan" not in fixed.wav_scp
    assert (d / ".backup" / "utt2spk").is_file()  # what was dropped stays recoverable


def test_split_by_speaker_and_by_utterance(tmp_path):
    dd = DataDir.read(make_dir(tmp_path, n_spk=5, per_spk=3))
    parts = dd.split(2)
    assert [len(p) for p in parts] == [9, 6] or [len(p) for p in parts] == [6, 9]
    spk_sets = [set(p.utt2spk.values()) for p in parts]
    assert not (spk_sets[0] & spk_sets[1])  # no speaker crosses parts
    assert sorted(u for p in parts for u in p.utt2spk) == dd.utt_ids
    # more parts than speakers: per utterance, still covering everything once
    parts = dd.split(7)
    assert len(parts) == 7 and all(len(p) >= 2 for p in parts)
    assert sorted(u for p in parts for u in p.utt2spk) == dd.utt_ids
    for p in parts:
        assert p.validate() == []
    with pytest.raises(Exception, match="cannot split 15 utterances into 16"):
        dd.split(16)


def test_split_balances_uneven_speakers(tmp_path):
    dd = DataDir(utt2spk={f"s{s}-u{j}": f"s{s}" for s, n in enumerate([10, 1, 1, 1, 1, 6]) for j in range(n)})
    dd.wav_scp = {u: f"{u}.wav" for u in dd.utt2spk}
    sizes = [len(p) for p in dd.split(3)]
    assert sum(sizes) == 20 and min(sizes) >= 1 and len(sizes) == 3
    assert sizes == [10, 4, 6]


def test_split_data_dir_on_disk(tmp_path):
    d = make_dir(tmp_path, n_spk=4, per_spk=2)
    paths = split_data_dir(d, 2)
    assert [p.name for p in paths] == ["1", "2"] and paths[0].parent.name == "split2"
    assert sum(len(DataDir.read(p)) for p in paths) == 8
    for p in paths:
        assert DataDir.read(p).validate() == []


@pytest.mark.parametrize("segments", [False, True])
def test_lhotse_round_trip_is_lossless(tmp_path, segments):
    d = make_dir(tmp_path, segments=segments)
    dd = DataDir.read(d)
    recs, sups = to_lhotse(dd)
    assert len(sups) == 12 and len(recs) == (3 if segments else 12)
    s = sups["spk1-utt2"]
    assert s.text == "HELLO NUMBER 2" and s.speaker == "spk1" and s.gender == "f"
    assert s.custom == {"voice": "voice1"}
    if segments:
        assert (s.recording_id, s.start, s.duration) == ("spk1-rec", 2.0, 0.75)
    else:
        assert s.duration == pytest.approx(0.2)
    # through files, then back
    rp, sp = write_manifests(recs, sups, tmp_path / "manifests", prefix="train_")
    assert rp.name == "train_recordings.jsonl.gz"
    back = from_lhotse(*read_manifests(rp, sp))
    assert back == dd
    back.write(tmp_path / "back")
    for f in sorted(p.name for p in d.iterdir() if p.is_file()):
        assert (tmp_path / "back" / f).read_text() == (d / f).read_text(), f


def test_command_entries_in_wav_scp(tmp_path):
    d = make_dir(tmp_path, n_spk=1, per_spk=2)
    dd = DataDir.read(d)
    first = dd.utt_ids[0]
    dd.wav_scp[first] = f"cat {dd.wav_scp[first]} |"
    recs, sups = to_lhotse(dd)
    assert recs[first].sources[0].type == "command"
    audio = recs[first].load_audio()
    assert audio.shape == (1, 3200)
    assert from_lhotse(recs, sups).wav_scp == dd.wav_scp


def test_corrupt_audio_named(tmp_path):
    d = make_dir(tmp_path, n_spk=1, per_spk=2)
    dd = DataDir.read(d)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    dd.wav_scp[dd.utt_ids[0]] = str(bad)
    with pytest.raises(Exception, match="bad.wav"):
        to_lhotse(dd)
