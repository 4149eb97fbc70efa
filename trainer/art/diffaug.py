"""Differentiable augmentation in torch (after Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training"): the same random transforms are applied to real and generated images
before the discriminator, and gradients flow through them to the generator, so D does not overfit a small
corpus and G does not learn the augmentations.

Colour is where this project's art carries its emotion, so colour changes are mild by default and only
on when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F


class DiffAugPolicy(StrEnum):
    COLOUR = "colour"  # brightness, saturation, contrast (mild)
    TRANSLATION = "translation"  # shift by up to 1/8 of the side, zero padded
    CUTOUT = "cutout"  # one zeroed square of half the side


def colour(x: torch.Tensor, strength: float = 0.25) -> torch.Tensor:
    """x [B, 3, H, W] in [-1, 1]: random brightness shift, saturation and contrast scale per image."""
    b = x.shape[0]
    shape = (b, 1, 1, 1)
    x = x + (torch.rand(shape, device=x.device) - 0.5) * strength  # brightness
    mean_c = x.mean(dim=1, keepdim=True)  # [B, 1, H, W]
    x = (x - mean_c) * (1.0 + (torch.rand(shape, device=x.device) * 2 - 1) * strength) + mean_c  # saturation
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return (x - mean_all) * (1.0 + (torch.rand(shape, device=x.device) * 2 - 1) * strength) + mean_all


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift every image by its own random (dy, dx) within +-ratio of the side; vacated pixels are 0."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if sy == 0 and sx == 0:
        return x
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    ys = (gy[None] + dy + 1).clamp(0, h + 1)  # [B, H, W] rows in the padded image
    xs = (gx[None] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # [B, C, H + 2, W + 2], a zero border to read from when out of range
    flat = padded.reshape(b, x.shape[1], -1)  # [B, C, (H + 2) * (W + 2)]
    idx = (ys * (w + 2) + xs).reshape(b, 1, -1).expand(-1, x.shape[1], -1)  # [B, C, H * W]
    return flat.gather(2, idx).reshape_as(x)  # [B, C, H, W]


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of side `ratio` x side per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy[None] - cy).abs() < ch / 2) & ((gx[None] - cx).abs() < cw / 2)  # [B, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: Sequence[DiffAugPolicy], colour_strength: float = 0.25) -> torch.Tensor:
    """Apply the policy's transforms in a fixed order (colour, translation, cutout)."""
    if DiffAugPolicy.COLOUR in policy:
        x = colour(x, colour_strength)
    if DiffAugPolicy.TRANSLATION in policy:
        x = translation(x)
    if DiffAugPolicy.CUTOUT in policy:
        x = cutout(x)
    return x
