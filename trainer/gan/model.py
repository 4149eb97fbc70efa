"""The conditional GAN's parts: the projection discriminator (spectral norm), hinge and mode-seeking losses,
the EMA update, and the condition bank (shared-space vectors of artworks and audio clips that condition G).

The generator itself is the engine's (engine.models.generator); no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from trainer.art.encoder import ArtEncoder
from trainer.art.images import ArtImages


class DiscriminatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resolution: int = Field(128, ge=16, le=512)
    cond_dim: int = Field(128, gt=0)
    base_channels: int = Field(16, gt=0, description="channels of the first block; doubles per halving")
    max_channels: int = Field(256, gt=0)
    in_channels: int = Field(3, gt=0, description="3 for an image; 6 for the refiner's (image, up-sampled input) pairs")

    def channels(self) -> list[int]:
        """Output channels of each down block, from full resolution to 4x4."""
        n = int(np.log2(self.resolution)) - 2
        return [min(self.max_channels, self.base_channels * 2**i) for i in range(n)]


class DownBlock(nn.Module):
    """Pre-activation residual block with spectral norm; average-pools by 2 when `down`."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, first: bool) -> None:
        super().__init__()
        self.first = first
        self.down = down
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        # first block: pool then 1x1 (cheaper on the 3-channel input); later: 1x1 then pool
        if self.first:
            s = self.skip(F.avg_pool2d(x, 2) if self.down else x)
        else:
            s = self.skip(x)
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class ProjectionDiscriminator(nn.Module):
    """D(x [B, in_channels, R, R], c [B, cond_dim]) -> score [B]: psi(phi(x)) + <V c, phi(x)>."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = cfg
        ch = cfg.channels()
        blocks = []
        c_in = cfg.in_channels
        for i, c_out in enumerate(ch):
            blocks.append(DownBlock(c_in, c_out, down=True, first=i == 0))
            c_in = c_out
        blocks.append(DownBlock(c_in, c_in, down=False, first=False))  # 4x4
        self.blocks = nn.ModuleList(blocks)
        self.linear = spectral_norm(nn.Linear(c_in, 1))
        self.embed = spectral_norm(nn.Linear(cfg.cond_dim, c_in, bias=False))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        phi = F.relu(h).sum(dim=(2, 3))  # [B, C] global sum pooling
        return self.linear(phi).squeeze(1) + (self.embed(c) * phi).sum(dim=1)  # [B]


def d_hinge_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: real scores pushed above +1, fake below -1."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def g_hinge_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: raise D's score of fakes."""
    return -fake_scores.mean()


def mode_seeking_loss(
    x1: torch.Tensor, x2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, cap: float = 0.25
) -> torch.Tensor:
    """Diversity term against within-emotion collapse (mode seeking, Mao et al. 2019, in the bounded form of
    Yang et al. 2019): two latents under one condition should give images as different as the latents are.
    Returns -min(image distance / latent distance, cap), averaged; `cap` (about what two real artworks of
    one emotion score) stops it pushing for more variety than the art has. x [B, 3, R, R], z [B, Z]."""
    ratio = (x1 - x2).abs().mean(dim=(1, 2, 3)) / (z1 - z2).abs().mean(dim=1)  # [B]
    return -ratio.clamp(max=cap).mean()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN statistics) are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


@dataclass
class ConditionBank:
    """Shared vectors to condition on: one per real artwork, and optionally audio vectors by label."""

    art: torch.Tensor  # [N, S], art[i] belongs to real image i
    art_labels: torch.Tensor  # [N]
    audio: torch.Tensor | None = None  # [Na, S]
    audio_labels: torch.Tensor | None = None  # [Na]
    _audio_by_label: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.audio is not None and self.audio_labels is not None:
            n_classes = int(self.art_labels.max()) + 1
            self._audio_by_label = [torch.nonzero(self.audio_labels == c).flatten() for c in range(n_classes)]

    def for_images(self, index: torch.Tensor, audio_fraction: float, gen: torch.Generator) -> torch.Tensor:
        """The condition of each real image in `index`: its own vector, or (with probability
        audio_fraction) a random audio vector of its emotion."""
        c = self.art[index].clone()
        if self.audio is None or audio_fraction <= 0:
            return c
        swap = torch.rand(len(index), generator=gen) < audio_fraction
        for k in torch.nonzero(swap).flatten().tolist():
            pool = self._audio_by_label[int(self.art_labels[index[k]])]
            if len(pool):
                c[k] = self.audio[pool[torch.randint(len(pool), (1,), generator=gen)]]
        return c


def jitter(c: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Small Gaussian noise on unit condition vectors, re-normalised (robustness between clusters)."""
    if sigma <= 0:
        return c
    noise = torch.randn(c.shape, generator=gen) * (sigma / c.shape[1] ** 0.5)
    return F.normalize(c + noise, dim=1)


def condition_bank(
    art_encoder: ArtEncoder,
    art: ArtImages,
    audio_shared: torch.Tensor | None = None,
    audio_labels: np.ndarray | None = None,
) -> ConditionBank:
    """Shared vectors of every artwork from the (frozen) aligned image encoder, plus audio vectors if given."""
    _, shared = art_encoder.encode(art.tensor())
    return ConditionBank(
        art=shared,
        art_labels=torch.from_numpy(art.labels),
        audio=audio_shared,
        audio_labels=None if audio_labels is None else torch.from_numpy(np.asarray(audio_labels)),
    )
