"""Small, randomly initialised bundles for tests (seconds to build, real ONNX inside)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.audio.frontend import FrontEndConfig
from engine.models.checkpoint import audio_model_from_config
from engine.models.generator import Generator, GeneratorConfig
from engine.models.upsampler import Upsampler, UpsamplerConfig
from trainer.art.encoder import ArtEncoder, ImageEncoderConfig, save_art_encoder
from trainer.bundle.export import write_bundle

CLASSES = ["angry", "happy", "sad", "neutral"]


def make_bundle(
    path: Path,
    arch: str = "cnn",
    generator: bool = False,
    resolution: int = 64,
    seed: int = 0,
    lively: bool = False,
    art_encoder: bool = False,
    generator_arch: str = "v1",
    upsampler: bool = False,
) -> Path:
    """`lively`: scale the generator's z weights (x8) and output layer (x4) so that frames have contrast and
    visibly follow z (a plain random generator paints nearly flat, z-insensitive images). `art_encoder` (with
    `generator`): add a small random art_encoder.pt, so the bundle has a complete art half to evaluate.
    `generator_arch` picks the generator architecture; `upsampler` (with `generator`) adds a random x2
    up-sampler (its last layer perturbed, so it differs from plain bilinear)."""
    torch.manual_seed(seed)
    audio_model = audio_model_from_config({"arch": arch, "width": 8, "embedding_dim": 32, "rnn_hidden": 32}, 128)
    gen = None
    if generator:
        cascade = (
            {"base_resolution": resolution // 4, "refiner_channels": (8, 8, 4)} if generator_arch == "cascade" else {}
        )
        gcfg = GeneratorConfig(
            resolution=resolution, z_dim=16, base_channels=4, max_channels=64, arch=generator_arch, **cascade
        )
        gen = Generator(gcfg)
        if lively:
            body = gen.base if generator_arch == "cascade" else gen
            with torch.no_grad():
                body.fc.weight[:, :16] *= 8.0
                body.out_conv.weight *= 4.0
        # a few train-mode passes so BatchNorm statistics are not the identity defaults
        gen.train()
        with torch.no_grad():
            for _ in range(3):
                gen(torch.randn(8, 16), torch.nn.functional.normalize(torch.randn(8, 128), dim=1))
        gen.eval()
    index = None
    if generator:
        rng = np.random.default_rng(seed)
        vecs = rng.standard_normal((12, 128)).astype(np.float32)
        index = {
            "vectors": vecs / np.linalg.norm(vecs, axis=1, keepdims=True),
            "labels": np.array([CLASSES[i % 4] for i in range(12)]),
            "ids": np.array([f"art-{i:03d}" for i in range(12)]),
            "thumbnails": rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8),
        }
    up = None
    if generator and upsampler:
        up = Upsampler(UpsamplerConfig(factor=2, channels=(8, 6)))
        with torch.no_grad():
            up.to_sub.weight.normal_(0.0, 0.05)
        up.eval()
    extra_files: dict[str, Path] = {}
    if generator and art_encoder:
        enc = ArtEncoder(ImageEncoderConfig(input_size=32, width=4, stages=2, feature_dim=16, projection_hidden=32))
        extra_files["art_encoder.pt"] = path.parent / f".{path.name}.art_encoder.pt"
        save_art_encoder(enc.eval(), extra_files["art_encoder.pt"])  # atomic_path creates the folder
    write_bundle(
        path,
        name="test-bundle",
        audio_model=audio_model.eval(),
        classes=CLASSES,
        frontend=FrontEndConfig(),
        mel_mean=np.full(128, -40.0),
        mel_std=np.full(128, 20.0),
        generator=gen,
        upsampler=up,
        art_index=index,
        metrics={"note": "random weights, for tests"},
        data={"corpora": [], "split": "none"},
        license="test only",
        extra_files=extra_files,
    )
    return path


def attach_small_art_half(bundle_dir: Path, checkpoint: Path, work: Path) -> None:
    """The default bundle's art half aligned to `checkpoint`'s encoder in `bundle_dir`, as `export` does it
    but with small settings (a few artworks, 20 alignment steps) so a test stays short."""
    from engine.models.bundle import DEFAULT_BUNDLE
    from trainer.bundle.art_default import ArtHalfConfig, attach_art_half, load_art_source
    from trainer.space.align import AlignConfig, AudioAlignConfig

    small = ArtHalfConfig(
        art_per_class=6, art_val_per_class=3, index_per_class=4, eval_per_class=4,
        align=AlignConfig(audio=AudioAlignConfig(steps=20)),
    )  # fmt: skip
    attach_art_half(bundle_dir, checkpoint, work, load_art_source(DEFAULT_BUNDLE), small)
