"""Behaviour of the procedural art generator: determinism, variety, continuity, emotion directions."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image

from trainer.art.painter import (
    ART_VA,
    EXPECTED_DIRECTIONS,
    STYLES,
    ArtCorpus,
    ArtItem,
    check_directions,
    colour_stats,
    render_art,
    sample_art,
    save_grid,
    visual_params,
)

LABELS = ("angry", "happy", "sad", "neutral")


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in 0..255 units."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _histogram(image: np.ndarray, bins: int = 8) -> np.ndarray:
    q = image.astype(np.int32) * bins // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.bincount(idx.ravel(), minlength=bins**3).astype(np.float64)
    return h / h.sum()


@pytest.fixture(scope="module")
def samples() -> dict[str, list[np.ndarray]]:
    """40 images per class at 64 px (seeds 0..39)."""
    return {label: [sample_art(label, size=64, seed=s)[0] for s in range(40)] for label in LABELS}


def test_render_shape_dtype_and_determinism() -> None:
    for style in (*STYLES, None):
        a = render_art(0.2, -0.3, style=style, size=48, seed=5)
        assert a.shape == (48, 48, 3) and a.dtype == np.uint8
        assert np.array_equal(a, render_art(0.2, -0.3, style=style, size=48, seed=5))
        assert not np.array_equal(a, render_art(0.2, -0.3, style=style, size=48, seed=6))
    img, v, a = sample_art("happy", size=32, seed=3)
    img2, v2, a2 = sample_art("happy", size=32, seed=3)
    assert np.array_equal(img, img2) and (v, a) == (v2, a2)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown style"):
        render_art(0.0, 0.0, style="cubism")
    with pytest.raises(ValueError, match="unknown emotion"):
        sample_art("bored")
    with pytest.raises(ValueError, match="unknown emotion"):
        ArtCorpus(["angry", "fearful"], 3)
    with pytest.raises(ValueError, match="size"):
        render_art(0.0, 0.0, size=4)


def test_out_of_range_va_is_clipped() -> None:
    assert np.array_equal(render_art(3.0, -7.0, seed=1, size=32), render_art(1.0, -1.0, seed=1, size=32))


def test_many_seeds_give_distinct_images() -> None:
    images = [render_art(0.3, 0.2, size=64, seed=s) for s in range(24)]
    dists = [_l1(images[i], images[j]) for i in range(24) for j in range(i + 1, 24)]
    assert np.mean(dists) > 12.0, np.mean(dists)
    assert min(dists) > 2.0, min(dists)
    for style in STYLES:  # variety within a style, not only between styles
        imgs = [render_art(0.3, 0.2, style=style, size=64, seed=s) for s in range(6)]
        within = [_l1(imgs[i], imgs[j]) for i in range(6) for j in range(i + 1, 6)]
        assert min(within) > 2.0, (style, min(within))


@pytest.mark.parametrize("style", [*STYLES, None])
def test_small_va_change_gives_small_image_change(style: str | None) -> None:
    for seed in range(4):
        for v, a in ((0.3, 0.2), (-0.6, 0.7), (-0.5, -0.5), (0.02, -0.03)):
            base = render_art(v, a, style=style, size=64, seed=seed)
            near = render_art(v + 0.01, a - 0.01, style=style, size=64, seed=seed)
            far = render_art(v + 0.4, a - 0.4, style=style, size=64, seed=seed)
            d_near, d_far = _l1(base, near), _l1(base, far)
            assert d_near < 4.0, (style, seed, v, a, d_near)
            assert d_near < 0.25 * d_far, (style, seed, v, a, d_near, d_far)


def test_visual_params_are_continuous_over_the_plane() -> None:
    """Neighbouring VA points give close parameters everywhere, including the origin and the hue seam."""
    grid = np.linspace(-1.0, 1.0, 81)  # step 0.025

    def vec(v: float, a: float) -> np.ndarray:
        p = visual_params(v, a)
        h = math.radians(p.hue)  # colour as an a-b vector: hue only matters as much as chroma
        return np.array([p.chroma * math.cos(h), p.chroma * math.sin(h), p.lightness, p.contrast, p.angularity])

    field = np.array([[vec(v, a) for a in grid] for v in grid])
    step = max(np.abs(np.diff(field, axis=0)).max(), np.abs(np.diff(field, axis=1)).max())
    assert step < 0.025, step


def test_visual_params_follow_the_findings() -> None:
    p = {k: visual_params(*va) for k, va in ART_VA.items()}

    def hue_near(h: float, target: float, tol: float) -> bool:
        return abs((h - target + 180.0) % 360.0 - 180.0) <= tol

    assert hue_near(p["angry"].hue, 29.0, 15.0)  # sRGB red is OKLCH hue ~29
    assert hue_near(p["happy"].hue, 90.0, 20.0)  # yellow
    assert hue_near(p["sad"].hue, 255.0, 25.0)  # blue
    assert p["neutral"].chroma < 0.5 * min(p[k].chroma for k in ("angry", "happy", "sad"))
    assert p["happy"].lightness > p["neutral"].lightness > p["sad"].lightness
    assert p["happy"].lightness > p["angry"].lightness
    assert p["angry"].angularity > 0.6 > 0.3 > max(p["happy"].angularity, p["sad"].angularity)
    assert p["angry"].contrast > p["neutral"].contrast and p["angry"].contrast > p["sad"].contrast
    assert p["happy"].slant > 0 > p["sad"].slant  # ascending lines when pleasant (Poffenberger & Barrows)
    for v in np.linspace(-1, 1, 9):  # lightness rises with valence, energy and chroma with arousal
        lo, hi = visual_params(v, -0.5), visual_params(v, 0.5)
        assert hi.energy > lo.energy and hi.softness < lo.softness
        assert visual_params(min(1.0, v + 0.2), 0.0).lightness > visual_params(v, 0.0).lightness or v >= 1.0


def test_emotion_colour_directions_hold(samples: dict[str, list[np.ndarray]]) -> None:
    results = check_directions(samples)
    assert len(results) == len(EXPECTED_DIRECTIONS)
    failed = [(d.stat, d.higher, d.lower, round(hi, 3), round(lo, 3)) for d, hi, lo, ok in results if not ok]
    assert not failed
    for d, hi, lo, _ in results:  # strong, not marginal
        assert hi - lo > 0.02, (d, hi, lo)


@pytest.mark.parametrize("style", STYLES)
def test_directions_hold_within_each_style(style: str) -> None:
    by_label = {}
    for label in LABELS:
        imgs = []
        for s in range(12):
            _, v, a = sample_art(label, size=8, seed=s)
            imgs.append(render_art(v, a, style=style, size=48, seed=s))
        by_label[label] = imgs
    failed = [(d.stat, d.higher, d.lower) for d, _, _, ok in check_directions(by_label) if not ok]
    assert not failed, failed


def test_nearest_centroid_on_colour_histograms_separates_classes(samples: dict[str, list[np.ndarray]]) -> None:
    centroids = np.stack([np.mean([_histogram(i) for i in samples[label]], axis=0) for label in LABELS])
    correct = np.zeros(len(LABELS))
    n_test = 30
    for k, label in enumerate(LABELS):
        for s in range(1000, 1000 + n_test):  # held-out seeds
            h = _histogram(sample_art(label, size=64, seed=s)[0])
            correct[k] += int(np.argmin(np.abs(centroids - h).sum(axis=1)) == k)
    recall = correct / n_test
    accuracy = float(recall.mean())
    print(f"\nnearest-centroid accuracy on held-out seeds: {accuracy:.3f} (chance 0.25); recall {recall.round(2)}")
    assert accuracy >= 0.85
    assert recall.min() >= 0.7


def test_sample_art_covers_a_region_around_the_anchor() -> None:
    for label, (v0, a0) in ART_VA.items():
        pts = np.array([sample_art(label, size=8, seed=s, jitter=0.25)[1:] for s in range(60)])
        dist = np.hypot(pts[:, 0] - v0, pts[:, 1] - a0)
        assert dist.max() <= 0.5 + 1e-9
        assert pts.std(axis=0).min() > 0.08  # a region, not a point
        nearest = [min(ART_VA, key=lambda k, p=p: math.dist(p, ART_VA[k])) for p in pts]
        assert np.mean([n == label for n in nearest]) > 0.9
    _, v, a = sample_art("sad", size=8, seed=1, jitter=0.0)
    assert (v, a) == ART_VA["sad"]


def test_corpus_is_lazy_deterministic_balanced_and_distinct() -> None:
    corpus = ArtCorpus(LABELS, n_per_class=1000, size=32, seed=7)
    assert len(corpus) == 4000
    item = corpus[5]
    assert isinstance(item, ArtItem) and item.image.shape == (32, 32, 3) and item.image.dtype == np.uint8
    assert item.label == LABELS[5 % 4] == corpus.label_of(5)
    again = ArtCorpus(LABELS, n_per_class=1000, size=32, seed=7)[5]
    assert np.array_equal(item.image, again.image) and item.id == again.id and item.valence == again.valence
    assert np.array_equal(corpus[-1].image, corpus[3999].image)
    with pytest.raises(IndexError):
        corpus[4000]
    assert [corpus.label_of(i) for i in range(8)] == list(LABELS) * 2
    # The same item of a class whatever the other classes and the corpus length.
    assert np.array_equal(ArtCorpus(["sad"], 3, size=32, seed=7)[2].image, corpus[2 + 2 * 4].image)
    picks = list(range(0, 4000, 97))
    ids = {corpus[i].id for i in picks}
    hashes = {corpus[i].image.tobytes() for i in picks}
    assert len(ids) == len(hashes) == len(picks)
    assert len({it.id for it in ArtCorpus(LABELS, 50, size=8)}) == 200
    other_seed = ArtCorpus(LABELS, 1000, size=32, seed=8)
    assert not np.array_equal(other_seed[5].image, item.image)


def test_colour_stats_on_known_images() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    s = colour_stats(red)
    assert s["hue"] == pytest.approx(0.0, abs=1e-6) and s["saturation"] == pytest.approx(1.0)
    assert s["warmth"] == pytest.approx(1.0) and s["redness"] == pytest.approx(1.0) and s["red_share"] == 1.0
    grey = np.full((4, 4, 3), 128, np.uint8)
    g = colour_stats([grey, grey])
    assert g["saturation"] == 0.0 and g["contrast"] == 0.0 and g["warmth"] == 0.0
    half = np.zeros((4, 4, 3), np.float32)
    half[:2] = 1.0
    h = colour_stats(half)
    assert h["brightness"] == pytest.approx(0.5) and h["contrast"] == pytest.approx(0.5)
    blue = np.zeros((1, 2, 2, 3), np.uint8)
    blue[..., 2] = 200
    assert colour_stats(blue)["hue"] == pytest.approx(240.0) and colour_stats(blue)["warmth"] < 0
    with pytest.raises(ValueError):
        colour_stats(np.zeros((4, 4)))


def test_save_grid_writes_a_labelled_png(tmp_path) -> None:
    path = save_grid(tmp_path / "img" / "grid.png", per_label=3, size=32)
    with Image.open(path) as im:
        w, h = im.size
        assert im.mode == "RGB"
    assert h >= 4 * 32 and w >= 3 * 32


def test_speed_report() -> None:
    """Prints the time per 128 px image for each style (not asserted: the machine is shared)."""
    lines = []
    for style in STYLES:
        render_art(0.0, 0.0, style=style, seed=0)  # warm caches
        t0 = time.process_time()
        for s in range(10):
            img = render_art(0.5 - s / 10, 0.3, style=style, seed=s)
        ms = (time.process_time() - t0) / 10 * 1000.0
        assert img.shape == (128, 128, 3)
        lines.append(f"{style} {ms:.2f} ms")
    print("\nCPU time per 128 px image: " + ", ".join(lines))
