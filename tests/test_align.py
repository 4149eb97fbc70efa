"""Alignment: contrastive losses, retrieval metric, a tiny two-stage run, checkpoints and the art index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.models.checkpoint import audio_model_from_config
from trainer.art.encoder import ImageEncoderConfig
from trainer.art.images import procedural_art
from trainer.space.align import (
    AlignConfig,
    ArtSpaceConfig,
    AudioAlignConfig,
    StepChoice,
    build_art_index,
    cross_modal_supcon,
    load_alignment,
    load_art_space,
    retrieval_metrics,
    save_alignment,
    shared_space_map,
    supcon,
    train_alignment,
)
from trainer.space.audio_set import AudioSet

CLASSES = ["angry", "happy", "sad", "neutral"]


@pytest.fixture(autouse=True)
def one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cross_modal_supcon_prefers_aligned_modalities() -> None:
    labels = torch.arange(8) % 4
    anchors = F.normalize(torch.eye(4, 16)[labels] + 0.01 * torch.randn(8, 16), dim=1)
    aligned = cross_modal_supcon(anchors, labels, anchors.flip(0), labels.flip(0), 0.1)
    swapped = cross_modal_supcon(anchors, labels, anchors, (labels + 1) % 4, 0.1)
    assert aligned < 0.75 < swapped
    # gradients reach both modalities
    a = anchors.clone().requires_grad_(True)
    b = anchors.clone().requires_grad_(True)
    cross_modal_supcon(a, labels, b, labels, 0.1).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_cross_modal_supcon_ignores_anchors_without_positives() -> None:
    a = F.normalize(torch.randn(4, 8), dim=1)
    loss = cross_modal_supcon(a, torch.tensor([0, 0, 1, 3]), a, torch.tensor([0, 0, 1, 1]), 0.1)
    assert torch.isfinite(loss)


def test_supcon_within_one_modality() -> None:
    labels = torch.arange(8) % 2
    clustered = F.normalize(torch.eye(2, 8)[labels], dim=1)
    wrong = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    assert supcon(clustered, labels, 0.1) < supcon(clustered, wrong, 0.1)


def test_retrieval_metrics() -> None:
    art = torch.eye(4)
    art_labels = np.arange(4)
    audio = torch.eye(4)[[0, 1, 2, 3, 0, 1]]
    m = retrieval_metrics(audio, np.array([0, 1, 2, 3, 1, 1]), art, art_labels, CLASSES)
    assert m["audio_to_art"] == pytest.approx(5 / 6)
    assert m["audio_to_art_per_class"]["happy"] == pytest.approx(2 / 3)
    assert m["chance"] == pytest.approx(0.25)


def _audio_set(n_per_class: int, speaker_offset: int, embedding_dim: int = 32) -> AudioSet:
    """Fake front-end features whose mean level encodes the class (enough for a random CNN encoder)."""
    g = torch.Generator().manual_seed(speaker_offset)
    labels = np.repeat(np.arange(4), n_per_class)
    feats = torch.randn(len(labels), 1, 128, 130, generator=g) * 0.3
    feats[:, :, :32] += torch.from_numpy(labels == 0).float()[:, None, None, None] * 2
    feats[:, :, 32:64] += torch.from_numpy(labels == 1).float()[:, None, None, None] * 2
    feats[:, :, 64:96] += torch.from_numpy(labels == 2).float()[:, None, None, None] * 2
    feats[:, :, 96:] += torch.from_numpy(labels == 3).float()[:, None, None, None] * 2
    va = np.array([[-0.7, 0.75], [0.75, 0.55], [-0.65, -0.6], [0.0, -0.1]], np.float32)[labels]
    speakers = np.array([f"s{speaker_offset + i % 2}" for i in range(len(labels))])
    return AudioSet(feats, labels, va, speakers, CLASSES)


def test_tiny_alignment_end_to_end(tmp_path: Path) -> None:
    torch.manual_seed(0)
    audio_model = audio_model_from_config({"arch": "cnn", "width": 8, "embedding_dim": 32}, 128).eval()
    art_train = procedural_art(CLASSES, 12, size=32, seed=0)
    art_val = procedural_art(CLASSES, 4, size=32, seed=1000)
    cfg = AlignConfig(
        art=ArtSpaceConfig(image=ImageEncoderConfig(input_size=32, width=8), steps=40, per_class=6, eval_every=20),
        audio=AudioAlignConfig(steps=80, per_class=8, eval_every=20, lr=1e-3),
    )
    result = train_alignment(audio_model, _audio_set(6, 0), _audio_set(3, 10), art_train, art_val, cfg)
    m = result.metrics
    assert {"audio_to_art", "art_to_audio", "chance", "art_space", "va_mae_audio"} <= set(m)
    assert m["audio_to_art"] >= 0.45  # chance is 0.25; the tiny art space itself classifies ~0.75
    # the held-out clips choose nothing: the projection kept is the schedule's last step
    assert m["best_step"] == 80 and m["step_choice"].startswith("last")
    # the encoder is untouched; the projection is new
    for p, q in zip(result.audio_model.encoder.parameters(), audio_model.encoder.parameters(), strict=True):
        assert torch.equal(p, q)
    save_alignment(result, cfg, tmp_path / "align.pt")
    art_encoder, aligned = load_alignment(tmp_path / "align.pt", audio_model)
    x = art_val.tensor()
    assert torch.allclose(art_encoder(x)[2], result.art_encoder(x)[2], atol=1e-6)
    feats = torch.randn(2, 1, 128, 130)
    assert torch.allclose(aligned(feats)[3], result.audio_model(feats)[3], atol=1e-6)
    assert load_art_space(tmp_path / "align.pt").va_head.weight.shape == (2, 128)

    index = build_art_index(result.art_encoder, art_val, thumbnail=8)
    assert index["vectors"].shape == (16, 128) and index["thumbnails"].shape == (16, 8, 8, 3)
    assert np.allclose(np.linalg.norm(index["vectors"], axis=1), 1.0, atol=1e-5)
    assert set(index["labels"]) == set(CLASSES) and len(set(index["ids"])) == 16

    path = shared_space_map(
        tmp_path / "map.png", index["vectors"], art_val.labels, index["vectors"], art_val.labels, CLASSES
    )
    assert path.stat().st_size > 1000


def test_best_step_choice_is_labelled_optimistic() -> None:
    torch.manual_seed(0)
    audio_model = audio_model_from_config({"arch": "cnn", "width": 8, "embedding_dim": 32}, 128).eval()
    art = procedural_art(CLASSES, 6, size=32, seed=0)
    cfg = AlignConfig(
        art=ArtSpaceConfig(image=ImageEncoderConfig(input_size=32, width=8), steps=4, per_class=4, eval_every=2),
        audio=AudioAlignConfig(steps=6, per_class=4, eval_every=2, keep=StepChoice.BEST),
    )
    m = train_alignment(audio_model, _audio_set(4, 0), _audio_set(2, 10), art, art, cfg).metrics
    assert m["best_step"] in (2, 4, 6) and "optimistic" in m["step_choice"]


def test_va_readout_refit_recovers_a_known_readout() -> None:
    """fit_va_readout (for bundles written before the readout was stored) finds tanh(W s + b) again."""
    from types import SimpleNamespace

    from trainer.bundle.art_default import fit_va_readout

    gen = torch.Generator().manual_seed(0)
    shared = torch.nn.functional.normalize(torch.randn(300, 16, generator=gen), dim=1)  # [N, S]
    weight, bias = 0.3 * torch.randn(2, 16, generator=gen), torch.tensor([0.1, -0.2])
    va = torch.tanh(shared @ weight.T + bias)  # [N, 2], inside (-0.95, 0.95)
    assert va.abs().max() < 0.95
    encoder = SimpleNamespace(encode=lambda x: (None, x))
    art = SimpleNamespace(tensor=lambda: shared, va=va.numpy().astype(np.float32))
    head = fit_va_readout(encoder, art)
    with torch.no_grad():
        assert torch.allclose(torch.tanh(head(shared)), va, atol=1e-3)


def test_stage2_screen_scores_every_setting_on_the_dev_clips() -> None:
    from trainer.bundle.align_dev import screen
    from trainer.space.align import train_art_space

    torch.manual_seed(0)
    audio_model = audio_model_from_config({"arch": "cnn", "width": 8, "embedding_dim": 32}, 128).eval()
    art = procedural_art(CLASSES, 6, size=32, seed=0)
    cfg = AlignConfig(art=ArtSpaceConfig(image=ImageEncoderConfig(input_size=32, width=8), steps=4, per_class=4))
    space = train_art_space(art, art, cfg)
    rows = list(screen(audio_model, _audio_set(4, 0), _audio_set(2, 10), space, art, art, [0.5, 2.0], [0.1]))
    assert [(r["w_centroid"], r["temperature"]) for r in rows] == [(0.5, 0.1), (2.0, 0.1)]
    assert all(0.0 <= r["dev_retrieval"] <= 1.0 and -1.0 <= r["cosine_to_art_centroid"] <= 1.0 for r in rows)
