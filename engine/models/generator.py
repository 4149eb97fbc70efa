"""Conditional generator G(z, c) -> image in [-1, 1] (docs/design.md §4).

Conditional batch norm: every upsampling block normalises without its own affine and takes scale and
shift from the shared-space condition, so one network paints every emotion.

Two architectures share the `G(z, c) -> [B, 3, R, R]` contract (docs/art_training.md §3):

- `arch="v1"` (the seed's, and what a config without `arch` means): nearest-neighbour upsampling inside
  residual blocks, width `base_channels` at full resolution.
- `arch="v2"` (the default for new training): each option below is a config field, so an ablation can
  switch them one at a time — `upsample` (`nearest`, `bilinear`, `blur`: nearest then a fixed [1,2,1]²
  low-pass, resize-then-conv as in Odena et al. 2016), `noise` (per-pixel noise inputs with learnt
  per-channel strength, StyleGAN), `sle` (skip-layer excitation, FastGAN: a 4-8 px map gates the
  channels of a block at 16x the resolution), `min_channels` (a floor on the width at high resolution).
  Noise is drawn from torch's generator in training; in eval mode and in ONNX it is a fixed buffer, so
  the exported network is a deterministic function of (z, c).
- `arch="cascade"`: a v2 generator paints the layout at `base_resolution` and a `Refiner` adds the detail up
  to `resolution` (a Laplacian-pyramid cascade, Denton et al. 2015). The two parts train apart, the base as
  a small GAN and the refiner as a conditional super-resolution GAN on crops of the corpus, which is what
  makes 256 px affordable on two CPU cores; the exported network is still one G(z, c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.configs import GeneratorConfig


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


def blur_kernel(channels: int) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    k2 = (k[:, None] * k[None, :]) / 16.0
    return k2.expand(channels, 1, 3, 3).contiguous()


class Upsample(nn.Module):
    """x2: nearest, bilinear, or nearest followed by a fixed depthwise [1,2,1]^2 low-pass (anti-alias)."""

    def __init__(self, channels: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "blur":
            self.register_buffer("kernel", blur_kernel(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.mode == "blur":
            x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel, groups=x.shape[1])
        return x


class NoiseInput(nn.Module):
    """x + strength[c] * noise[h, w]: fresh noise in training, a fixed buffer in eval (ONNX-exportable)."""

    def __init__(self, channels: int, resolution: int, seed: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))
        fixed = torch.randn(1, 1, resolution, resolution, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("fixed", fixed, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.fixed.to(x.dtype)
        return x + self.strength * noise


class SkipExcitation(nn.Module):
    """FastGAN's skip-layer excitation: a low-resolution map -> per-channel gates for a high-res block."""

    def __init__(self, c_low: int, c_high: int, low_resolution: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(low_resolution // 4),  # -> 4x4 (a fixed kernel: ONNX-exportable)
            nn.Conv2d(c_low, c_high, 4),
            nn.LeakyReLU(0.1),
            nn.Conv2d(c_high, c_high, 1),
            nn.Sigmoid(),
        )

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return high * self.net(low)


class UpBlockV2(nn.Module):
    """Resize-then-conv residual block: CBN, ReLU, anti-aliased x2, conv, [noise], CBN, ReLU, conv, [noise]."""

    def __init__(self, c_in: int, c_out: int, cfg: GeneratorConfig, resolution: int, index: int) -> None:
        super().__init__()
        self.up_h = Upsample(c_in, cfg.upsample)
        self.up_x = Upsample(c_in, cfg.upsample)
        self.norm1 = ConditionalBatchNorm2d(c_in, cfg.cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate")
        self.norm2 = ConditionalBatchNorm2d(c_out, cfg.cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="replicate")
        self.skip = nn.Conv2d(c_in, c_out, 1)
        self.noise1 = NoiseInput(c_out, resolution, 2 * index) if cfg.noise else None
        self.noise2 = NoiseInput(c_out, resolution, 2 * index + 1) if cfg.noise else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.up_h(F.relu(self.norm1(x, cond))))
        if self.noise1 is not None:
            h = self.noise1(h)
        h = self.conv2(F.relu(self.norm2(h, cond)))
        if self.noise2 is not None:
            h = self.noise2(h)
        return h + self.skip(self.up_x(x))


class Refiner(nn.Module):
    """x [B, 3, r, r] in [-1, 1] and c [B, cond_dim] -> [B, 3, R, R]: conditional detail for R = r * 2^k.

    A stem convolution, then one resize-then-conv block per x2 (CBN from c, noise inputs), and an RGB
    residual added to the bilinear up-sample of x, so colours and layout stay x's and the network only
    paints what the up-sample lacks: edges, strokes, grain. Fully convolutional, so it trains on crops.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        ch = cfg.refiner_channels
        self.factor = cfg.resolution // cfg.base_resolution
        self.stem = nn.Conv2d(3, ch[0], 3, padding=1, padding_mode="replicate")
        levels = cfg.model_copy(update={"upsample": "blur", "noise": True})
        # noise seeds after the base's (which uses 2 * block index), so the two grains differ
        self.blocks = nn.ModuleList(
            UpBlockV2(ch[i], ch[i + 1], levels, cfg.base_resolution * 2 ** (i + 1), 32 + i) for i in range(len(ch) - 1)
        )  # fmt: skip
        self.out_norm = nn.BatchNorm2d(ch[-1])
        self.out_conv = nn.Conv2d(ch[-1], 3, 3, padding=1, padding_mode="replicate")
        # zero residual at the start: an untrained refiner is the bilinear up-sample, a stable first step
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, cond)
        up = F.interpolate(x, scale_factor=float(self.factor), mode="bilinear", align_corners=False)
        return (up + self.out_conv(F.relu(self.out_norm(h)))).clamp(-1.0, 1.0)


class Generator(nn.Module):
    """z [B, Z] and condition c [B, cond_dim] -> image [B, 3, R, R] in [-1, 1]."""

    input_names = ("z", "c")
    output_names = ("image",)

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.config = cfg
        if cfg.arch == "cascade":
            self.base = Generator(cfg.base())
            self.refiner = Refiner(cfg)
            return
        ch = cfg.channels()
        self.ch0 = ch[0]
        # the condition enters twice: concatenated to z for the layout, and through every CBN for style
        self.fc = nn.Linear(cfg.z_dim + cfg.cond_dim, 4 * 4 * ch[0])
        if cfg.arch == "v1":
            self.blocks = nn.ModuleList(UpBlock(ch[i], ch[i + 1], cfg.cond_dim) for i in range(cfg.n_blocks))
        else:
            self.blocks = nn.ModuleList(
                UpBlockV2(ch[i], ch[i + 1], cfg, 8 * 2**i, i) for i in range(cfg.n_blocks)
            )  # fmt: skip
        # skip-layer excitation: the output of block i (8 * 2^i px) gates block i + 4's (16x the resolution)
        n_sle = max(0, cfg.n_blocks - 4) if cfg.arch == "v2" and cfg.sle else 0
        self.sle = nn.ModuleList(SkipExcitation(ch[i + 1], ch[i + 5], 8 * 2**i) for i in range(n_sle))
        self.out_norm = nn.BatchNorm2d(ch[-1])
        pad = "replicate" if cfg.arch == "v2" else "zeros"
        self.out_conv = nn.Conv2d(ch[-1], 3, 3, padding=1, padding_mode=pad)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.config.arch == "cascade":
            return self.refiner(self.base(z, c), c)
        h = self.fc(torch.cat([z, c], dim=1)).reshape(z.shape[0], self.ch0, 4, 4)  # [B, ch0, 4, 4]
        outputs: list[torch.Tensor] = []
        for k, block in enumerate(self.blocks):
            h = block(h, c)
            if 4 <= k < 4 + len(self.sle):
                h = self.sle[k - 4](h, outputs[k - 4])
            outputs.append(h)
        return torch.tanh(self.out_conv(F.relu(self.out_norm(h))))
