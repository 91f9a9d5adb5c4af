"""Side-by-side decoding latency of several models."""

import torch

from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.nna.latency import decoding_latency


def test_decoding_latency(toy_corpus, toy_model):
    from lhotse import CutSet

    cuts, _ = toy_corpus
    torch.manual_seed(0)
    models = {"a": Transducer(ModelConfig(vocab_size=12, **toy_model)),
              "b": Transducer(ModelConfig(vocab_size=12, **toy_model))}
    lat = decoding_latency(models, CutSet.from_file(cuts), max_utterances=3, warmup=1)
    assert set(lat) == {"a", "b"}
    for r in lat.values():
        assert r["utterances"] == 3 and 0 < r["p50_ms"] <= r["p90_ms"]
