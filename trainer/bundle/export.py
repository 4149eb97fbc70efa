"""Export trained networks into a model bundle: torch checkpoints, ONNX with parity checks, manifest."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.atomicfile import atomic_path
from engine.audio.frontend import FrontEndConfig
from engine.errors import SynesthesiaError
from engine.inference.base import Component, example_inputs
from engine.models.bundle import MANIFEST, Manifest, load_bundle, write_manifest
from engine.models.checkpoint import load_audio_model, save_audio_model, save_ensemble, save_generator, save_upsampler
from engine.models.encoders import count_parameters
from engine.models.ensemble import EnsembleAudioModel
from engine.models.generator import Generator
from engine.models.heads import AudioModel
from engine.models.upsampler import Upsampler
from trainer.audio.loop import checkpoint_info

log = logging.getLogger("synesthesia.export")

ONNX_OPSET = 17
PARITY_ATOL = 1e-4  # max abs difference ORT vs torch (float32 on CPU); exported outputs are O(1)


class ExportError(SynesthesiaError, RuntimeError):
    """Export failed or the exported graph does not match torch."""


def export_onnx(
    module: torch.nn.Module,
    example: Sequence[torch.Tensor],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    atol: float = PARITY_ATOL,
) -> float:
    """Export with a dynamic batch axis, then check ONNX Runtime against torch on a batch of 3.

    Returns the max abs difference; raises ExportError when it exceeds `atol`.
    """
    import onnxruntime as ort

    module = module.eval().cpu()
    dynamic = {name: {0: "batch"} for name in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation chatter
        torch.onnx.export(
            module,
            tuple(example),
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    gen = torch.Generator().manual_seed(1)
    batch = [torch.randn((3, *x.shape[1:]), generator=gen) for x in example]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: x.numpy() for n, x in zip(input_names, batch, strict=True)})
    with torch.no_grad():
        ref = module(*batch)
    ref = ref if isinstance(ref, tuple) else (ref,)
    err = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref, strict=True))
    if not err <= atol:
        raise ExportError(f"{path}: ONNX Runtime differs from torch by {err:.3g} (tolerance {atol:g})")
    log.info("exported %s (parity %.2g)", path, err)
    return err


def write_bundle(
    out_dir: str | Path,
    *,
    name: str,
    audio_model: AudioModel | EnsembleAudioModel,
    classes: Sequence[str],
    frontend: FrontEndConfig,
    mel_mean: Sequence[float] | np.ndarray,
    mel_std: Sequence[float] | np.ndarray,
    generator: Generator | None = None,
    upsampler: Upsampler | None = None,
    art_index: dict[str, np.ndarray] | None = None,
    metrics: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    license: str = "unspecified",
    extra_files: dict[str, Path] | None = None,
    overwrite: bool = True,
) -> Manifest:
    """Write a complete bundle directory and return its validated manifest."""
    out = Path(out_dir)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    members = audio_model.members if isinstance(audio_model, EnsembleAudioModel) else None
    frames = frontend.n_frames
    if members is not None:  # a fold ensemble: one graph, the members' shared config, `ensemble: K`
        enc_cfg = audio_model.config
        shared_dim = audio_model.shared_dim
        parameters = sum(count_parameters(m.encoder) for m in members)
        save_ensemble(audio_model, out / "audio_model.pt")
    else:
        enc_cfg = audio_model.encoder.config
        shared_dim = audio_model.projection.net[-1].out_features
        parameters = count_parameters(audio_model.encoder)
        save_audio_model(audio_model, out / "audio_model.pt")
    parity = {
        "audio_model": export_onnx(
            audio_model,
            [torch.zeros(1, 1, frontend.n_mels, frames)],
            out / "audio_model.onnx",
            ["features"],
            AudioModel.output_names,
        )
    }
    manifest: dict[str, Any] = {
        "name": name,
        "classes": list(classes),
        "audio": {
            **frontend.model_dump(),
            "mel_mean": [float(v) for v in np.ravel(mel_mean)],
            "mel_std": [float(v) for v in np.ravel(mel_std)],
        },
        "encoder": {
            "arch": enc_cfg.arch.value,
            "embedding_dim": enc_cfg.embedding_dim,
            "parameters": parameters,
            "onnx": "audio_model.onnx",
            "torch": "audio_model.pt",
            "config": enc_cfg.model_dump(mode="json"),
            **({"ensemble": len(members)} if members is not None else {}),
        },
        "shared_dim": shared_dim,
        "metrics": dict(metrics or {}),
        "data": dict(data or {}),
        "license": license,
    }
    if generator is not None:
        gcfg = generator.config
        save_generator(generator, out / "generator.pt")
        z = torch.zeros(1, gcfg.z_dim)
        c = torch.nn.functional.normalize(torch.ones(1, gcfg.cond_dim), dim=1)
        parity["generator"] = export_onnx(
            generator, [z, c], out / "generator.onnx", Generator.input_names, Generator.output_names, atol=1e-3
        )
        manifest["generator"] = {
            "resolution": gcfg.resolution,
            "z_dim": gcfg.z_dim,
            "onnx": "generator.onnx",
            "torch": "generator.pt",
            "config": gcfg.model_dump(mode="json"),
            "parameters": count_parameters(generator),
        }
    if generator is not None and upsampler is not None:
        parity["upsampler"], manifest["upsampler"] = export_upsampler(upsampler, out, generator.config.resolution)
    if art_index is not None:
        with atomic_path(out / "art_index.npz", suffix=".npz") as tmp:
            np.savez_compressed(tmp, **art_index)
        manifest["art_index"] = {"file": "art_index.npz", "count": len(art_index["vectors"])}
    for fname, src in (extra_files or {}).items():
        dst = out / fname
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    manifest["metrics"].setdefault("export_parity_max_abs", parity)
    return write_manifest(out, manifest)


def export_upsampler(upsampler: Upsampler, out: Path, resolution: int) -> tuple[float, dict[str, Any]]:
    """upsampler.pt + upsampler.onnx (parity-checked) into a bundle directory; returns (parity, manifest key)."""
    save_upsampler(upsampler, out / "upsampler.pt")
    example = [torch.zeros(1, 3, resolution, resolution)]
    err = export_onnx(upsampler, example, out / "upsampler.onnx", Upsampler.input_names, Upsampler.output_names)
    section = {
        "factor": upsampler.config.factor,
        "onnx": "upsampler.onnx",
        "torch": "upsampler.pt",
        "config": upsampler.config.model_dump(mode="json"),
        "parameters": count_parameters(upsampler),
    }
    return err, section


# -- `synesthesia-train export` -----------------------------------------------------------------------------


class TensorRTMode(StrEnum):
    AUTO = "auto"  # compile when CUDA and torch-tensorrt are present, else skip with one line
    ON = "on"  # compile or fail
    OFF = "off"


TRT_ATOL = 5e-2  # FP16 engine vs FP32 torch; outputs are O(1) (logits, tanh, unit vectors)


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    license: str = "unspecified",
    metrics: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    tensorrt: TensorRTMode = TensorRTMode.AUTO,
) -> Manifest:
    """A training checkpoint (best.pt) -> a complete bundle with ONNX (parity-checked) and, when possible,
    a TensorRT program."""
    info = checkpoint_info(checkpoint)
    model = load_audio_model(checkpoint)
    cfg = info.get("train_config", {})
    manifest = write_bundle(
        out,
        name=name or f"{cfg.get('arch', 'audio')}-{info.get('taxonomy', {}).get('name', 'custom')}",
        audio_model=model,
        classes=info["classes"],
        frontend=FrontEndConfig.model_validate(info["frontend"]),
        mel_mean=info["mel_mean"],
        mel_std=info["mel_std"],
        metrics=metrics if metrics is not None else info.get("metrics", {}),
        data=data
        if data is not None
        else {"corpora": cfg.get("data", []), "split": info.get("split", {}), "taxonomy": info.get("taxonomy", {})},
        license=license,
    )
    return compile_tensorrt(out, tensorrt) or manifest


def compile_tensorrt(
    out: str | Path, mode: TensorRTMode = TensorRTMode.AUTO, component: str = "audio"
) -> Manifest | None:
    """Compile one network of the bundle (`component`: audio or generator) with torch-tensorrt (FP16),
    check it against torch, add it to the manifest under its cache key. Returns the new manifest, or None
    when skipped (said in one line).

    The program is built for the engine's own example inputs (batch 1, what the live analysis and
    render loops run), so `engine.inference.tensorrt_backend` loads it as is.
    """
    if mode is TensorRTMode.OFF:
        return None
    reason = None
    if not torch.cuda.is_available():
        reason = "no CUDA GPU visible"
    elif importlib.util.find_spec("torch_tensorrt") is None:
        reason = "torch_tensorrt is not installed (pip install 'synesthesia[tensorrt]')"
    if reason:
        if mode is TensorRTMode.ON:
            raise ExportError(f"TensorRT compile requested but {reason}")
        log.info("TensorRT (%s): skipped (%s)", component, reason)
        return None
    import torch_tensorrt as trt

    from engine.inference.tensorrt_backend import cache_key
    from engine.inference.torch_backend import load_module

    part = Component(component)
    out = Path(out)
    bundle = load_bundle(out)
    module = load_module(bundle, part).cuda().eval()
    example = [torch.as_tensor(x, device="cuda") for x in example_inputs(part, bundle.manifest)]
    compiled = trt.compile(module, ir="dynamo", inputs=example, enabled_precisions={torch.float16})
    with torch.no_grad():
        err = max(
            float((a.float() - b.float()).abs().max())
            for a, b in zip(compiled(*example), module(*example), strict=True)
        )
    if not err <= TRT_ATOL:
        raise ExportError(f"TensorRT FP16 differs from torch by {err:.3g} (tolerance {TRT_ATOL:g})")
    key = cache_key(part, getattr(trt, "__version__", "unknown"))
    fname = f"tensorrt/{key}.ep"
    (out / "tensorrt").mkdir(exist_ok=True)
    trt.save(compiled, str(out / fname), inputs=example)
    raw = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    raw["tensorrt"] = {**raw.get("tensorrt", {}), key: fname}
    raw["files"] = sorted({*raw["files"], fname})
    parity_key = "tensorrt_fp16" if part is Component.AUDIO else f"tensorrt_fp16_{part.value}"
    raw.setdefault("metrics", {}).setdefault("export_parity_max_abs", {})[parity_key] = err
    log.info("TensorRT: compiled %s (parity %.2g)", fname, err)
    return write_manifest(out, raw)
