"""The art side of the shared space: a small image CNN trained from scratch, and its projection head.

`ArtEncoder` maps images [B, 3, R, R] in [-1, 1] (resized to `input_size` inside) to
`features [B, F]` (the project's own image-feature space, used by the GAN metrics), `logits [B, C]`
(an auxiliary emotion classifier) and `shared [B, S]` (L2-normalised, the audio–art space).

Pretrained backbones: none ship with the project and nothing is downloaded. `pretrained` in the config
names a torch state dict on disk for the body (same architecture, e.g. trained on a larger art corpus);
it is loaded before training with non-strict key matching and every missing key is logged. This is the
hook for a stronger backbone where weights exist on disk; the default trains from scratch.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from engine.errors import BundleError
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.models.heads import ProjectionHead

log = logging.getLogger("synesthesia.art")


class Backbone(StrEnum):
    SCRATCH = "scratch"  # the small CNN below, random init


class ImageEncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: Backbone = Backbone.SCRATCH
    input_size: int = Field(64, ge=16, le=256, description="images are area-resized to this before the CNN")
    width: int = Field(16, gt=0, description="channels of the stem; doubles per stage")
    stages: int = Field(4, ge=2, le=6)
    feature_dim: int = Field(128, gt=0)
    n_classes: int = Field(4, ge=2)
    shared_dim: int = Field(128, gt=0)
    projection_hidden: int = Field(256, gt=0)
    pretrained: str | None = Field(None, description="state dict on disk for the body (see module docstring)")


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ImageBody(nn.Module):
    """Stem, then `stages` x (stride-2 conv, conv); global mean and max pooling; linear to F."""

    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, cfg.width, 1)]
        c = cfg.width
        for i in range(cfg.stages):
            c_out = cfg.width * 2 ** (i + 1)
            layers += [_conv_bn(c, c_out, 2), _conv_bn(c_out, c_out, 1)]
            c = c_out
        self.net = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * c, cfg.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)  # [B, C, R / 2^stages, R / 2^stages]
        return self.fc(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))  # [B, F]


class ArtEncoder(nn.Module):
    """images [B, 3, R, R] in [-1, 1] -> features [B, F], logits [B, C], shared [B, S]."""

    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.body = ImageBody(cfg)
        self.classifier = nn.Linear(cfg.feature_dim, cfg.n_classes)
        self.projection = ProjectionHead(cfg.feature_dim, cfg.shared_dim, cfg.projection_hidden)
        if cfg.pretrained:
            load_backbone_weights(self.body, Path(cfg.pretrained))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        if images.shape[-1] == size:
            return images
        mode = "area" if images.shape[-1] > size else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        return F.interpolate(images, size=(size, size), mode=mode, **kwargs)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.body(self.prepare(images))
        return features, self.classifier(features), self.projection(features)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [N, F], shared [N, S]) in eval mode, batched."""
        was_training = self.training
        self.eval()
        feats, shared = [], []
        for i in range(0, len(images), batch_size):
            f, _, s = self(images[i : i + batch_size])
            feats.append(f)
            shared.append(s)
        self.train(was_training)
        return torch.cat(feats), torch.cat(shared)


def load_backbone_weights(body: nn.Module, path: Path) -> None:
    """Load a body state dict from disk (non-strict); log what did not match."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrained image backbone not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = body.load_state_dict(state, strict=False)
    log.info(
        "loaded image backbone %s (%d missing, %d unexpected keys)",
        path,
        len(result.missing_keys),
        len(result.unexpected_keys),
    )


def save_art_encoder(model: ArtEncoder, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """art_encoder.pt: config + weights (+ extras such as the VA readout), written atomically."""
    save_checkpoint(
        {
            "kind": "art_encoder",
            "config": model.config.model_dump(mode="json"),
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        path,
    )


def load_art_encoder(path: str | Path) -> ArtEncoder:
    path = Path(path)
    ckpt = load_checkpoint(path, "art_encoder", required=("config", "state_dict"))
    try:
        cfg = ImageEncoderConfig.model_validate({**ckpt["config"], "pretrained": None})
        model = ArtEncoder(cfg)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{path}: checkpoint does not match its config ({exc})") from exc
    return model.eval()
