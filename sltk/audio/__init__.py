"""Audio: reading audio robustly (:mod:`sltk.audio.io`) and Kaldi-compatible features
(:mod:`sltk.audio.features`)."""
