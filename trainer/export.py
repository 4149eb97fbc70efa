"""Export trained networks into a model bundle: torch checkpoints, ONNX with parity checks, manifest."""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.audio.frontend import FrontEndConfig
from engine.models.bundle import Manifest, write_manifest
from engine.models.checkpoint import save_audio_model, save_generator
from engine.models.encoders import count_parameters
from engine.models.generator import Generator
from engine.models.heads import AudioModel

log = logging.getLogger("synesthesia.export")

ONNX_OPSET = 17
PARITY_ATOL = 1e-4  # max abs difference ORT vs torch (float32 on CPU); exported outputs are O(1)


class ExportError(RuntimeError):
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
    audio_model: AudioModel,
    classes: Sequence[str],
    frontend: FrontEndConfig,
    mel_mean: Sequence[float] | np.ndarray,
    mel_std: Sequence[float] | np.ndarray,
    generator: Generator | None = None,
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
    enc_cfg = audio_model.encoder.config
    frames = frontend.n_frames
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
    shared_dim = audio_model.projection.net[-1].out_features
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
            "parameters": count_parameters(audio_model.encoder),
            "onnx": "audio_model.onnx",
            "torch": "audio_model.pt",
            "config": enc_cfg.model_dump(mode="json"),
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
    if art_index is not None:
        np.savez_compressed(out / "art_index.npz", **art_index)
        manifest["art_index"] = {"file": "art_index.npz", "count": len(art_index["vectors"])}
    for fname, src in (extra_files or {}).items():
        dst = out / fname
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    manifest["metrics"].setdefault("export_parity_max_abs", parity)
    return write_manifest(out, manifest)
