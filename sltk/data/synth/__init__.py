"""Synthetic speech corpora, made offline from installed packages.

* :mod:`sltk.data.synth.text`: the voice-assistant grammar, invented rare words, sentences;
* :mod:`sltk.data.synth.voices`: synthesizers (espeak-ng, flite, festival, piper) and speakers;
* :mod:`sltk.data.synth.acoustics`: 16 kHz, rate/pitch, noise, reverberation;
* :mod:`sltk.data.synth.corpus`: planning, parallel resumable synthesis, data dirs and manifests
  (the program is ``make-synth-corpus``).
"""
