"""ONNX Runtime backend: CPU, plus the CUDA and TensorRT execution providers when they are installed."""

from __future__ import annotations

import numpy as np

from engine.deps import require
from engine.errors import BundleError
from engine.inference.base import BackendKind, Component, Runner
from engine.models.bundle import Bundle


def onnx_file(bundle: Bundle, component: Component) -> str:
    if component is Component.AUDIO:
        return str(bundle.file(bundle.manifest.encoder.onnx))
    if component is Component.UPSAMPLER:
        if bundle.manifest.upsampler is None:
            raise BundleError(f"{bundle.path}: the bundle has no up-sampler (key 'upsampler')")
        return str(bundle.file(bundle.manifest.upsampler.onnx))
    if bundle.manifest.generator is None:
        raise BundleError(f"{bundle.path}: the bundle has no generator (key 'generator')")
    return str(bundle.file(bundle.manifest.generator.onnx))


def providers_for(device: str, available: list[str]) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = [p for p in wanted if p in available]
    if "CUDAExecutionProvider" not in chosen:
        raise RuntimeError(f"onnxruntime has no CUDA execution provider (available: {', '.join(available)})")
    return chosen


class OnnxRunner(Runner):
    kind = BackendKind.ONNX

    def __init__(self, bundle: Bundle, component: Component, device: str = "cpu", threads: int = 0) -> None:
        ort = require("onnxruntime", "the onnx backend")
        self.component = component
        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads  # 0: one per physical core
        # pool threads sleep between calls instead of spinning: the engine's stages share few cores, and a
        # generator's spinning pool thread took ~80 % of a second core from NDI, the analysis and the capture
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        path = onnx_file(bundle, component)
        try:
            self.session = ort.InferenceSession(
                path, sess_options=opts, providers=providers_for(device, ort.get_available_providers())
            )
        except (RuntimeError, ValueError) as exc:  # onnxruntime raises its own Fail/InvalidGraph (RuntimeError)
            raise BundleError(f"{path}: onnxruntime cannot load it ({exc})") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.providers = self.session.get_providers()

    def describe(self) -> str:
        return f"onnx/{self.device} ({self.providers[0]})"

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        feeds = {
            name: np.ascontiguousarray(x, dtype=np.float32) for name, x in zip(self.input_names, inputs, strict=True)
        }
        return tuple(self.session.run(None, feeds))
