"""A toy "speech" corpus for training tests: each letter of a word is a fixed random 20-dim
pattern held for a few frames, with noise; words are separated by a silence pattern. The
mapping from features to text is learnable in a few hundred steps, like a tiny real task."""

import numpy as np
import pytest

WORDS = ["abc", "bad", "cab", "dead", "face", "bead"]
SENTENCES = ["abc bad", "cab dead face", "bead abc", "face cab", "dead bead bad", "bad face",
             "abc dead", "cab bead abc", "face bad dead", "bead cab"]
FEAT_DIM = 20


def make_corpus(root, sentences=SENTENCES, seed=0, frames_per_letter=6):
    from lhotse import CutSet, Features, MonoCut, SupervisionSegment
    from lhotse.features.io import LilcomChunkyWriter

    from sltk.decode.lang import train_bpe

    rng = np.random.default_rng(seed)
    letters = {ch: rng.normal(0, 1, FEAT_DIM) * 2 for ch in "abcdef"}
    silence = np.full(FEAT_DIM, -3.0)
    root.mkdir(parents=True, exist_ok=True)
    cuts = []
    with LilcomChunkyWriter(str(root / "feats.lca")) as writer:
        for i, text in enumerate(sentences):
            rows = [silence] * 4
            for w in text.split():
                for ch in w:
                    rows += [letters[ch]] * frames_per_letter
                rows += [silence] * 3
            x = (np.stack(rows) + rng.normal(0, 0.3, (len(rows), FEAT_DIM))).astype(np.float32)
            cid = f"utt{i:02d}"
            key = writer.write(cid, x)
            dur = len(rows) * 0.01
            feats = Features(type="fbank", num_frames=len(rows), num_features=FEAT_DIM, frame_shift=0.01,
                             sampling_rate=16000, start=0, duration=dur, storage_type="lilcom_chunky",
                             storage_path=str(root / "feats.lca"), storage_key=key)
            cuts.append(MonoCut(id=cid, start=0, duration=dur, channel=0, features=feats,
                                supervisions=[SupervisionSegment(id=cid, recording_id=cid, start=0,
                                                                 duration=dur, text=text.upper())]))
    CutSet.from_cuts(cuts).to_file(root / "cuts.jsonl.gz")
    lang = root / "lang"
    lang.mkdir(exist_ok=True)
    (lang / "bpe.model").write_bytes(train_bpe([s.upper().split() for s in sentences], 12))
    return root / "cuts.jsonl.gz", lang


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("toy"))


TOY_MODEL = dict(feat_dim=FEAT_DIM, encoder="lstm", encoder_dim=64, lstm_hidden=64, num_encoder_layers=2,
                 decoder_dim=32, joiner_dim=64, dropout=0.0, ctc_weight=0.2)


@pytest.fixture
def toy_model():
    return dict(TOY_MODEL)
