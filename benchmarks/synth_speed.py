#!/usr/bin/env python3
"""Synthesis speed: seconds of audio produced per second of wall time, per synthesizer.

Every installed synthesizer (one voice each, at its default rate) reads the same
sentences from the corpus text generator, one at a time in one process. Columns: audio
per wall second of the synthesizer alone; audio per CPU second (user + system of this
process and its synthesizer subprocesses: a busy machine disturbs it less than wall
time); audio per wall second including the post-processing to 16 kHz int16
(sltk.data.synth.acoustics.process, no noise or reverberation). One sentence is
synthesized before timing (Piper loads its model then). Prints a markdown table.

    python benchmarks/synth_speed.py [--num-sentences 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sltk.data.synth import acoustics  # noqa: E402
from sltk.data.synth.text import Lexicon, TextGenerator  # noqa: E402
from sltk.data.synth.voices import BACKENDS, Speaker, synthesize  # noqa: E402

# One representative voice per synthesizer (the first installed one if it is missing).
PREFERRED = {"espeak": "espeak:en-us+m3", "flite": "flite:slt", "festival": "festival:kal_diphone",
             "piper": "piper:en_US-joe-medium"}


def cpu_seconds() -> float:
    """User + system time of this process and its finished children (the synthesizers)."""
    t = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        t += r.ru_utime + r.ru_stime
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-sentences", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synths", default="", help="comma-separated; default: every installed one")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    gen = TextGenerator(Lexicon.load(), plain_frac=0.3)
    sentences = [gen.generate(rng).spoken for _ in range(args.num_sentences)]
    words = sum(len(s.split()) for s in sentences)
    names = [s for s in args.synths.split(",") if s] or [n for n, b in BACKENDS.items() if b.available()]

    rows = []
    for name in names:
        b = BACKENDS[name]
        if not b.available():
            print(f"skipping {name}: {b.why_unavailable()}", file=sys.stderr)
            continue
        voices = {v.id: v for v in b.voices()}
        voice = voices.get(PREFERRED.get(name, ""), next(iter(voices.values())))
        spk = Speaker(voice)
        with tempfile.TemporaryDirectory() as d:
            synthesize("warm up.", spk, Path(d))
            audio_s = synth_s = total_s = cpu_s = 0.0
            for s in sentences:
                t0 = time.perf_counter()
                c0 = cpu_seconds()
                a = synthesize(s, spk, Path(d))
                t1 = time.perf_counter()
                cpu_s += cpu_seconds() - c0
                y = acoustics.process(a.samples, a.sample_rate, None,
                                      tempo=1.0 if a.rate_done else spk.rate,
                                      semitones=0.0 if a.pitch_done else float(spk.pitch))
                t2 = time.perf_counter()
                synth_s += t1 - t0
                total_s += t2 - t0
                audio_s += len(y) / acoustics.SAMPLE_RATE
        rows.append((name, voice.id, b.version(), audio_s, synth_s, cpu_s, total_s))

    print(f"{len(sentences)} sentences ({words} words), seed {args.seed}; one process; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| synthesizer | voice | version | audio (s) | synth wall (s) | audio s / wall s "
          "| audio s / CPU s | audio s / wall s incl. 16 kHz post-processing |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, vid, ver, audio_s, synth_s, cpu_s, total_s in rows:
        print(f"| {name} | {vid} | {ver} | {audio_s:.1f} | {synth_s:.2f} | {audio_s / synth_s:.1f} "
              f"| {audio_s / cpu_s:.1f} | {audio_s / total_s:.1f} |")


if __name__ == "__main__":
    main()
