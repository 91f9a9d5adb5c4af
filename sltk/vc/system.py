"""A trained accent-conversion system (``final.pt`` of :func:`sltk.vc.train.train`) and the
five ways of converting with it (:data:`SYSTEMS`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from sltk.tts.align import GaussianAligner
from sltk.tts.features import MelConfig, log_mel
from sltk.tts.phonemize import PAUSES
from sltk.utils.errors import UserError
from sltk.vc.accents import PhoneVocab, check_accent, phonemize_accent
from sltk.vc.convert import (DurationModel, PhoneMapper, Units, attend, flatten, remap, stretch, unit_attention,
                             unit_frames)
from sltk.vc.flow import AccentFlow, FlowConfig
from sltk.vc.judges import load_recognizer, recognize
from sltk.vc.train import KIND, frame_inputs

# source: unchanged; plain: flow VC with only the accent label swapped; then the ablations
SYSTEMS = ("source", "plain", "remap", "remap+warp", "remap+warp+attend")
WARPS = ("relative", "absolute")


@dataclass
class Analysis:
    mel: torch.Tensor       # (T, num_mels) raw log-mel
    units: Units
    durations: List[int]
    accent: str
    speaker: str
    text: Optional[str]


class AccentConverter:
    def __init__(self, ck: dict):
        self.ck = ck
        self.model = AccentFlow(FlowConfig(**ck["config"]))
        self.model.load_state_dict(ck["state"])
        self.model.eval()
        self.vocab = PhoneVocab.from_list(ck["vocab"])
        self.accents: List[str] = ck["accents"]
        self.speakers: List[str] = ck["speakers"]
        self.aligner = GaussianAligner.from_dict(ck["aligner"])
        self.dur = DurationModel.from_dict(ck["durations"])
        self.p2p = PhoneMapper.from_dict(ck["p2p"])
        self.recognizer = load_recognizer(ck["recognizer"])
        self.mean, self.std = ck["norm"]["mean"], ck["norm"]["std"]
        self.mel_cfg = MelConfig(**ck["mel"])
        self.sigma = 0.3   # frames: close to hard alignment (latents are correlated in time)
        # the source latents are scaled by this before the reverse pass (a sampling temperature:
        # below 1 the target conditioning weighs more than what the latents kept of the source)
        self.latent_scale = 1.0
        # how remap+warp gets its durations: "relative" (DurationModel.warp_relative) or "absolute"
        self.warp = "relative"

    @classmethod
    def load(cls, path) -> "AccentConverter":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"model {p} does not exist")
        try:
            ck = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{p} is not a convert-accent model: {e}") from None
        if not isinstance(ck, dict) or ck.get("kind") != KIND:
            raise UserError(f"{p} is not a convert-accent model (train one with `convert-accent train`)")
        return cls(ck)

    # ------------------------------------------------------------------ checks
    def check_accent(self, name: str) -> str:
        return check_accent(name, self.accents)

    def check_speaker(self, name: str) -> str:
        if name not in self.speakers:
            raise UserError(f"unknown speaker {name!r} (known speakers: {', '.join(self.speakers)})")
        return name

    # ------------------------------------------------------------------ analysis
    def analyse(self, samples: np.ndarray, accent: str, speaker: str, text: Optional[str] = None) -> Analysis:
        """Log-mel, units and phone durations of a source utterance: aligned to the source
        accent's phonemization of ``text``, or recognised when there is no text."""
        self.check_accent(accent)
        self.check_speaker(speaker)
        mel = log_mel(samples, self.mel_cfg)
        if text:
            units = phonemize_accent(text, accent).unit_phones
            phones, _ = flatten(units)
            if mel.shape[0] < len(phones):
                raise UserError(f"the audio ({mel.shape[0]} frames) is too short for the {len(phones)} phones of "
                                f"its text")
            durs = self.aligner.align(mel.numpy(), phones).tolist()
        else:
            units, durs = recognize(self.recognizer, self.normalise(mel), self.vocab.phones, PAUSES)
        return Analysis(mel, units, durs, accent, speaker, text)

    def normalise(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mean) / self.std

    def _cond(self, units: Units, durs: List[int], speaker: str, accent: str) -> torch.Tensor:
        phones, _ = flatten(units)
        ids, pos = frame_inputs(self.vocab, phones, durs)
        return self.model.condition(ids[None], pos[None], torch.tensor([self.speakers.index(speaker)]),
                                    torch.tensor([self.accents.index(accent)]))

    def target_units(self, a: Analysis, target: str) -> Units:
        if a.text:
            tu = phonemize_accent(a.text, target).unit_phones
            if len(tu) == len(a.units):
                return tu
        return self.p2p.map_units(a.units, a.accent, target)

    # ------------------------------------------------------------------ conversion
    @torch.no_grad()
    def convert(self, a: Analysis, target: str, system: str = "remap+warp+attend") -> torch.Tensor:
        """(T', num_mels) raw log-mel of ``a`` converted to accent ``target`` by ``system``."""
        self.check_accent(target)
        if system not in SYSTEMS:
            raise UserError(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")
        if system == "source":
            return a.mel.clone()
        x = self.normalise(a.mel)[None]
        z, _ = self.model(x, self._cond(a.units, a.durations, a.speaker, a.accent))
        z = z[0]
        if system == "plain":
            units, durs = a.units, a.durations
        else:
            units = self.target_units(a, target)
            if system == "remap":
                durs = remap(a.units, a.durations, units, self.dur, target)
            else:
                if self.warp not in WARPS:
                    raise UserError(f"unknown warp {self.warp!r} (known: {', '.join(WARPS)})")
                warp = self.dur.warp_relative if self.warp == "relative" else self.dur.warp
                durs = warp(a.accent, a.units, a.durations, target, units)
        T = int(sum(durs))
        if system == "remap+warp+attend":
            w = unit_attention(unit_frames(a.units, a.durations), unit_frames(units, durs), self.sigma)
            zt = attend(z, w)
        else:
            zt = stretch(z, T)
        y = self.model.reverse(zt[None] * self.latent_scale, self._cond(units, durs, a.speaker, target))[0]
        return y * self.std + self.mean
