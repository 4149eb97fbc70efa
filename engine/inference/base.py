"""The one interface every inference backend implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from enum import StrEnum

import numpy as np


class BackendKind(StrEnum):
    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    TENSORRT = "tensorrt"


class Component(StrEnum):
    """The networks of a bundle a runner can serve."""

    AUDIO = "audio"  # features -> logits, va, embedding, shared
    GENERATOR = "generator"  # z, c -> image
    UPSAMPLER = "upsampler"  # image [B, 3, R, R] -> [B, 3, sR, sR] (optional, manifest key `upsampler`)


class Runner(ABC):
    """A loaded network on one backend and device.

    `__call__` takes numpy float32 arrays in the component's input order and returns numpy arrays in its
    output order. Runners own no threads; one runner is used by one thread at a time.
    """

    kind: BackendKind
    device: str
    component: Component

    @abstractmethod
    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]: ...

    def describe(self) -> str:
        return f"{self.kind.value}/{self.device}"

    def warmup(self, *example: np.ndarray, runs: int = 3) -> float:
        """Run a few times (allocators, kernels and graph optimisations settle); returns the last ms."""
        elapsed = 0.0
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            self(*example)
            elapsed = (time.perf_counter() - start) * 1000.0
        return elapsed


def example_inputs(component: Component, bundle_manifest, batch: int = 1) -> tuple[np.ndarray, ...]:
    """Deterministic example inputs of the right shapes, for warm-up, parity checks and benchmarks."""
    rng = np.random.default_rng(0)
    if component is Component.AUDIO:
        audio = bundle_manifest.audio
        n_frames = 1 + round(audio.window_s * audio.sample_rate) // audio.hop_length
        return (rng.standard_normal((batch, 1, audio.n_mels, n_frames), dtype=np.float32),)
    gen = bundle_manifest.generator
    if component is Component.UPSAMPLER:
        r = gen.resolution
        return (np.tanh(rng.standard_normal((batch, 3, r, r), dtype=np.float32)),)
    c = rng.standard_normal((batch, bundle_manifest.shared_dim), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return rng.standard_normal((batch, gen.z_dim), dtype=np.float32), c
