"""`synesthesia-train align` and `gan` end to end on tiny procedural data, the art half written into a
bundle, and the --evaluate commands on that bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models.bundle import load_bundle
from engine.models.checkpoint import load_generator
from engine.models.generator import GeneratorConfig
from tests.bundles import make_bundle
from trainer.cli import main

TINY_DATA = [
    "--audio-per-class", "4", "--voices", "2", "--art-per-class", "8", "--art-val-per-class", "4",
    "--art-size", "32",
]  # fmt: skip
TINY_GAN = [
    "--resolution", "32", "--batch-size", "4", "--z-dim", "8", "--base-channels", "4", "--d-channels", "4",
    "--checkpoint-every", "3", "--sample-every", "3", "--eval-per-class", "8",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artcli")
    make_bundle(root / "bundle")
    return root


def _common(workdir: Path) -> list[str]:
    return ["--bundle", str(workdir / "bundle"), "--cache", str(workdir / "cache"), *TINY_DATA]


def test_align_then_gan_then_resume(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    align = workdir / "align"
    rc = main(
        ["align", *_common(workdir), "--out", str(align), "--image-size", "32", "--image-width", "8",
         "--art-steps", "8", "--audio-steps", "8", "--no-plot"]
    )  # fmt: skip
    assert rc == 0
    assert {"art_space.pt", "align.pt", "align_metrics.json"} <= {p.name for p in align.iterdir()}
    metrics = json.loads((align / "align_metrics.json").read_text())
    assert 0.0 <= metrics["audio_to_art"] <= 1.0 and metrics["n_art"] == 16
    assert "retrieval audio->art" in capsys.readouterr().out

    gan = workdir / "gan"
    rc = main(
        ["gan", *_common(workdir), "--out", str(gan), "--align", str(align / "align.pt"), *TINY_GAN, "--steps", "6"]
    )
    assert rc == 0
    names = {p.name for p in gan.iterdir()}
    assert {"gan_last.pt", "generator_ema.pt", "gan_metrics.json", "grid_emotions.png", "grid_va_plane.png"} <= names
    assert {"samples_000003.png", "samples_000006.png", "grid_emotions_audio.png"} <= names
    report = json.loads((gan / "gan_metrics.json").read_text())
    for key in ("consistency_art_cond", "consistency_audio_cond", "diversity", "frechet", "smoothness"):
        assert key in report
    ckpt = torch.load(gan / "gan_last.pt", weights_only=True)
    assert ckpt["step"] == 6 and GeneratorConfig.model_validate(ckpt["config"]["generator"]).resolution == 32

    rc = main(
        ["gan", *_common(workdir), "--out", str(gan), "--align", str(align / "align.pt"), *TINY_GAN,
         "--steps", "9", "--resume", "--no-eval"]
    )  # fmt: skip
    assert rc == 0
    assert torch.load(gan / "gan_last.pt", weights_only=True)["step"] == 9


def test_gan_on_art_space_alone(workdir: Path) -> None:
    """The GAN needs only stage 1 of the alignment (no audio encoder)."""
    align = workdir / "align_art"
    assert main(
        ["align", "--art-only", "--out", str(align), "--cache", str(workdir / "cache"), *TINY_DATA,
         "--image-size", "32", "--image-width", "8", "--art-steps", "4"]
    ) == 0  # fmt: skip
    assert not (align / "align.pt").exists()
    gan = workdir / "gan_art"
    assert main(
        ["gan", "--out", str(gan), "--align", str(align / "art_space.pt"), "--cache", str(workdir / "cache"),
         *TINY_DATA, *TINY_GAN, "--steps", "3", "--no-eval"]
    ) == 0  # fmt: skip
    assert (gan / "generator_ema.pt").is_file()
    # the cascade's refiner on that 32 px base, to 64 px, joined into one generator
    cascade = workdir / "cascade"
    assert main(
        ["cascade", "--base", str(gan / "gan_last.pt"), "--align", str(align / "art_space.pt"), "--out", str(cascade),
         "--cache", str(workdir / "cache"), *TINY_DATA, "--art-size", "64", "--resolution", "64", "--channels", "4,4",
         "--d-channels", "4", "--crop", "32", "--batch-size", "2", "--steps", "2", "--sample-every", "2",
         "--no-progress"]
    ) == 0  # fmt: skip
    G = load_generator(cascade / "generator_ema.pt")
    assert G.config.arch == "cascade" and G.config.resolution == 64 and G.config.base_resolution == 32
    report = json.loads((cascade / "held_out.json").read_text())
    assert report["n"] > 0 and report["sharpness_bilinear"] >= 0
    assert (cascade / "samples_000002.png").is_file() and (cascade / "refiner_losses.png").is_file()


def test_art_half_in_a_bundle_and_evaluate(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.models.upsampler import UpsamplerConfig
    from trainer.art.encoder import ImageEncoderConfig
    from trainer.bundle.art_default import ArtHalfConfig, add_art_half_to_bundle, build_art_half
    from trainer.gan.cascade import RefinerTrainConfig
    from trainer.gan.model import DiscriminatorConfig
    from trainer.gan.train import GanConfig
    from trainer.gan.upsampler import UpsamplerTrainConfig
    from trainer.space.align import AlignConfig, ArtSpaceConfig, AudioAlignConfig
    from trainer.space.data import load_audio_bundle, speaker_split, synthetic_audio

    bundle = workdir / "bundle_full"
    make_bundle(bundle)
    ab = load_audio_bundle(bundle)
    audio = synthetic_audio(
        ab.classes, 4, n_voices=2, seed=7001, frontend=ab.frontend, mel_mean=ab.mel_mean, mel_std=ab.mel_std,
        cache_dir=workdir / "cache",
    )  # fmt: skip
    tr, va = speaker_split(audio.speakers, 0.2, 7001)
    cfg = ArtHalfConfig(
        art_per_class=8, art_val_per_class=4, art_size=64, index_per_class=3, thumbnail=8, eval_per_class=4,
        align=AlignConfig(
            art=ArtSpaceConfig(image=ImageEncoderConfig(input_size=32, width=8), steps=4, per_class=4),
            audio=AudioAlignConfig(steps=4, per_class=4),
        ),
        gan=GanConfig(
            generator=GeneratorConfig(resolution=32, z_dim=8, base_channels=4, max_channels=32, arch="v2"),
            discriminator=DiscriminatorConfig(resolution=32, base_channels=4), steps=2, batch_size=4,
        ),
        refiner=RefinerTrainConfig(resolution=64, base_resolution=32, channels=(4, 4), d_channels=4, crop=16,
                                   batch_size=2, steps=2, checkpoint_every=1),
        upsampler=UpsamplerTrainConfig(upsampler=UpsamplerConfig(factor=2, channels=(4,)), generator_resolution=64,
                                       steps=2, batch_size=2, crop=8),
        upsampler_per_class=1,
    )  # fmt: skip
    half = build_art_half(ab.audio_model, audio.subset(tr), {"synth": audio.subset(va)}, workdir / "runs", cfg)
    add_art_half_to_bundle(bundle, half)

    b = load_bundle(bundle)  # every hash checks out
    m = b.manifest
    assert m.generator is not None and m.generator.resolution == 64 and m.generator.config.arch == "cascade"
    assert (workdir / "runs" / "cascade" / "refiner_last.pt").is_file()  # the refiner stage ran on the base
    index = b.art_index()
    assert index is not None and index["vectors"].shape == (12, 128) and index["thumbnails"].shape == (12, 8, 8, 3)
    art = m.metrics["art"]
    for key in ("retrieval", "emotion_consistency", "diversity", "frechet_distance", "latent_smoothness"):
        assert "command" in art[key], key
    assert "art_encoder.pt" in m.files and "figures/art/grid_emotions.png" in m.files
    assert m.upsampler is not None and m.upsampler.factor == 2 and "upsampler.onnx" in m.files
    assert {"sharpness", "grid_peak", "random_features"} <= set(art["quality"])
    assert m.license == "test only"  # kept from the audio-only bundle

    args = ["--cache", str(workdir / "cache"), *TINY_DATA]
    capsys.readouterr()
    assert main(["align", "--evaluate", str(bundle), *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["synth"]["audio_to_art"] <= 1.0
    assert main(["gan", "--evaluate", str(bundle), *args, "--eval-per-class", "8", "--out", str(workdir / "eval")]) == 0
    assert "emotion consistency" in capsys.readouterr().out
    assert np.isfinite(art["frechet_distance"]["mean"])

    # a retrained audio side aligned to this bundle's art half: nothing of the art half is trained again
    from trainer.bundle.art_default import load_art_source

    source = load_art_source(bundle)
    assert source.va_head is not None  # stored with the art encoder, so the reuse is exact
    again = build_art_half(
        ab.audio_model, audio.subset(tr), {"synth": audio.subset(va)}, workdir / "runs_reuse", cfg, art_source=source
    )
    assert (
        not (workdir / "runs_reuse" / "gan").exists()
        and not (workdir / "runs_reuse" / "cascade").exists()
        and not (workdir / "runs_reuse" / "align" / "art_space.pt").exists()
    )
    for p, q in zip(again.generator.state_dict().values(), source.generator.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert again.data["gan"]["reused_from"] == str(bundle)
    assert again.metrics["art_space"]["best_step"] == art["art_space"]["best_step"]
