"""Art corpora as arrays in memory: images, labels, valence/arousal and ids, for alignment and the GAN.

Two sources: the procedural corpus (trainer.art.painter, rendered from a seed; a different seed is a held-out
set of artworks never seen in training) and image files with labels (folder-per-label or CSV records,
decoded and resized here). Rendering is cached as npz under a cache directory so repeated runs start fast.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from engine.atomicfile import atomic_path
from engine.emotions import CIRCUMPLEX
from trainer.art.painter import ArtCorpus

log = logging.getLogger("synesthesia.art")


class ArtRecordLike(Protocol):
    """What an art loader yields: an image file with its emotion (trainer.art.corpora.ArtRecord)."""

    path: Path | str
    label: str
    valence: float | None
    arousal: float | None
    id: str


@dataclass
class ArtImages:
    """A labelled art corpus in memory.

    images uint8 [N, R, R, 3]; labels int64 [N] (index into classes); va float32 [N, 2]; ids [N] str.
    """

    images: np.ndarray
    labels: np.ndarray
    va: np.ndarray
    ids: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, R, R, 3], got {self.images.dtype} {self.images.shape}")
        if not (len(self.labels) == len(self.va) == len(self.ids) == n):
            raise ValueError("images, labels, va and ids must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def subset(self, index: np.ndarray | Sequence[int]) -> ArtImages:
        idx = np.asarray(index, dtype=np.int64)
        return ArtImages(self.images[idx], self.labels[idx], self.va[idx], self.ids[idx], list(self.classes))

    def per_class(self, n: int) -> ArtImages:
        """The first `n` items of every class (a balanced subset)."""
        keep = np.concatenate([np.flatnonzero(self.labels == c)[:n] for c in range(len(self.classes))])
        return self.subset(np.sort(keep))

    def tensor(self, resolution: int | None = None) -> torch.Tensor:
        """float32 [N, 3, R, R] in [-1, 1], area-resized to `resolution` when given."""
        x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # [N, 3, R, R]
        if resolution is not None and resolution != x.shape[-1]:
            x = resize(x, resolution)
        return x

    def thumbnails(self, size: int = 32) -> np.ndarray:
        """uint8 [N, size, size, 3] (box-filtered)."""
        return np.stack(
            [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX)) for im in self.images]
        )


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, resolution, resolution]: area averaging down, bilinear up."""
    if x.shape[-1] == resolution:
        return x
    mode = "area" if x.shape[-1] > resolution else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return torch.nn.functional.interpolate(x, size=(resolution, resolution), mode=mode, **kwargs)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[B, 3, R, R] in [-1, 1] -> uint8 [B, R, R, 3]."""
    y = ((x.detach().clamp(-1, 1) + 1.0) * 127.5 + 0.5).to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


def _cache_path(cache_dir: Path | None, key: str) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"art-{digest}.npz"


def _load_cached(path: Path | None, classes: Sequence[str]) -> ArtImages | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return ArtImages(data["images"], data["labels"], data["va"], data["ids"], list(classes))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable art cache %s (%s)", path, exc)
        return None


def _save_cached(path: Path | None, art: ArtImages) -> None:
    if path is None:
        return
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, images=art.images, labels=art.labels, va=art.va, ids=art.ids)


def procedural_art(
    classes: Sequence[str], n_per_class: int, *, size: int = 128, seed: int = 0, cache_dir: Path | None = None
) -> ArtImages:
    """Render the procedural corpus (trainer.art.painter.ArtCorpus); different seeds give disjoint artworks."""

    cache = _cache_path(
        cache_dir, f"procedural|{','.join(classes)}|{n_per_class}|{size}|{seed}|{'v1' if size <= 128 else 'v2'}"
    )
    cached = _load_cached(cache, classes)
    if cached is not None:
        return cached
    corpus = ArtCorpus(list(classes), n_per_class, size=size, seed=seed)
    index = {c: i for i, c in enumerate(classes)}
    images, labels, va, ids = [], [], [], []
    for item in corpus:
        images.append(item.image)
        labels.append(index[item.label])
        va.append((item.valence, item.arousal))
        ids.append(item.id)
    art = ArtImages(
        np.stack(images).astype(np.uint8),
        np.asarray(labels, dtype=np.int64),
        np.asarray(va, dtype=np.float32),
        np.asarray(ids),
        list(classes),
    )
    log.info("rendered %d procedural artworks at %d px (seed %d)", len(art), size, seed)
    _save_cached(cache, art)
    return art


def _square(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square, resize to size x size, RGB uint8."""
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def art_from_records(records: Iterable[ArtRecordLike], classes: Sequence[str], *, size: int = 128) -> ArtImages:
    """Decode image files (records from trainer.art.corpora) into an ArtImages; unknown labels are skipped.

    A record without valence/arousal gets its class's centre (`engine.emotions.CIRCUMPLEX`, or the origin).
    """
    index = {c: i for i, c in enumerate(classes)}
    images, labels, va, ids = [], [], [], []
    skipped = 0
    for rec in records:
        if rec.label not in index:
            skipped += 1
            continue
        with Image.open(rec.path) as img:
            images.append(_square(img, size))
        v0, a0 = CIRCUMPLEX.get(rec.label, (0.0, 0.0))
        va.append((v0 if rec.valence is None else rec.valence, a0 if rec.arousal is None else rec.arousal))
        labels.append(index[rec.label])
        ids.append(rec.id)
    if skipped:
        log.info("skipped %d artworks whose label is not one of %s", skipped, list(classes))
    if not images:
        raise ValueError("no artworks with a known label")
    return ArtImages(
        np.stack(images),
        np.asarray(labels, dtype=np.int64),
        np.asarray(va, dtype=np.float32),
        np.asarray(ids),
        list(classes),
    )
