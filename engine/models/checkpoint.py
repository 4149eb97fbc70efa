"""Torch checkpoints that carry their model's config, so a module can be rebuilt from the file alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.errors import BundleError
from engine.models.encoders import EncoderConfig, build_encoder
from engine.models.generator import Generator, GeneratorConfig
from engine.models.heads import AudioModel, ProjectionHead


def _load(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise BundleError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise BundleError(f"{path}: not a Synesthesia checkpoint (no 'state_dict')")
    return ckpt


def audio_model_from_config(encoder: dict[str, Any], shared_dim: int, projection_hidden: int = 256) -> AudioModel:
    cfg = EncoderConfig.model_validate(encoder)
    return AudioModel(build_encoder(cfg), ProjectionHead(cfg.embedding_dim, shared_dim, projection_hidden))


def save_audio_model(model: AudioModel, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    head = model.projection.net
    torch.save(
        {
            "kind": "audio_model",
            "encoder": model.encoder.config.model_dump(mode="json"),
            "shared_dim": head[-1].out_features,
            "projection_hidden": head[0].out_features,
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        path,
    )


def load_audio_model(path: str | Path) -> AudioModel:
    path = Path(path)
    ckpt = _load(path)
    try:
        model = audio_model_from_config(ckpt["encoder"], ckpt["shared_dim"], ckpt.get("projection_hidden", 256))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{path}: checkpoint does not match its config ({exc})") from exc
    return model.eval()


def save_generator(model: Generator, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    torch.save(
        {
            "kind": "generator",
            "config": model.config.model_dump(mode="json"),
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        path,
    )


def load_generator(path: str | Path) -> Generator:
    path = Path(path)
    ckpt = _load(path)
    try:
        model = Generator(GeneratorConfig.model_validate(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{path}: checkpoint does not match its config ({exc})") from exc
    return model.eval()
