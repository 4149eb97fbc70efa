"""Projection heads into the shared audio–art space and the exported audio model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.encoders import EmotionEncoder


class ProjectionHead(nn.Module):
    """MLP into the shared space, L2-normalised so cosine similarity is a dot product."""

    def __init__(self, in_dim: int, shared_dim: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, shared_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


class AudioModel(nn.Module):
    """Encoder and audio projection in one call, the unit the bundle exports.

    features [B, 1, M, T] -> logits [B, C], va [B, 2], embedding [B, E], shared [B, S].
    """

    output_names = ("logits", "va", "embedding", "shared")

    def __init__(self, encoder: EmotionEncoder, projection: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, va, embedding = self.encoder(features)
        return logits, va, embedding, self.projection(embedding)
