"""Data: Kaldi data directories, lhotse manifests, synthetic corpora."""

from sltk.data.kaldi import DataDir

__all__ = ["DataDir"]
