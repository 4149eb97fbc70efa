"""Open a runner for a bundle component: a named backend, or `auto` = the fastest that works here."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import BundleError, MissingDependencyError
from engine.inference.base import BackendKind, Component, Runner, example_inputs
from engine.models.bundle import Bundle

log = logging.getLogger("synesthesia.inference")


@dataclass
class Selection:
    """The runner chosen and what happened on the way (shown in `status`)."""

    runner: Runner
    timings_ms: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        parts = [f"{self.runner.component.value}: using {self.runner.describe()}"]
        if self.timings_ms:
            parts.append("measured " + ", ".join(f"{k} {v:.2f} ms" for k, v in self.timings_ms.items()))
        if self.failures:
            parts.append("unavailable " + "; ".join(f"{k}: {v}" for k, v in self.failures.items()))
        return " | ".join(parts)


def cuda_available() -> bool:
    """Is a CUDA GPU usable (torch's answer)? Importing torch costs ~1.5 s of a show's start-up on two cores,
    so where no GPU can be there it is not asked: Linux without an NVIDIA device node (nor WSL's /dev/dxg),
    and macOS."""
    if "torch" not in sys.modules and not _gpu_device_possible():
        return False
    import torch

    return torch.cuda.is_available()


def _gpu_device_possible() -> bool:
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        dev = Path("/dev")
        return (dev / "dxg").exists() or any(dev.glob("nvidia[0-9]*"))
    return True  # Windows and the rest: only the driver knows


def _build(kind: BackendKind, bundle: Bundle, component: Component, device: str, threads: int = 0) -> Runner:
    if kind is BackendKind.TORCH:
        from engine.inference.torch_backend import TorchRunner

        return TorchRunner(bundle, component, device)
    if kind is BackendKind.ONNX:
        from engine.inference.onnx_backend import OnnxRunner

        return OnnxRunner(bundle, component, device, threads)
    from engine.inference.tensorrt_backend import TensorRTRunner

    return TensorRTRunner(bundle, component, device)


def candidates(device: str) -> list[tuple[BackendKind, str]]:
    """What `auto` tries, fastest-expected first."""
    if device == "cuda":
        return [
            (BackendKind.TENSORRT, "cuda"),
            (BackendKind.ONNX, "cuda"),
            (BackendKind.TORCH, "cuda"),
            (BackendKind.ONNX, "cpu"),
            (BackendKind.TORCH, "cpu"),
        ]
    return [(BackendKind.ONNX, "cpu"), (BackendKind.TORCH, "cpu")]


def open_runner(
    bundle: Bundle,
    component: Component,
    backend: BackendKind | str = BackendKind.AUTO,
    device: str = "auto",
    timing_runs: int = 10,
    threads: int = 0,
) -> Selection:
    """Load, warm up and return a runner (`threads`: ONNX Runtime's intra-op threads on the CPU, 0 its default).

    A named backend that fails falls back to the others, loudly (warning log + `Selection.failures`).
    `auto` warms up every backend that loads and keeps the one with the lowest measured latency; it stops
    at TensorRT on a GPU and at ONNX Runtime on the CPU, which nothing after them has beaten.
    """
    backend = BackendKind(backend)
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    order = candidates(device)
    if backend is not BackendKind.AUTO:
        wanted = [(backend, device)]
        order = wanted + [c for c in order if c != wanted[0]]
    example = example_inputs(component, bundle.manifest)
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    runners: dict[str, Runner] = {}
    for kind, dev in order:
        label = f"{kind.value}/{dev}"
        try:
            runner = _build(kind, bundle, component, dev, threads)
            runner.warmup(*example)
        except BundleError:
            raise
        except (MissingDependencyError, RuntimeError, OSError, ValueError, ImportError) as exc:
            failures[label] = str(exc).splitlines()[0][:200]
            log.warning("backend %s for %s failed: %s", label, component.value, failures[label])
            continue
        if backend is not BackendKind.AUTO:
            if failures:
                log.warning("falling back to %s for %s", label, component.value)
            return Selection(runner, failures=failures)
        start = time.perf_counter()
        for _ in range(timing_runs):
            runner(*example)
        timings[label] = (time.perf_counter() - start) * 1000.0 / timing_runs
        runners[label] = runner
        if kind is BackendKind.TENSORRT or (kind is BackendKind.ONNX and dev == "cpu"):
            # nothing after it in the order beats it here (on CPU, ONNX Runtime was 3-5x faster than eager
            # torch in every measurement, docs/benchmarks.md): skip the remaining loads, a second of start-up
            break
    if not runners:
        raise RuntimeError(f"no inference backend works for {component.value}: {failures}")
    best = min(timings, key=timings.__getitem__)
    selection = Selection(runners[best], timings, failures)
    log.info("backend auto: %s", selection.message)
    return selection
