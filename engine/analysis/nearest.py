"""Nearest artworks: cosine similarity between the room's shared vector and the bundle's art index."""

from __future__ import annotations

import numpy as np


class ArtIndex:
    """The art index's vectors (L2-normalised on load), ids and labels."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, labels: np.ndarray | None = None) -> None:
        v = np.asarray(vectors, dtype=np.float32)
        self.vectors = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        self.ids = [str(i) for i in ids]
        self.labels = [str(x) for x in labels] if labels is not None else []

    @classmethod
    def from_bundle(cls, bundle) -> ArtIndex | None:
        data = bundle.art_index()
        if data is None or "vectors" not in data or len(data["vectors"]) == 0:
            return None
        ids = data.get("ids", np.array([f"art-{i}" for i in range(len(data["vectors"]))]))
        return cls(data["vectors"], ids, data.get("labels"))

    def nearest(self, vector: np.ndarray, k: int = 3) -> list[str]:
        """Ids of the `k` most similar artworks, most similar first (none for a zero vector)."""
        if not np.any(vector):
            return []
        sims = self.vectors @ np.asarray(vector, dtype=np.float32)
        k = min(k, sims.shape[0])
        top = np.argpartition(-sims, k - 1)[:k]
        return [self.ids[i] for i in top[np.argsort(-sims[top])]]

    def class_anchors(self) -> dict[str, np.ndarray]:
        """Mean vector per label (normalised): where a forced label points in the shared space."""
        out = {}
        for label in sorted(set(self.labels)):
            mask = np.array([x == label for x in self.labels])
            m = self.vectors[mask].mean(axis=0)
            out[label] = m / max(float(np.linalg.norm(m)), 1e-12)
        return out
