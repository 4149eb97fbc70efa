"""Torch checkpoints that carry their model's config, so a module can be rebuilt from the file alone.

`save_checkpoint` / `load_checkpoint` are the one way every checkpoint (bundle weights, training resume
files, GAN state) is written and read: atomically, as a dict with a `kind`, loaded with `weights_only`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from engine.atomicfile import atomic_path
from engine.errors import BundleError
from engine.models.encoders import EncoderConfig, build_encoder
from engine.models.ensemble import EnsembleAudioModel
from engine.models.generator import Generator, GeneratorConfig
from engine.models.heads import AudioModel, ProjectionHead
from engine.models.upsampler import Upsampler, UpsamplerConfig


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """torch.save `payload` (a dict with a "kind") to `path` atomically: a crash keeps the previous file."""
    if "kind" not in payload:
        raise ValueError("a checkpoint names its kind")
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, kind: str | None = None, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; BundleError names the file and what is wrong."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise BundleError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict):
        raise BundleError(f"{path}: not a Synesthesia checkpoint")
    if kind is not None and ckpt.get("kind", kind) != kind:
        raise BundleError(f"{path}: a {ckpt.get('kind')!r} checkpoint, expected {kind!r}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise BundleError(f"{path}: checkpoint lacks {', '.join(map(repr, missing))}")
    return ckpt


def _load(path: Path) -> dict[str, Any]:
    return load_checkpoint(path, required=("state_dict",))


def audio_model_from_config(encoder: dict[str, Any], shared_dim: int, projection_hidden: int = 256) -> AudioModel:
    cfg = EncoderConfig.model_validate(encoder)
    return AudioModel(build_encoder(cfg), ProjectionHead(cfg.embedding_dim, shared_dim, projection_hidden))


def save_audio_model(model: AudioModel, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    head = model.projection.net
    save_checkpoint(
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
    """An AudioModel, or an EnsembleAudioModel (same interface) for an `audio_ensemble` checkpoint."""
    path = Path(path)
    ckpt = _load(path)
    try:
        if ckpt.get("kind") == ENSEMBLE_KIND:
            return ensemble_from_checkpoint(ckpt)  # type: ignore[return-value]
        model = audio_model_from_config(ckpt["encoder"], ckpt["shared_dim"], ckpt.get("projection_hidden", 256))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{path}: checkpoint does not match its config ({exc})") from exc
    return model.eval()


ENSEMBLE_KIND = "audio_ensemble"


def save_ensemble(model: EnsembleAudioModel, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """A fold ensemble: the members' (shared) config, the whole state dict, and `extra`."""
    first = model.members[0]
    save_checkpoint(
        {
            "kind": ENSEMBLE_KIND,
            "members": len(model.members),
            "encoder": first.encoder.config.model_dump(mode="json"),
            "shared_dim": model.shared_dim,
            "projection_hidden": first.projection.net[0].out_features,
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        path,
    )


def ensemble_from_checkpoint(ckpt: dict[str, Any]) -> EnsembleAudioModel:
    """Rebuild a `save_ensemble` checkpoint (KeyError/RuntimeError on a mismatch)."""
    hidden = ckpt.get("projection_hidden", 256)
    members = [audio_model_from_config(ckpt["encoder"], ckpt["shared_dim"], hidden) for _ in range(ckpt["members"])]
    model = EnsembleAudioModel(members)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def save_generator(model: Generator, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    save_checkpoint(
        {
            "kind": "generator",
            "config": model.config.model_dump(mode="json"),
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        path,
    )


def _config_module(path: str | Path, build: Any, config_type: Any) -> Any:
    """A module `build(config)` from a checkpoint with "config" and "state_dict", in eval mode."""
    path = Path(path)
    ckpt = _load(path)
    try:
        model = build(config_type.model_validate(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{path}: checkpoint does not match its config ({exc})") from exc
    return model.eval()


def load_generator(path: str | Path) -> Generator:
    return _config_module(path, Generator, GeneratorConfig)


def save_upsampler(model: Upsampler, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    save_checkpoint(
        {"kind": "upsampler", "config": model.config.model_dump(mode="json"), "state_dict": model.state_dict()}
        | (extra or {}),
        path,
    )


def load_upsampler(path: str | Path) -> Upsampler:
    return _config_module(path, Upsampler, UpsamplerConfig)
