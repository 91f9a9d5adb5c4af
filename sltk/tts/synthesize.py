"""Text to waveform with a trained model: phonemize, choose the prosody embedding (predicted
from the text, copied from a reference recording, or none), predict durations, decode the
mel frames and vocode them."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from sltk.audio.io import read_audio
from sltk.tts.align import GaussianAligner
from sltk.tts.features import MelConfig, log_mel
from sltk.tts.model import TTSModel, make_batch
from sltk.tts.phonemize import Phonemized, phonemize
from sltk.tts.train import utt_item
from sltk.tts.vocoder import Vocoder
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")


def reference_item(model: TTSModel, ck: dict, ph: Phonemized, wav: str) -> dict:
    """The item of a reference recording of the same text: its log-mel and the durations of
    ``ph`` found by the checkpoint's aligner."""
    mcfg = MelConfig(**ck["mel"])
    x, _ = read_audio(wav, expected_sample_rate=mcfg.sample_rate)
    mel = log_mel(x, mcfg)
    if mel.shape[0] < len(ph.phones):
        raise UserError(f"reference {wav} is too short ({mel.shape[0]} frames) for the {len(ph.phones)} phonemes "
                        "of the text")
    aligner = GaussianAligner.from_dict(ck["aligner"])
    dur = aligner.align(mel.numpy(), ph.phones)
    return utt_item(model, ph, dur, mel)


def synthesize_text(model: TTSModel, ck: dict, text: str, vocoder: Vocoder, embedding: str = "predict",
                    reference: Optional[str] = None, speed: float = 1.0) -> np.ndarray:
    """Samples of ``text``. ``embedding``: predict | zero | reference (needs ``reference``,
    a recording of the same text)."""
    ph = phonemize(text, ck.get("voice", "en-us"))
    if embedding == "reference":
        item = reference_item(model, ck, ph, reference)
        source = "oracle"
    else:
        item = utt_item(model, ph)
        source = embedding
    res = model.infer(make_batch([item]), source=source, speed=speed)
    mel = res["mel"][0, : int(res["mel_lens"][0])]
    return vocoder(mel)


