"""Test-time VTLN: the warp factor estimated per speaker undoes a known warp of the features."""

import pytest
import torch

from sltk.asr.checkpoint import load_model
from sltk.asr.data import FreqWarp
from sltk.asr.decode import DecodeOptions, Decoder, decode_cuts, estimate_warps
from sltk.decode.lang import load_lang


def _two_speakers(cuts_path, root, warp):
    """The toy cuts twice: as speaker 'plain', and with features warped by ``warp`` as 'warped'."""
    from dataclasses import replace

    from lhotse import CutSet, load_manifest
    from lhotse.features.io import LilcomChunkyWriter

    cuts = load_manifest(cuts_path)
    fw = FreqWarp()
    out = []
    with LilcomChunkyWriter(str(root / "warped.lca")) as writer:
        for c in cuts:
            sup = c.supervisions[0]
            out.append(replace(c, supervisions=[replace(sup, speaker="plain")]))
            x = fw.warp(torch.from_numpy(c.load_features()), warp).numpy()
            key = writer.write(c.id + "w", x)
            feats = replace(c.features, storage_path=str(root / "warped.lca"), storage_key=key)
            out.append(replace(c, id=c.id + "w", features=feats,
                               supervisions=[replace(sup, id=sup.id + "w", speaker="warped")]))
    return CutSet.from_cuts(out)


def test_estimate_undoes_a_known_warp(toy_corpus, overfit_model, tmp_path):
    cuts_path, lang_dir = toy_corpus
    exp, cfg = overfit_model
    model = load_model(exp / f"epoch-{cfg.num_epochs}.pt").eval()
    lang = load_lang(lang_dir)
    cuts = _two_speakers(cuts_path, tmp_path, 1.3)
    spk2warp = estimate_warps(model, lang, cuts, [0.75, 0.85, 1.0, 1.15, 1.3], max_utts=5)
    # the overfitted model knows only unwarped features: 1 for them, the inverse warp for the others
    assert spk2warp == {"plain": 1.0, "warped": 0.75}
    dec = Decoder(model, "greedy", lang, DecodeOptions(), torch.device("cpu"))
    refs = {c.id: c.supervisions[0].text for c in cuts}

    def errors(res):
        return sum(res["hyps"][k] != refs[k] for k in refs if k.endswith("w"))

    without = errors(decode_cuts(dec, cuts))
    with_vtln = errors(decode_cuts(dec, cuts, spk2warp=spk2warp))
    assert with_vtln < without
    assert with_vtln <= 2
