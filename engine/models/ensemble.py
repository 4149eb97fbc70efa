"""A fold ensemble exported as one network: K audio models behind the AudioModel interface.

`EnsembleAudioModel` takes the bundle's z-scored features [B, 1, M, T], re-standardises them for each
member (each fold trained with its own mel statistics: an exact per-bin affine map), runs the K members
and averages logits and valence/arousal; the embedding and shared vectors are the mean of the members'
unit vectors, normalised again. Outputs match `AudioModel.output_names`, so the ONNX graph is a drop-in
audio model for the engine (the manifest's encoder section says `ensemble: K`). Saved and loaded by
engine.models.checkpoint (`save_ensemble`; `load_audio_model` reads either kind).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.models.heads import AudioModel


class EnsembleAudioModel(nn.Module):
    """K AudioModels averaged: features -> logits, va, embedding, shared."""

    output_names = AudioModel.output_names

    def __init__(
        self,
        members: Sequence[AudioModel],
        mel_mean: Sequence[float] | np.ndarray | None = None,
        mel_std: Sequence[float] | np.ndarray | None = None,
        member_stats: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
    ) -> None:
        """`mel_mean`/`mel_std`: the statistics the input is z-scored with (the bundle's); `member_stats`:
        each member's own (mean, std). Without them the input goes to every member unchanged."""
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        n_mels = members[0].encoder.config.n_mels
        scale = torch.ones(len(members), 1, 1, n_mels, 1)
        shift = torch.zeros(len(members), 1, 1, n_mels, 1)
        if member_stats is not None and mel_mean is not None and mel_std is not None:
            mean_b, std_b = (torch.as_tensor(np.ravel(v), dtype=torch.float32) for v in (mel_mean, mel_std))
            for k, (mean_k, std_k) in enumerate(member_stats):
                m_k, s_k = (torch.as_tensor(np.ravel(v), dtype=torch.float32) for v in (mean_k, std_k))
                # (x * std_b + mean_b - mean_k) / std_k
                scale[k, 0, 0, :, 0] = std_b / s_k
                shift[k, 0, 0, :, 0] = (mean_b - m_k) / s_k
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    @property
    def config(self):
        """The members' (shared) encoder config."""
        return self.members[0].encoder.config

    @property
    def shared_dim(self) -> int:
        return int(self.members[0].projection.net[-1].out_features)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = [m(features * self.scale[k] + self.shift[k]) for k, m in enumerate(self.members)]
        logits = torch.stack([o[0] for o in outs]).mean(0)
        va = torch.stack([o[1] for o in outs]).mean(0)
        embedding = F.normalize(torch.stack([o[2] for o in outs]).mean(0), dim=1)
        shared = F.normalize(torch.stack([o[3] for o in outs]).mean(0), dim=1)
        return logits, va, embedding, shared
