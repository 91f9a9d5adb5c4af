"""Expressive text-to-speech with prosody embeddings (``synth-prosody``).

Modules, each reusable on its own (the accent-conversion work uses the phonemizer, the
aligner, the mel front end and the vocoder):

- :mod:`sltk.tts.phonemize`: espeak-ng G2P with word boundaries and emphasis marks;
- :mod:`sltk.tts.features`: the log-mel front end (sltk's Kaldi fbank with invertible settings);
- :mod:`sltk.tts.align`: forced alignment by monotonic alignment search (phoneme durations);
- :mod:`sltk.tts.vocoder`: the vocoder interface and Griffin-Lim;
- :mod:`sltk.tts.pitch`: an autocorrelation F0 tracker;
- :mod:`sltk.tts.data`: the espeak-ng SSML prosody corpus;
- :mod:`sltk.tts.model`: the FastSpeech2-like acoustic model with VAE prosody embeddings;
- :mod:`sltk.tts.train`, :mod:`sltk.tts.evaluate`: training and evaluation.
"""
