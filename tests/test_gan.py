"""The cGAN's parts: hinge losses, spectral norm, projection discriminator, DiffAugment, EMA, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from engine.models.generator import Generator, GeneratorConfig
from trainer.art.diffaug import DiffAugPolicy, colour, cutout, diff_augment, translation
from trainer.art.images import ArtImages
from trainer.gan.model import (
    ConditionBank,
    DiscriminatorConfig,
    ProjectionDiscriminator,
    d_hinge_loss,
    g_hinge_loss,
    update_ema,
)
from trainer.gan.train import GanConfig, load_gan_checkpoint, train_gan

CLASSES = ["angry", "happy", "sad", "neutral"]


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """Training tests run on one thread: on a shared 2-core machine two threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_hinge_loss_signs() -> None:
    confident = d_hinge_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))
    assert confident.item() == 0.0  # beyond the margins: no loss
    fooled = d_hinge_loss(torch.full((4,), -1.0), torch.full((4,), 1.0))
    assert fooled.item() == pytest.approx(4.0)  # (1 - -1) + (1 + 1)
    # D's loss falls as real scores rise and fake scores fall
    real = torch.zeros(3, requires_grad=True)
    fake = torch.zeros(3, requires_grad=True)
    d_hinge_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    # G's loss falls as D scores fakes higher
    fake = torch.zeros(3, requires_grad=True)
    g_hinge_loss(fake).backward()
    assert (fake.grad < 0).all()
    assert g_hinge_loss(torch.tensor([3.0])).item() == -3.0


def test_spectral_norm_on_every_discriminator_weight() -> None:
    D = ProjectionDiscriminator(DiscriminatorConfig(resolution=32, base_channels=8))
    layers = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert layers
    for m in layers:
        assert parametrize.is_parametrized(m, "weight"), m
    D.train()
    x, c = torch.randn(4, 3, 32, 32), F.normalize(torch.randn(4, 128), dim=1)
    for _ in range(20):  # power iterations converge
        D(x, c)
    for m in layers:
        w = m.weight.reshape(m.weight.shape[0], -1)
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_projection_discriminator_uses_the_condition() -> None:
    torch.manual_seed(0)
    D = ProjectionDiscriminator(DiscriminatorConfig(resolution=32, base_channels=8)).eval()
    x = torch.randn(2, 3, 32, 32)
    c1, c2 = F.normalize(torch.randn(2, 128), dim=1), F.normalize(torch.randn(2, 128), dim=1)
    s1, s2 = D(x, c1), D(x, c2)
    assert s1.shape == (2,)
    assert not torch.allclose(s1, s2)


def test_ema_update_moves_towards_the_model_and_copies_buffers() -> None:
    cfg = GeneratorConfig(resolution=32, z_dim=8, base_channels=4, max_channels=32)
    G, ema = Generator(cfg), Generator(cfg)
    with torch.no_grad():
        for p in G.parameters():
            p.fill_(1.0)
        for p in ema.parameters():
            p.fill_(0.0)
        G.out_norm.running_mean.fill_(5.0)
    update_ema(ema, G, decay=0.9)
    for p in ema.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.1))
    assert torch.allclose(ema.out_norm.running_mean, torch.full_like(ema.out_norm.running_mean, 5.0))
    update_ema(ema, G, decay=0.0)
    for p in ema.parameters():
        assert torch.allclose(p, torch.ones_like(p))


def test_diffaugment_is_differentiable_and_keeps_shape() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x * 2 - 1, tuple(DiffAugPolicy))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    ones = torch.ones(2, 3, 16, 16)
    shifted = translation(ones, 0.25)
    assert shifted.min() == 0.0 and shifted.max() == 1.0  # zero padding where the image moved away
    holes = cutout(ones, 0.5)
    zero_share = (holes == 0).float().mean(dim=(1, 2, 3))
    assert ((zero_share > 0.1) & (zero_share <= 0.26)).all()
    assert colour(torch.zeros(2, 3, 8, 8), 0.0).abs().max() == 0.0


def _tiny_art(n_per_class: int = 6, size: int = 16) -> ArtImages:
    rng = np.random.default_rng(0)
    labels = np.arange(4 * n_per_class) % 4
    base = np.array([[200, 30, 30], [240, 200, 40], [40, 60, 160], [128, 128, 120]], dtype=np.float64)
    images = base[labels][:, None, None, :] + rng.normal(0, 10, (len(labels), size, size, 3))
    return ArtImages(
        np.clip(images, 0, 255).astype(np.uint8),
        labels.astype(np.int64),
        np.zeros((len(labels), 2), np.float32),
        np.array([f"a{i}" for i in range(len(labels))]),
        CLASSES,
    )


