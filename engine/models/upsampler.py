"""A small learned x2 / x4 up-sampler for the display path (docs/art_training.md §3, "Display path").

ESPCN-style (Shi et al. 2016): a few convolutions at the input resolution, then PixelShuffle, added as a
residual to a bilinear up-sampling of the input, so an untrained (zero-initialised last layer) network is
exactly bilinear and training only adds the detail the corpus has. `U(image [B, 3, R, R] in [-1, 1]) ->
[B, 3, sR, sR]`; a few thousand parameters, so it runs on every generated keyframe on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.configs import UpsamplerConfig


class Upsampler(nn.Module):
    """image [B, 3, R, R] in [-1, 1] -> [B, 3, factor*R, factor*R] in [-1, 1]."""

    input_names = ("image",)
    output_names = ("upscaled",)

    def __init__(self, cfg: UpsamplerConfig) -> None:
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        c_in, k = 3, cfg.kernel
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, k, padding=k // 2, padding_mode="replicate"), nn.Tanh()]
            c_in, k = c, 3
        self.features = nn.Sequential(*layers)
        self.to_sub = nn.Conv2d(c_in, 3 * cfg.factor**2, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.to_sub.weight)
        nn.init.zeros_(self.to_sub.bias)
        self.shuffle = nn.PixelShuffle(cfg.factor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(image, scale_factor=float(self.config.factor), mode="bilinear", align_corners=False)
        return (base + self.shuffle(self.to_sub(self.features(image)))).clamp(-1.0, 1.0)
