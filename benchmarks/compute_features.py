#!/usr/bin/env python3
"""Throughput of feature extraction, end to end, sltk against lhotse and torchaudio.

On the same audio (generated, or a Kaldi data directory given with --data-dir), measures
the wall time of

* ``compute-features`` (read audio, compute 80-bin fbank, write lilcom archives and the
  CutSet manifest), from the Kaldi data directory and from a lhotse CutSet, nj=1 and 2;
* ``lhotse feat extract-cuts`` with lhotse's Fbank (80 bins, dither 0, no snip_edges,
  lilcom_chunky storage), -j 1 and 2;
* a plain Python loop of soundfile.read + torchaudio.compliance.kaldi.fbank, and the same
  loop with sltk's FeatureComputer (compute only, nothing written, in this process);
* the start-up alone (interpreter and imports) of both programs.

Programs run as subprocesses with OMP_NUM_THREADS=1 (one thread per process), and their
time includes the process start (python, torch and lhotse imports). Each is run --repeat
times and the fastest run is reported, with the CPU time (user + system, all processes) it
used: on a machine shared with other work the CPU column is the steadier one. Prints a markdown table; with --results FILE also
writes it into FILE under "## compute-features throughput" (replacing that section only).

    tools/venv/bin/python benchmarks/compute_features.py
    tools/venv/bin/python benchmarks/compute_features.py --minutes 3,15 --results benchmarks/RESULTS.md
    tools/venv/bin/python benchmarks/compute_features.py --data-dir data/train --repeat 1
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## compute-features throughput"


def make_audio(out: Path, minutes: float, seed: int = 0) -> Path:
    """A data directory of 1-6 s speech-like utterances (harmonics under a syllable-rate
    envelope, plus noise), 16 kHz 16-bit, totalling ``minutes``."""
    rng = np.random.default_rng(seed)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    total, i, lines = 0.0, 0, []
    while total < minutes * 60:
        dur = float(rng.uniform(1.0, 6.0))
        t = np.arange(int(dur * 16000)) / 16000
        f0 = rng.uniform(90, 250)
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
        x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.1 + 0.005 * rng.standard_normal(len(t))
        utt = f"spk{i % 8}-utt{i:05d}"
        sf.write(wav_dir / f"{utt}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
        lines.append((utt, str((wav_dir / f"{utt}.wav").resolve()), utt.split("-")[0]))
        total += len(t) / 16000
        i += 1
    d = out / "data"
    d.mkdir(exist_ok=True)
    lines.sort()
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p, _ in lines))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, _, s in lines))
    return d


def audio_seconds(data_dir: Path) -> float:
    return sum(sf.info(line.split(maxsplit=1)[1].strip()).duration
               for line in (data_dir / "wav.scp").read_text().splitlines() if line.strip())


def timed(cmd, env, repeat: int, clean=(), mkdir=()) -> Tuple[float, float]:
    """(wall s, CPU s of the process and its children) of the fastest of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        for p in clean:
            shutil.rmtree(p, ignore_errors=True)
        for p in mkdir:
            Path(p).mkdir(parents=True)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            sys.exit(f"failed ({res.returncode}): {shlex.join(map(str, cmd))}\n{res.stderr[-2000:]}")
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        best = min(best, (dt, cpu))
    return best


