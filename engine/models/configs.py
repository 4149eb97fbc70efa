"""The model configs a bundle's manifest carries (encoder, generator, up-sampler): pydantic only, no torch,
so the engine can read a bundle and open its window on ONNX Runtime before torch is imported. The networks
they describe live beside them in engine/models/{encoders,generator,upsampler}.py."""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class Arch(StrEnum):
    ANN = "ann"
    CNN = "cnn"
    CNN_LSTM = "cnn_lstm"
    CNN_GRU = "cnn_gru"
    CNN_LSTM_ATTN = "cnn_lstm_attn"
    RESNET = "resnet"
    TRANSFORMER = "transformer"


class EncoderConfig(BaseModel):
    """Everything needed to rebuild an encoder; stored in checkpoints and the bundle manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Arch = Arch.CNN
    n_classes: int = Field(4, ge=2)
    n_mels: int = Field(128, gt=0)
    n_frames: int = Field(130, gt=0)
    embedding_dim: int = Field(128, gt=0)
    width: int = Field(32, gt=0, description="channels of the first conv stage (doubles per stage)")
    rnn_hidden: int = Field(128, gt=0)
    dropout: float = Field(0.3, ge=0, lt=1)
    heads: int = Field(4, gt=0)
    layers: int = Field(2, gt=0)
    instnorm: bool = Field(
        False, description="normalise each mel bin of the input to zero mean, unit variance over time (per utterance)"
    )


ARCHS = ("v1", "v2", "cascade")
UPSAMPLE_MODES = ("nearest", "bilinear", "blur")


class GeneratorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resolution: int = Field(128, ge=32, le=512)
    z_dim: int = Field(64, gt=0)
    cond_dim: int = Field(128, gt=0)
    base_channels: int = Field(8, gt=0, description="channels at full resolution; doubles per halving")
    max_channels: int = Field(256, gt=0)
    # absent in old bundles' configs: the defaults are the v1 network exactly
    arch: str = Field("v1", description="v1 (seed: nearest upsampling) or v2 (options below)")
    upsample: str = Field("blur", description="v2: nearest | bilinear | blur (nearest + [1,2,1] low-pass)")
    noise: bool = Field(True, description="v2: per-pixel noise inputs")
    sle: bool = Field(True, description="v2: skip-layer excitation (FastGAN)")
    min_channels: int = Field(0, ge=0, description="v2: floor on every block's width (capacity at high res)")
    # cascade: a v2 generator paints the layout at base_resolution (widths from base_channels there), and a
    # conditional detail network (engine.models.generator.Refiner) takes it to `resolution`
    base_resolution: int = Field(0, ge=0, description="cascade: the base generator's resolution")
    refiner_channels: tuple[int, ...] = Field((), description="cascade: refiner widths, stem then one per x2 level")

    @field_validator("resolution")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("resolution must be a power of two (32..512)")
        return v

    @field_validator("arch", "upsample")
    @classmethod
    def _choice(cls, v: str, info: ValidationInfo) -> str:
        choices = ARCHS if info.field_name == "arch" else UPSAMPLE_MODES
        if v not in choices:
            raise ValueError(f"{info.field_name} must be one of {', '.join(choices)}")
        return v

    @model_validator(mode="after")
    def _cascade(self) -> GeneratorConfig:
        if self.arch != "cascade":
            return self
        r = self.base_resolution
        if r < 16 or r & (r - 1) or r >= self.resolution:
            raise ValueError("cascade: base_resolution must be a power of two, 16 or more, below resolution")
        levels = int(math.log2(self.resolution // r))
        if len(self.refiner_channels) != levels + 1:
            raise ValueError(f"cascade: refiner_channels needs {levels + 1} widths (stem + one per x2 level)")
        return self

    def base(self) -> GeneratorConfig:
        """cascade: the config of the base generator (v2 at base_resolution)."""
        return self.model_copy(
            update={"arch": "v2", "resolution": self.base_resolution, "base_resolution": 0, "refiner_channels": ()}
        )

    @property
    def n_blocks(self) -> int:
        return int(math.log2(self.resolution)) - 2  # 4x4 -> resolution

    def channels(self) -> list[int]:
        n = self.n_blocks
        widths = [min(self.max_channels, self.base_channels * 2 ** (n - i)) for i in range(n + 1)]
        if self.arch == "v2" and self.min_channels:
            widths = [max(w, min(self.min_channels, self.max_channels)) for w in widths]
        return widths


class UpsamplerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factor: int = Field(2, description="2 or 4")
    channels: tuple[int, ...] = Field((16, 12), min_length=1, description="widths of the feature convolutions")
    kernel: int = Field(5, ge=1, description="first convolution's kernel (odd)")

    @field_validator("factor")
    @classmethod
    def _factor(cls, v: int) -> int:
        if v not in (2, 4):
            raise ValueError("factor must be 2 or 4")
        return v