def _tiny_cfg(steps: int) -> GanConfig:
    return GanConfig(
        generator=GeneratorConfig(resolution=16 * 2, z_dim=8, cond_dim=16, base_channels=4, max_channels=32),
        discriminator=DiscriminatorConfig(resolution=32, cond_dim=16, base_channels=4),
        steps=steps,
        batch_size=4,
        checkpoint_every=2,
        ema_start=1,
        sample_every=1000,
    )


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    art = _tiny_art()
    bank = ConditionBank(
        art=F.normalize(torch.randn(len(art), 16), dim=1),
        art_labels=torch.from_numpy(art.labels),
        audio=F.normalize(torch.randn(8, 16), dim=1),
        audio_labels=torch.arange(8) % 4,
    )
    straight = train_gan(art, bank, _tiny_cfg(6), tmp_path / "a")
    train_gan(art, bank, _tiny_cfg(3), tmp_path / "b")
    assert load_gan_checkpoint(tmp_path / "b" / "gan_last.pt")["step"] == 3
    resumed = train_gan(art, bank, _tiny_cfg(6), tmp_path / "b", resume=True)
    assert resumed.step == 6
    for p, q in zip(straight.generator.parameters(), resumed.generator.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)  # same RNG stream, same result
    ckpt = load_gan_checkpoint(tmp_path / "b" / "gan_last.pt")
    assert GanConfig.model_validate(ckpt["config"]) == _tiny_cfg(6)
    with pytest.raises(ValueError, match="config differs"):
        train_gan(art, bank, _tiny_cfg(8).model_copy(update={"lr_g": 1e-3}), tmp_path / "b", resume=True)


def test_condition_bank_swaps_in_audio_of_the_same_emotion() -> None:
    art = F.normalize(torch.randn(8, 4), dim=1)
    audio = torch.eye(4)
    bank = ConditionBank(art, torch.arange(8) % 4, audio, torch.arange(4))
    gen = torch.Generator().manual_seed(0)
    c = bank.for_images(torch.arange(8), 1.0, gen)
    assert torch.equal(c, audio[torch.arange(8) % 4])
    assert torch.equal(bank.for_images(torch.arange(8), 0.0, gen), art)


def _tiny_run_in_128d(out: Path) -> Path:
    """Two steps of a tiny GAN conditioned in the test bundles' 128-d shared space; its gan_last.pt."""
    art = _tiny_art()
    cfg = _tiny_cfg(2)
    cfg = cfg.model_copy(
        update={
            "generator": cfg.generator.model_copy(update={"cond_dim": 128}),
            "discriminator": cfg.discriminator.model_copy(update={"cond_dim": 128}),
        }
    )
    bank = ConditionBank(
        art=F.normalize(torch.randn(len(art), 128), dim=1),
        art_labels=torch.from_numpy(art.labels),
        audio=F.normalize(torch.randn(8, 128), dim=1),
        audio_labels=torch.arange(8) % 4,
    )
    train_gan(art, bank, cfg, out)
    return out / "gan_last.pt"


def test_a_runs_checkpoint_is_measured_at_its_step(tmp_path: Path, full_bundle: Path) -> None:
    from trainer.gan.quality import checkpoint_quality

    report = checkpoint_quality(_tiny_run_in_128d(tmp_path / "run"), full_bundle, n=8, corpus_per_class=2)
    assert report["step"] == 2 and "--checkpoint" in report["command"]
    sharp = report["sharpness"]
    assert sharp["generator_resolution"] > 0 and sharp["display_1280x720"] > 0
    assert report["grid_peak"]["generated"] > 0 and report["random_features"]


def test_a_preview_bundle_plays_the_runs_generator(tmp_path: Path, full_bundle: Path) -> None:
    import numpy as np

    from engine.inference.base import Component
    from engine.inference.select import open_runner
    from engine.models.bundle import load_bundle
    from trainer.bundle.preview import write_preview

    out = write_preview(_tiny_run_in_128d(tmp_path / "run"), full_bundle, tmp_path / "preview")
    bundle = load_bundle(out)
    assert bundle.manifest.generator.resolution == 32 and bundle.manifest.name.endswith("preview-step2")
    assert bundle.manifest.metrics["art"]["preview"]["step"] == 2
    assert bundle.art_index() is not None and bundle.manifest.classes == load_bundle(full_bundle).manifest.classes
    runner = open_runner(bundle, Component.GENERATOR, "onnx", "cpu").runner
    z = np.zeros((1, bundle.manifest.generator.z_dim), np.float32)
    c = bundle.art_index()["vectors"][:1].astype(np.float32)
    (image,) = runner(z, c)
    assert image.shape == (1, 3, 32, 32) and np.isfinite(image).all()
