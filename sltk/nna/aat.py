"""Accelerator-aware training (AAT): the training hook that puts NNA emulation into
:func:`sltk.asr.train.train`.

The hook converts the model per the profile before the optimizer exists
(:func:`sltk.nna.emulate.convert`), calibrates the activation ranges during the first
``calib_steps`` steps (float forward, EMA of min/max), then freezes them and trains with fake
quantization (straight-through gradients) for the rest of the run. Each checkpoint records the
transform ``{"kind": "nna", "profile": {...}, "mode": "fake"}``, so that
:func:`sltk.asr.checkpoint.load_model` rebuilds the emulated model, ranges included.
"""

from __future__ import annotations

import logging
from typing import Dict

from sltk.asr.train import TrainHook
from sltk.nna import emulate as E
from sltk.nna.profile import NNAProfile
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")


class NNAHook(TrainHook):
    name = "nna"

    def __init__(self, profile: NNAProfile, calib_steps: int = 50, source: str = ""):
        if calib_steps < 1:
            raise UserError(f"--calib-steps must be >= 1 (activation ranges are calibrated first), got {calib_steps}")
        self.profile = profile
        self.calib_steps = calib_steps
        self.source = source
        self.frozen_at = 0  # the step whose forward first ran with frozen ranges (0: not yet)

    def on_model(self, model) -> None:
        counts = E.convert(model, self.profile)
        E.set_mode(model, "calibrate")
        log.info("NNA profile %s: emulating %s; calibrating activation ranges for %d steps",
                 self.profile.describe(), ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing",
                 self.calib_steps)

    def on_step(self, step: int, model) -> None:
        if step <= self.calib_steps and not E.ranges_frozen(model):
            E.set_mode(model, "calibrate")
            return
        if not E.ranges_frozen(model):
            E.freeze_ranges(model)
            self.frozen_at = step
            log.info("step %d: activation ranges frozen; training with fake quantization", step)
        E.set_mode(model, "fake")

    def state_dict(self) -> Dict:
        return {"calib_steps": self.calib_steps, "frozen_at": self.frozen_at}

    def load_state_dict(self, state: Dict) -> None:
        self.frozen_at = int(state.get("frozen_at", 0))

    def checkpoint_meta(self) -> Dict:
        return E.transform_meta(self.profile, mode="fake", source=self.source)
