"""Eager torch backend (CPU or CUDA): the reference the other backends are checked against."""

from __future__ import annotations

import numpy as np
import torch

from engine.errors import BundleError
from engine.inference.base import BackendKind, Component, Runner
from engine.models.bundle import Bundle
from engine.models.checkpoint import load_audio_model, load_generator, load_upsampler


def load_module(bundle: Bundle, component: Component) -> torch.nn.Module:
    if component is Component.AUDIO:
        name = bundle.manifest.encoder.torch
        if not name:
            raise BundleError(f"{bundle.path}: no torch checkpoint for the encoder (key 'encoder.torch')")
        return load_audio_model(bundle.file(name))
    if component is Component.UPSAMPLER:
        up = bundle.manifest.upsampler
        if up is None or not up.torch:
            raise BundleError(f"{bundle.path}: no torch checkpoint for the up-sampler (key 'upsampler.torch')")
        return load_upsampler(bundle.file(up.torch))
    gen = bundle.manifest.generator
    if gen is None or not gen.torch:
        raise BundleError(f"{bundle.path}: no torch checkpoint for the generator (key 'generator.torch')")
    return load_generator(bundle.file(gen.torch))


class TorchRunner(Runner):
    kind = BackendKind.TORCH

    def __init__(self, bundle: Bundle, component: Component, device: str = "cpu") -> None:
        self.component = component
        self.device = device
        self.module = load_module(bundle, component).to(device).eval()

    @torch.inference_mode()
    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        args = [torch.as_tensor(x, device=self.device) for x in inputs]
        out = self.module(*args)
        out = out if isinstance(out, tuple) else (out,)
        return tuple(o.float().cpu().numpy() for o in out)
