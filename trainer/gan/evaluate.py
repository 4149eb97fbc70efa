"""Evaluation of the conditional GAN in the project's own image-feature space (the aligned image encoder).

- emotion consistency: a generated image's k nearest real artworks (cosine on image features) vote on its
  emotion; the share of images whose vote is the intended emotion. Real held-out artworks score near 1,
  noise near chance (1 / classes) — both are reported with every run as the scale;
- diversity: mean pairwise feature distance within each emotion, generated vs real (ratio ~1 is healthy,
  << 1 is mode collapse);
- Fréchet distance per emotion between generated and real features (Heusel et al. 2017's formula, in this
  encoder's space, not Inception's: comparable between runs of this project only), with the distance of
  held-out real art to the training art as the floor;
- latent-walk smoothness: mean pixel change per step along small z steps and along a condition path
  between emotions, against the change between unrelated samples, and the largest single step;
- sample grids per emotion (conditioned on artworks' and on audio clips' shared vectors) and across the
  valence/arousal plane, as PNG.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from engine.models.ensemble import EnsembleAudioModel
from engine.models.generator import Generator
from engine.models.heads import AudioModel
from trainer.art.encoder import ArtEncoder
from trainer.art.images import ArtImages, to_uint8
from trainer.gan.model import condition_bank
from trainer.space.audio_set import AudioSet, audio_shared
from trainer.space.data import BundleModels

log = logging.getLogger("synesthesia.art_eval")


# --------------------------------------------------------------------------------------------------
# Generation and features


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, c: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """G(z, c) in eval mode, batched: [N, 3, R, R] in [-1, 1]."""
    G.eval()
    return torch.cat([G(z[i : i + batch_size], c[i : i + batch_size]) for i in range(0, len(z), batch_size)])


def image_features(art_encoder: ArtEncoder, images: torch.Tensor) -> np.ndarray:
    """The image encoder's features [N, F] of images [N, 3, R, R] in [-1, 1]."""
    feats, _ = art_encoder.encode(images)
    return feats.numpy()


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------------------------------
# Metrics


def knn_vote(
    query: np.ndarray, reference: np.ndarray, ref_labels: np.ndarray, n_classes: int, k: int = 5
) -> np.ndarray:
    """Majority label of each query's k nearest references (cosine); ties go to the nearest's label."""
    sim = _normalise(query) @ _normalise(reference).T  # [Nq, Nr]
    k = min(k, reference.shape[0])
    top = np.argsort(-sim, axis=1)[:, :k]  # [Nq, k]
    votes = np.zeros((len(query), n_classes))
    for j in range(k):
        votes[np.arange(len(query)), ref_labels[top[:, j]]] += 1.0 + 1e-3 * (k - j)  # nearer breaks ties
    return votes.argmax(axis=1)


