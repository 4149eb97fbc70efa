"""Conditional generator G(z, c) -> image in [-1, 1] (docs/design.md §4).

Conditional batch norm: every upsampling block normalises without its own affine and takes scale and
shift from the shared-space condition, so one network paints every emotion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn


class GeneratorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resolution: int = Field(128, ge=32, le=256)
    z_dim: int = Field(64, gt=0)
    cond_dim: int = Field(128, gt=0)
    base_channels: int = Field(8, gt=0, description="channels at full resolution; doubles per halving")
    max_channels: int = Field(256, gt=0)

    @field_validator("resolution")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("resolution must be a power of two (32..256)")
        return v

    @property
    def n_blocks(self) -> int:
        return int(math.log2(self.resolution)) - 2  # 4x4 -> resolution

    def channels(self) -> list[int]:
        n = self.n_blocks
        return [min(self.max_channels, self.base_channels * 2 ** (n - i)) for i in range(n + 1)]


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine; gamma and beta come from the condition vector."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Linear(cond_dim, channels)
        self.beta = nn.Linear(cond_dim, channels)
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        g = self.gamma(cond)[:, :, None, None]  # [B, C, 1, 1]
        b = self.beta(cond)[:, :, None, None]
        return self.bn(x) * g + b


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv1(F.interpolate(F.relu(self.norm1(x, cond)), scale_factor=2.0, mode="nearest"))
        h = self.conv2(F.relu(self.norm2(h, cond)))
        return h + self.skip(up)


class Generator(nn.Module):
    """z [B, Z] and condition c [B, cond_dim] -> image [B, 3, R, R] in [-1, 1]."""

    input_names = ("z", "c")
    output_names = ("image",)

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.config = cfg
        ch = cfg.channels()
        self.ch0 = ch[0]
        # the condition enters twice: concatenated to z for the layout, and through every CBN for style
        self.fc = nn.Linear(cfg.z_dim + cfg.cond_dim, 4 * 4 * ch[0])
        self.blocks = nn.ModuleList(UpBlock(ch[i], ch[i + 1], cfg.cond_dim) for i in range(cfg.n_blocks))
        self.out_norm = nn.BatchNorm2d(ch[-1])
        self.out_conv = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, c], dim=1)).reshape(z.shape[0], self.ch0, 4, 4)  # [B, ch0, 4, 4]
        for block in self.blocks:
            h = block(h, c)
        return torch.tanh(self.out_conv(F.relu(self.out_norm(h))))
