import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_env():
    """Environment for running programs in subprocesses: the repo's bin/ and the venv on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# ---- a toy "speech" corpus for ASR training and decoding tests
# A toy "speech" corpus for training tests: each letter of a word is a fixed random 20-dim
# pattern held for a few frames, with noise; words are separated by a silence pattern. The
# mapping from features to text is learnable in a few hundred steps, like a tiny real task.

WORDS = ["abc", "bad", "cab", "dead", "face", "bead"]
SENTENCES = ["abc bad", "cab dead face", "bead abc", "face cab", "dead bead bad", "bad face",
             "abc dead", "cab bead abc", "face bad dead", "bead cab"]
FEAT_DIM = 20


def make_corpus(root, sentences=SENTENCES, seed=0, frames_per_letter=6):
    from lhotse import CutSet, Features, MonoCut, SupervisionSegment
    from lhotse.features.io import LilcomChunkyWriter

    from sltk.decode.lang import prepare_lang

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
    (root / "text.txt").write_text("".join(s.upper() + "\n" for s in sentences))
    lang = root / "lang"
    prepare_lang([root / "text.txt"], lang, vocab_size=12, lm_order=2)
    return root / "cuts.jsonl.gz", lang


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("toy"))


TOY_MODEL = dict(feat_dim=FEAT_DIM, encoder="lstm", encoder_dim=64, lstm_hidden=64, num_encoder_layers=2,
                 decoder_dim=32, joiner_dim=64, dropout=0.0, ctc_weight=0.2)


@pytest.fixture
def toy_model():
    return dict(TOY_MODEL)


@pytest.fixture(scope="session")
def overfit_model(toy_corpus, tmp_path_factory):
    """A model trained to overfit the toy corpus (the k2 loss where k2 is importable)."""
    import torch

    from sltk.asr import loss as L
    from sltk.asr.train import TrainConfig, prepare, train

    cuts, lang = toy_corpus
    exp = tmp_path_factory.mktemp("overfit")
    cfg = TrainConfig(cuts_train=str(cuts), lang_dir=str(lang), exp_dir=str(exp), model=dict(TOY_MODEL),
                      loss="k2" if L.k2_available() else "torch", max_duration=3.0, num_epochs=60, lr=3e-3,
                      warmup_steps=30, warm_step=100, spec_augment=False, save_every_n=0, log_every=1000,
                      average_last=3)
    mcfg, backend = prepare(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(0, cfg, mcfg, backend)
    finally:
        torch.set_num_threads(threads)
    return exp, cfg