def emotion_consistency(
    features: np.ndarray,
    intended: np.ndarray,
    reference: np.ndarray,
    ref_labels: np.ndarray,
    classes: Sequence[str],
    k: int = 5,
) -> dict[str, Any]:
    """Share of images whose k nearest real artworks vote for the intended emotion, overall and per class."""
    voted = knn_vote(features, reference, ref_labels, len(classes), k)
    hit = voted == intended
    return {
        "consistency": float(hit.mean()),
        "per_class": {c: float(hit[intended == i].mean()) for i, c in enumerate(classes) if (intended == i).any()},
        "k": k,
        "n": len(intended),
    }


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs i < j of the rows of x."""
    if len(x) < 2:
        return 0.0
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(d2[iu]).mean())


def diversity(
    gen: np.ndarray, gen_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Within-emotion spread (mean pairwise feature distance) of generated vs real, and their ratio."""
    per_class = {}
    for i, c in enumerate(classes):
        g, r = gen[gen_labels == i], real[real_labels == i]
        if len(g) > 1 and len(r) > 1:
            dg, dr = mean_pairwise_distance(g), mean_pairwise_distance(r)
            per_class[c] = {"generated": dg, "real": dr, "ratio": dg / max(dr, 1e-12)}
    ratios = [v["ratio"] for v in per_class.values()]
    return {"ratio": float(np.mean(ratios)) if ratios else float("nan"), "per_class": per_class}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussian fits of two feature sets.

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S_a^(1/2) S_b S_a^(1/2), which is stable where S_a S_b is singular (fewer samples than dims).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ sb @ root_a)
    tr_covmean = float(np.sqrt(np.clip(middle, 0.0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2.0 * tr_covmean)


def frechet_per_emotion(
    gen: np.ndarray, gen_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    per_class = {
        c: frechet_distance(gen[gen_labels == i], real[real_labels == i])
        for i, c in enumerate(classes)
        if (gen_labels == i).sum() > 1 and (real_labels == i).sum() > 1
    }
    return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between unit vectors a [S] and b [S] at t [T] -> [T, S]."""
    omega = torch.arccos((a @ b).clamp(-1 + 1e-6, 1 - 1e-6))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / so


@torch.no_grad()
def latent_smoothness(
    G: Generator, class_vectors: torch.Tensor, *, steps: int = 48, z_step: float = 0.05, seed: int = 0
) -> dict[str, float]:
    """Mean absolute pixel change (0..1 scale) between consecutive frames of two walks:

    z walk: z_t = z_0 + t * z_step * d, d a random unit direction scaled to |z| ~ sqrt(Z), c fixed;
    c walk: slerp around the emotion centroids in order, `steps` frames per leg, z fixed.
    Also the change between unrelated samples (the scale) and the largest single step of each walk.
    """
    gen = torch.Generator().manual_seed(seed)
    Z = G.config.z_dim
    n_classes = len(class_vectors)
    z0 = torch.randn(1, Z, generator=gen)
    d = F.normalize(torch.randn(1, Z, generator=gen), dim=1) * Z**0.5
    t = torch.arange(steps + 1, dtype=torch.float32)[:, None]  # [T, 1]
    z_walk = z0 + t * z_step * d  # [T, Z]: each step moves z by z_step of a typical |z|
    c_fixed = class_vectors[0].expand(steps + 1, -1)
    frames_z = (generate(G, z_walk, c_fixed) + 1) / 2
    legs = [
        slerp(class_vectors[i], class_vectors[(i + 1) % n_classes], torch.linspace(0, 1, steps + 1))[:-1]
        for i in range(n_classes)
    ]
    c_walk = torch.cat(legs)  # [n_classes * steps, S]
    frames_c = (generate(G, z0.expand(len(c_walk), -1), c_walk) + 1) / 2
    rand = (generate(G, torch.randn(64, Z, generator=gen), class_vectors[torch.arange(64) % n_classes]) + 1) / 2

    def step_changes(frames: torch.Tensor) -> torch.Tensor:
        return (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))  # [T - 1]

    dz, dc = step_changes(frames_z), step_changes(frames_c)
    unrelated = (rand[:32] - rand[32:]).abs().mean().item()
    return {
        "z_step": z_step,
        "z_mean_change": float(dz.mean()),
        "z_max_change": float(dz.max()),
        "c_steps_per_emotion": steps,
        "c_mean_change": float(dc.mean()),
        "c_max_change": float(dc.max()),
        "unrelated_change": unrelated,
        "z_smoothness_ratio": float(dz.mean()) / max(unrelated, 1e-9),
        "c_smoothness_ratio": float(dc.mean()) / max(unrelated, 1e-9),
    }


def class_centroids(vectors: torch.Tensor, labels: torch.Tensor | np.ndarray, n_classes: int) -> torch.Tensor:
    """Normalised mean shared vector of each class: [C, S]."""
    labels = torch.as_tensor(np.asarray(labels))
    return F.normalize(torch.stack([vectors[labels == c].mean(0) for c in range(n_classes)]), dim=1)


def va_condition(
    vectors: torch.Tensor, va: np.ndarray, valence: float, arousal: float, sigma: float = 0.25
) -> torch.Tensor:
    """A shared vector for a point of the VA plane: Gaussian-kernel average of artworks' vectors by VA."""
    d2 = ((torch.as_tensor(va) - torch.tensor([valence, arousal])) ** 2).sum(1)  # [N]
    w = torch.softmax(-d2 / (2 * sigma**2), dim=0)
    return F.normalize((w[:, None] * vectors).sum(0), dim=0)


# --------------------------------------------------------------------------------------------------
# Grids


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def save_labelled_grid(
    path: str | Path, rows: Sequence[np.ndarray], row_labels: Sequence[str], title: str = "", pad: int = 3
) -> Path:
    """rows: uint8 [n, h, w, 3] each; one labelled row per entry -> PNG."""
    n_cols = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    label_w = 70
    top = 18 if title else 0
    grid = Image.new("RGB", (label_w + n_cols * (w + pad) + pad, top + pad + len(rows) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((4, 3), title, fill=(0, 0, 0), font=_font())
    for r, (imgs, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = top + pad + r * (h + pad)
        draw.text((4, y + h // 2 - 6), label, fill=(0, 0, 0), font=_font())
        for c, img in enumerate(imgs):
            grid.paste(Image.fromarray(img), (label_w + pad + c * (w + pad), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def emotion_grid(
    G: Generator,
    bank: Any,
    classes: Sequence[str],
    path: str | Path,
    *,
    per_class: int = 8,
    seed: int = 0,
    use_audio: bool = False,
) -> Path:
    """One row per emotion: `per_class` samples, each a random z and the shared vector of a random
    artwork (or audio clip, with use_audio) of that emotion."""
    gen = torch.Generator().manual_seed(seed)
    vectors = bank.audio if use_audio and bank.audio is not None else bank.art
    labels = bank.audio_labels if use_audio and bank.audio is not None else bank.art_labels
    rows = []
    for i in range(len(classes)):
        pool = torch.nonzero(labels == i).flatten()
        if not len(pool):
            continue
        pick = pool[torch.randint(len(pool), (per_class,), generator=gen)]
        z = torch.randn(per_class, G.config.z_dim, generator=gen)
        rows.append(to_uint8(generate(G, z, vectors[pick])))
    source = "audio clips" if use_audio and bank.audio is not None else "artworks"
    return save_labelled_grid(
        path, rows, list(classes), f"generated, conditioned on shared vectors of {source} of each emotion"
    )


def va_plane_grid(
    G: Generator, vectors: torch.Tensor, va: np.ndarray, path: str | Path, *, n: int = 7, seed: int = 0
) -> Path:
    """n x n samples across the VA plane: valence -1..1 left to right, arousal 1..-1 top to bottom; one z."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, G.config.z_dim, generator=gen)
    values = np.linspace(-1, 1, n)
    rows, labels = [], []
    for a in values[::-1]:
        c = torch.stack([va_condition(vectors, va, float(v), float(a)) for v in values])  # [n, S]
        rows.append(to_uint8(generate(G, z.expand(n, -1), c)))
        labels.append(f"a={a:+.2f}")
    return save_labelled_grid(path, rows, labels, f"valence {values[0]:+.0f} .. {values[-1]:+.0f} left to right")


def real_grid(art: ArtImages, path: str | Path, per_class: int = 8, resolution: int | None = None) -> Path:
    rows = []
    for i in range(len(art.classes)):
        idx = np.flatnonzero(art.labels == i)[:per_class]
        x = art.subset(idx).tensor(resolution)
        rows.append(to_uint8(x))
    return save_labelled_grid(path, rows, list(art.classes), "real artworks (held out)")


# --------------------------------------------------------------------------------------------------
# The whole evaluation


def evaluate_generator(
    G: Generator,
    art_encoder: ArtEncoder,
    art_train: ArtImages,
    art_val: ArtImages,
    bank: Any,
    audio_model: AudioModel | EnsembleAudioModel | None,
    audio_val: Any,
    out_dir: Path | None,
    *,
    per_class: int = 200,
    k: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics (and, with out_dir, the grids) for an EMA generator. See the module docstring."""

    classes = list(art_train.classes)
    C = len(classes)
    gen = torch.Generator().manual_seed(seed)
    G = G.eval()
    res = G.config.resolution
    real_train = image_features(art_encoder, art_train.tensor(res))  # [Nt, F]
    real_val = image_features(art_encoder, art_val.tensor(res))

    # conditions: artworks' vectors (held-out art) and audio clips' vectors (held-out speakers)
    _, val_art_shared = art_encoder.encode(art_val.tensor())
    sources: dict[str, tuple[torch.Tensor, np.ndarray]] = {"art": (val_art_shared, art_val.labels)}
    if audio_model is not None and audio_val is not None:
        sources["audio"] = (audio_shared(audio_model, audio_val.features), audio_val.labels)

    report: dict[str, Any] = {"resolution": res, "k": k, "per_class": per_class}
    for name, (vectors, labels) in sources.items():
        intended = np.repeat(np.arange(C), per_class)
        picks = []
        for i in range(C):
            pool = np.flatnonzero(labels == i)
            picks.append(pool[torch.randint(len(pool), (per_class,), generator=gen).numpy()])
        c = vectors[torch.from_numpy(np.concatenate(picks))]
        z = torch.randn(len(c), G.config.z_dim, generator=gen)
        feats = image_features(art_encoder, generate(G, z, c))
        report[f"consistency_{name}_cond"] = emotion_consistency(
            feats, intended, real_train, art_train.labels, classes, k
        )
        if name == "art":
            report["diversity"] = diversity(feats, intended, real_train, art_train.labels, classes)
            report["frechet"] = frechet_per_emotion(feats, intended, real_train, art_train.labels, classes)

    # scales: real held-out art against the training art, and noise
    report["consistency_real_heldout"] = emotion_consistency(
        real_val, art_val.labels, real_train, art_train.labels, classes, k
    )["consistency"]
    noise = torch.rand(len(real_val), 3, res, res, generator=gen) * 2 - 1
    report["consistency_noise"] = emotion_consistency(
        image_features(art_encoder, noise), art_val.labels, real_train, art_train.labels, classes, k
    )["consistency"]
    report["frechet_real_heldout"] = frechet_per_emotion(
        real_val, art_val.labels, real_train, art_train.labels, classes
    )
    report["diversity_real_heldout"] = diversity(real_val, art_val.labels, real_train, art_train.labels, classes)[
        "ratio"
    ]
    centroids = class_centroids(bank.art, bank.art_labels, C)
    report["smoothness"] = latent_smoothness(G, centroids, seed=seed)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        emotion_grid(G, bank, classes, out_dir / "grid_emotions.png", seed=seed)
        if bank.audio is not None:
            emotion_grid(G, bank, classes, out_dir / "grid_emotions_audio.png", seed=seed, use_audio=True)
        va_plane_grid(G, bank.art, art_train.va, out_dir / "grid_va_plane.png", seed=seed)
        real_grid(art_val, out_dir / "grid_real.png", resolution=res)
    return report


def evaluate_bundle_generator(
    models: BundleModels,
    art_train: ArtImages,
    art_val: ArtImages,
    audio_val: AudioSet | None = None,
    out_dir: Path | None = None,
    *,
    per_class: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """`evaluate_generator` on a finished bundle's generator, conditioned on `art_train`'s vectors from the
    bundle's own image encoder (and on `audio_val` through its audio model, when given)."""
    if models.generator is None:
        raise ValueError("the bundle has no generator")
    bank = condition_bank(models.art_encoder, art_train)
    return evaluate_generator(
        models.generator, models.art_encoder, art_train, art_val, bank, models.audio_model, audio_val, out_dir,
        per_class=per_class, seed=seed,
    )  # fmt: skip


def summary_line(report: dict[str, Any]) -> str:
    parts = [f"emotion consistency {report['consistency_art_cond']['consistency']:.3f} (art conditions)"]
    if "consistency_audio_cond" in report:
        parts.append(f"{report['consistency_audio_cond']['consistency']:.3f} (audio conditions)")
    parts.append(
        f"[real {report['consistency_real_heldout']:.2f}, noise {report['consistency_noise']:.2f}]; "
        f"diversity ratio {report['diversity']['ratio']:.2f}; "
        f"Fréchet distance {report['frechet']['mean']:.2f} "
        f"(real held-out {report['frechet_real_heldout']['mean']:.2f}); "
        f"walk change z {report['smoothness']['z_mean_change']:.4f} c {report['smoothness']['c_mean_change']:.4f} "
        f"(unrelated {report['smoothness']['unrelated_change']:.3f})"
    )
    return "; ".join(parts)
