"""Audio clips in the shared-space pipeline: `AudioSet` (z-scored log-mels with labels, VA, speakers), built
from raw clips through the engine's front end, and their embeddings by a frozen audio encoder.

The one piece both the alignment (trainer.space.align) and its data loading (trainer.space.data) need.
No side effects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.audio.frontend import FrontEnd, FrontEndConfig, trim_silence
from engine.emotions import CIRCUMPLEX
from engine.models.ensemble import EnsembleAudioModel
from engine.models.heads import AudioModel


@dataclass
class AudioSet:
    """Audio clips through the front end: features [N, 1, M, T], labels [N], va [N, 2], speakers [N]."""

    features: torch.Tensor
    labels: np.ndarray
    va: np.ndarray
    speakers: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | Sequence[int]) -> AudioSet:
        idx = np.asarray(index, dtype=np.int64)
        return AudioSet(self.features[idx], self.labels[idx], self.va[idx], self.speakers[idx], list(self.classes))


def class_va(classes: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """The circumplex centre of each label (for corpora with categories only): float32 [N, 2]."""
    table = np.array([CIRCUMPLEX.get(c, (0.0, 0.0)) for c in classes], dtype=np.float32)
    return table[labels]


def audio_set_from_clips(
    clips: Iterable[tuple[np.ndarray, str, float | None, float | None, str]],
    classes: Sequence[str],
    frontend: FrontEndConfig,
    mel_mean: Sequence[float] | np.ndarray,
    mel_std: Sequence[float] | np.ndarray,
    batch_size: int = 64,
) -> AudioSet:
    """(audio float32 mono at the front end's rate, label, valence, arousal, speaker) -> AudioSet.

    Clips with a label outside `classes` are skipped; missing valence/arousal get the class centre.
    """
    fe = FrontEnd(frontend, np.asarray(mel_mean), np.asarray(mel_std))
    n = frontend.n_samples
    index = {c: i for i, c in enumerate(classes)}
    feats: list[torch.Tensor] = []
    labels, va, speakers = [], [], []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            feats.append(fe(np.stack(pending)).features)  # [b, 1, M, T]
            pending.clear()

    for audio, label, valence, arousal, speaker in clips:
        if label not in index:
            continue
        v0, a0 = CIRCUMPLEX.get(label, (0.0, 0.0))
        clip = trim_silence(np.asarray(audio, dtype=np.float32), frontend)[:n]
        pending.append(np.pad(clip, (0, n - len(clip))))
        labels.append(index[label])
        va.append((v0 if valence is None else valence, a0 if arousal is None else arousal))
        speakers.append(str(speaker))
        if len(pending) >= batch_size:
            flush()
    flush()
    if not labels:
        raise ValueError("no audio clips with a known label")
    return AudioSet(
        torch.cat(feats),
        np.asarray(labels, dtype=np.int64),
        np.asarray(va, dtype=np.float32),
        np.asarray(speakers),
        list(classes),
    )


@torch.no_grad()
def embed_audio(audio_model: AudioModel, features: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The frozen encoder's embeddings [N, E] (eval mode)."""
    encoder = audio_model.encoder.eval()
    out = [encoder(features[i : i + batch_size])[2] for i in range(0, len(features), batch_size)]
    return torch.cat(out)


def audio_shared(model: AudioModel | EnsembleAudioModel, features: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The shared-space vectors [N, S] of a model (a fold ensemble: the normalised mean of its members')."""
    with torch.no_grad():
        if isinstance(model, EnsembleAudioModel):
            model = model.eval()
            return torch.cat([model(features[i : i + batch_size])[3] for i in range(0, len(features), batch_size)])
        return model.projection(embed_audio(model, features, batch_size))


def concat_audio(sets: Sequence[AudioSet]) -> AudioSet:
    """One AudioSet of several with the same classes, in order."""
    return AudioSet(
        torch.cat([s.features for s in sets]),
        np.concatenate([s.labels for s in sets]),
        np.concatenate([s.va for s in sets]),
        np.concatenate([s.speakers for s in sets]),
        list(sets[0].classes),
    )
