"""Model inputs, streaming equivalence and compute counts."""

import numpy as np
import torch

from sltk.kws.models import VARIANTS, Features, KWSModel, complexity, model_input


def test_zero_reference_early_input_equals_mic_only_input():
    rng = np.random.default_rng(0)
    mic = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    feats = Features(40)
    x_mic = model_input("mic", mic, None, feats)
    for ref in (None, np.zeros_like(mic)):
        x_early = model_input("early", mic, ref, feats)
        assert x_early.shape == (2,) + tuple(x_mic.shape[1:])
        assert torch.equal(x_early[0], x_mic[0])          # the mic stream is the mic-only input
        assert torch.all(x_early[1] == x_early[1][0, 0])  # a silent reference is a constant stream
    # aec with a silent reference leaves the mic alone
    assert torch.equal(model_input("aec", mic, np.zeros_like(mic), feats), x_mic)


def test_streaming_equals_offline_and_counts():
    torch.manual_seed(0)
    for v in VARIANTS:
        m = KWSModel(v, num_mel_bins=20, channels=16, dilations=(1, 2, 4)).eval()
        x = torch.randn(1, m.streams, 50, 20)
        with torch.no_grad():
            full = m(x)
            state, outs = None, []
            for i in range(0, 50, 7):
                o, state = m.step(x[:, :, i:i + 7], state)
                outs.append(o)
        torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
        # causal: changing the future does not change the past
        y = x.clone()
        y[:, :, 30:] += 5
        with torch.no_grad():
            torch.testing.assert_close(m(y)[:, :30], full[:, :30])
    c = {v: complexity(KWSModel(v)) for v in VARIANTS}
    assert all(10_000 <= c[v]["params"] <= 100_000 for v in VARIANTS)
    assert c["aec"]["aec_macs_per_s"] > 0 and c["mic"]["aec_macs_per_s"] == 0
    assert c["aec"]["macs_per_s"] > c["mic"]["macs_per_s"] and c["early"]["macs_per_s"] > c["mic"]["macs_per_s"]
