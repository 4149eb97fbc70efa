"""GAN metrics behave: consistency of real images ~1 and of noise ~chance, Fréchet distance and diversity
on known distributions, smoothness of a generator's walks, grids written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.models.generator import Generator, GeneratorConfig
from trainer.bundle.speed import speed_main
from trainer.gan.evaluate import (
    diversity,
    emotion_consistency,
    frechet_distance,
    knn_vote,
    latent_smoothness,
    mean_pairwise_distance,
    save_labelled_grid,
    va_condition,
    va_plane_grid,
)

CLASSES = ["angry", "happy", "sad", "neutral"]


def _clusters(n_per_class: int, seed: int, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(4, 16) * 3.0
    labels = np.repeat(np.arange(4), n_per_class)
    return centres[labels] + rng.normal(0, spread, (len(labels), 16)), labels


def test_consistency_of_real_images_is_near_one_and_of_noise_near_chance() -> None:
    ref, ref_labels = _clusters(50, seed=0)
    held_out, labels = _clusters(25, seed=1)
    real = emotion_consistency(held_out, labels, ref, ref_labels, CLASSES)
    assert real["consistency"] > 0.98
    assert set(real["per_class"]) == set(CLASSES)
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 3.0, (400, 16))
    chance = emotion_consistency(noise, np.arange(400) % 4, ref, ref_labels, CLASSES)
    assert abs(chance["consistency"] - 0.25) < 0.08


def test_knn_vote_majority() -> None:
    ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert knn_vote(np.array([[1.0, 0.05]]), ref, np.array([0, 0, 1]), 2, k=3).tolist() == [0]
    assert knn_vote(np.array([[0.1, 1.0]]), ref, np.array([0, 0, 1]), 2, k=1).tolist() == [1]


def test_frechet_distance_zero_for_same_distribution_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (2000, 4))
    b = rng.normal(0, 1, (2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < 0.05
    assert frechet_distance(a, b + 2.0) == pytest.approx(16.0, rel=0.05)  # |mean shift|^2 = 4 * 2^2


def test_diversity_ratio_detects_collapse() -> None:
    real, labels = _clusters(30, seed=0)
    assert diversity(real, labels, real, labels, CLASSES)["ratio"] == pytest.approx(1.0)
    collapsed = np.eye(4, 16)[labels] * 3.0 + 1e-3 * np.random.default_rng(1).normal(size=real.shape)
    assert diversity(collapsed, labels, real, labels, CLASSES)["ratio"] < 0.05
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def _generator() -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=32, z_dim=8, cond_dim=16, base_channels=4, max_channels=32))
    G.train()
    with torch.no_grad():
        for _ in range(3):
            G(torch.randn(8, 8), F.normalize(torch.randn(8, 16), dim=1))
    return G.eval()


def test_latent_walk_steps_are_small_against_unrelated_samples() -> None:
    G = _generator()
    centroids = F.normalize(torch.randn(4, 16), dim=1)
    m = latent_smoothness(G, centroids, steps=12, z_step=0.02)
    assert 0 < m["z_mean_change"] < m["unrelated_change"]
    assert 0 < m["c_mean_change"] < m["unrelated_change"]
    assert m["z_max_change"] >= m["z_mean_change"]


def test_va_plane_grid_png(tmp_path: Path) -> None:
    G = _generator()
    vectors = F.normalize(torch.randn(20, 16), dim=1)
    va = np.random.default_rng(0).uniform(-1, 1, (20, 2)).astype(np.float32)
    c = va_condition(vectors, va, 0.5, -0.5)
    assert c.shape == (16,) and c.norm().item() == pytest.approx(1.0, abs=1e-5)
    path = va_plane_grid(G, vectors, va, tmp_path / "va.png", n=3)
    with Image.open(path) as im:
        assert im.size[0] > 3 * 32 and im.size[1] > 3 * 32


def test_labelled_grid(tmp_path: Path) -> None:
    rows = [np.full((2, 8, 8, 3), i * 60, np.uint8) for i in range(4)]
    path = save_labelled_grid(tmp_path / "g.png", rows, CLASSES, "title")
    with Image.open(path) as im:
        assert im.mode == "RGB"


def test_generator_speed_of_an_untrained_generator(capsys: pytest.CaptureFixture[str]) -> None:
    assert speed_main(["--resolution", "32", "--base-channels", "4", "--frames", "5", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threads_1"]["wall_fps"] > 0 and result["fps_one_free_core"] > 0
