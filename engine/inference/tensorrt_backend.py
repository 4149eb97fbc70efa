"""TensorRT backend through torch-tensorrt (FP16), compiled once per GPU and software versions.

Compiled programs are cached under ~/.cache/synesthesia/tensorrt/<bundle digest>/ and named after what
changes them (component, GPU, torch and torch-tensorrt versions, precision); a bundle may also ship
precompiled ones under its `tensorrt` key.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from engine.atomicfile import atomic_path
from engine.deps import require
from engine.inference.base import BackendKind, Component, Runner, example_inputs
from engine.inference.torch_backend import load_module
from engine.models.bundle import Bundle

log = logging.getLogger("synesthesia.inference")


def cache_key(component: Component, trt_version: str, precision: str = "fp16") -> str:
    gpu = torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "nogpu"
    return f"{component.value}-{gpu}-torch{torch.__version__}-trt{trt_version}-{precision}"


def cache_dir(bundle: Bundle) -> Path:
    from engine.audio.frontend_config import cache_root

    return cache_root() / "tensorrt" / bundle.digest


class TensorRTRunner(Runner):
    kind = BackendKind.TENSORRT

    def __init__(self, bundle: Bundle, component: Component, device: str = "cuda") -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs a CUDA GPU; none is visible")
        trt = require("torch_tensorrt", "the tensorrt backend")
        self.component = component
        self.device = "cuda"
        key = cache_key(component, getattr(trt, "__version__", "unknown"))
        shipped = bundle.manifest.tensorrt.get(key)
        path = bundle.file(shipped) if shipped else cache_dir(bundle) / f"{key}.ep"
        self.module = None
        if path.is_file():
            try:
                self.module = trt.load(str(path)).module()
            except (OSError, RuntimeError, ValueError, EOFError) as exc:  # a damaged cache: compile again
                if shipped:
                    raise
                log.warning("TensorRT cache %s unreadable (%s); compiling again", path, exc)
        if self.module is None:
            module = load_module(bundle, component).to("cuda").eval()
            example = [torch.as_tensor(x, device="cuda") for x in example_inputs(component, bundle.manifest)]
            self.module = trt.compile(module, ir="dynamo", inputs=example, enabled_precisions={torch.float16})
            with atomic_path(path, suffix=".ep") as tmp:  # a crash mid-save must not leave half an engine
                trt.save(self.module, str(tmp), inputs=example)
        self.cache_path = path

    @torch.inference_mode()
    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.module(*[torch.as_tensor(x, device="cuda") for x in inputs])
        out = out if isinstance(out, tuple | list) else (out,)
        return tuple(o.float().cpu().numpy() for o in out)
