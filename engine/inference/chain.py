"""The frame runner of the render path: the bundle's generator, followed by its learned up-sampler when the
bundle ships one (manifest key `upsampler`), on the same backend and device.

`FrameRunner(z, c) -> (image [1, 3, S, S],)` with S = the generator's resolution times the up-sampler's
factor (1 without one), so the render stages (keyframes, blending, grade) work at S and the final pygame
scale to the display stretches by the remaining factor only. The up-sampler runs once per generated
keyframe (in the generator thread when there is one), never per display frame.
"""

from __future__ import annotations

import logging

import numpy as np

from engine.inference.base import Component, Runner
from engine.models.bundle import Bundle

log = logging.getLogger("synesthesia.inference")


class FrameRunner(Runner):
    """Generator runner, then (optionally) up-sampler runner; the Runner interface of the generator."""

    component = Component.GENERATOR

    def __init__(self, generator: Runner, upsampler: Runner | None, resolution: int, factor: int = 1) -> None:
        self.generator = generator
        self.upsampler = upsampler
        self.kind = generator.kind
        self.device = generator.device
        self.factor = factor if upsampler is not None else 1
        self.resolution = int(resolution) * self.factor  # of the frames this runner returns

    def describe(self) -> str:
        text = self.generator.describe()
        return text if self.upsampler is None else f"{text} + up-sampler x{self.factor} ({self.upsampler.describe()})"

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        (image,) = self.generator(*inputs)[:1]
        if self.upsampler is None:
            return (image,)
        return self.upsampler(image)[:1]


def frame_runner(bundle: Bundle, generator: Runner, backend: str = "auto", upsample: bool = True) -> FrameRunner:
    """Wrap `generator` with the bundle's up-sampler (same device; `backend` as for the generator) if it
    has one and `upsample`; an up-sampler that opens on no backend is logged and skipped (plain path)."""
    from engine.inference.select import open_runner

    gen = bundle.manifest.generator
    up = bundle.manifest.upsampler
    resolution = gen.resolution if gen is not None else 0
    if up is None or not upsample:
        return FrameRunner(generator, None, resolution)
    try:
        selection = open_runner(bundle, Component.UPSAMPLER, backend, generator.device)
    except RuntimeError as exc:
        log.warning("up-sampler unavailable, frames are scaled by pygame alone: %s", exc)
        return FrameRunner(generator, None, resolution)
    log.info("render: %s", selection.message)
    return FrameRunner(generator, selection.runner, resolution, up.factor)