def loop_fbank(data_dir: Path, which: str, repeat: int) -> Tuple[float, float]:
    """read + compute every utterance in this process (nothing written), one thread."""
    import torch

    torch.set_num_threads(1)
    paths = [line.split(maxsplit=1)[1].strip() for line in (data_dir / "wav.scp").read_text().splitlines()]
    if which == "torchaudio":
        from torchaudio.compliance.kaldi import fbank

        def compute(x):
            return fbank(torch.from_numpy(x * 32768).unsqueeze(0), num_mel_bins=80, snip_edges=False, dither=0.0)
    else:
        from sltk.audio.features import FeatureComputer, FeatureOptions

        comp = FeatureComputer(FeatureOptions(num_mel_bins=80))
        compute = comp
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in paths:
            x, _ = sf.read(p, dtype="float32")
            compute(x)
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench(data: Path, work: Path, repeat: int, label: str) -> str:
    """Run every method on ``data``; the markdown table."""
    secs = audio_seconds(data)
    n_utts = len((data / "wav.scp").read_text().splitlines())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    py = sys.executable
    lhotse_bin = str(Path(py).parent / "lhotse")
    prog = str(ROOT / "bin" / "compute-features")

    # lhotse's input: the same corpus as a CutSet (prepared once, not timed).
    from lhotse import CutSet

    from sltk.data.kaldi import DataDir
    from sltk.data.lhotse_io import to_lhotse

    recs, sups = to_lhotse(DataDir.read(data))
    cuts_in = work / "cuts_in.jsonl.gz"
    CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(cuts_in)
    fbank_yaml = work / "lhotse_fbank.yaml"
    fbank_yaml.write_text("feature_type: kaldi-fbank\nnum_filters: 80\ndither: 0.0\nsnip_edges: false\n")

    rows = []
    for nj in (1, 2):
        out = work / f"sltk_nj{nj}"
        t = timed([py, prog, "--nj", str(nj), str(data), str(out)], env, repeat, clean=[out])
        rows.append((f"sltk compute-features DATA_DIR (nj={nj})", nj, t))
    for nj in (1, 2):
        out = work / f"sltk_cuts_nj{nj}"
        t = timed([py, prog, "--nj", str(nj), "--cuts", str(cuts_in), str(out)], env, repeat, clean=[out])
        rows.append((f"sltk compute-features --cuts (nj={nj})", nj, t))
    for nj in (1, 2):
        out = work / f"lhotse_nj{nj}"
        t = timed([lhotse_bin, "feat", "extract-cuts", "-f", str(fbank_yaml), "--storage-type", "lilcom_chunky",
                   "-j", str(nj), str(cuts_in), str(out / "cuts.jsonl.gz"), str(out / "feats")],
                  env, repeat, clean=[out], mkdir=[out])
        rows.append((f"lhotse feat extract-cuts (-j {nj})", nj, t))
    rows.append(("torchaudio kaldi.fbank loop, read+compute only, in-process", 1,
                 loop_fbank(data, "torchaudio", repeat)))
    rows.append(("sltk FeatureComputer loop, read+compute only, in-process", 1, loop_fbank(data, "sltk", repeat)))
    startup = [
        ("start-up alone: python + sltk compute-features imports (torch, lhotse)",
         timed([py, "-c", "import sltk.bin.compute_features, sltk.audio.extract"], env, repeat)),
        ("start-up alone: lhotse CLI (`lhotse --help`)", timed([lhotse_bin, "--help"], env, repeat)),
    ]
    lines = [
        f"{label}: {secs:.1f} s of audio in {n_utts} utterances; 80-bin fbank, 16 kHz.",
        "",
        "| method | processes | wall s | CPU s | audio s / wall s | audio s / wall s / process | audio s / CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, procs, (t, cpu) in rows:
        lines.append(f"| {name} | {procs} | {t:.2f} | {cpu:.2f} | {secs / t:.0f} | {secs / t / procs:.0f} "
                     f"| {secs / cpu:.0f} |")
    for name, (t, cpu) in startup:
        lines.append(f"| {name} | 1 | {t:.2f} | {cpu:.2f} | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", help="Kaldi data directory to use instead of generated audio")
    ap.add_argument("--minutes", default="3", help="minutes of audio to generate; a comma list "
                                                   "gives one table per size (e.g. 3,15)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "compute_features"),
                    help="scratch directory (removed first)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per method; the fastest counts")
    ap.add_argument("--results", help="also write the tables into this markdown file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    tables = []
    if args.data_dir:
        tables.append(bench(Path(args.data_dir), work, args.repeat, f"--data-dir {args.data_dir}"))
    else:
        for m in args.minutes.split(","):
            sub = work / f"{m}min"
            sub.mkdir()
            tables.append(bench(make_audio(sub, float(m)), sub, args.repeat, f"Generated, {m} min"))
    header = (f"Machine: {os.cpu_count()} cores, {cpu_name()}; python {platform.python_version()}; "
              f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work was "
              f"running). One thread per process (OMP_NUM_THREADS=1); best of {args.repeat}; program "
              "times include process start-up (see the start-up rows).")
    text = header + "\n\n" + "\n\n".join(tables)
    print(text)
    if args.results:
        cmd = "tools/venv/bin/python benchmarks/compute_features.py " + " ".join(
            shlex.quote(a) for a in sys.argv[1:] if not a.startswith(str(ROOT)))
        write_section(Path(args.results), f"{SECTION}\n\n`{cmd.strip()}`\n\n{text}\n")


def write_section(path: Path, body: str) -> None:
    """Put ``body`` (starting with SECTION) into ``path``, replacing only that section."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    main()
