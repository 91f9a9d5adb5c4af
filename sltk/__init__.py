"""sltk: a speech-and-language toolkit in the Kaldi/ESPnet tradition."""

__version__ = "0.1.0"
