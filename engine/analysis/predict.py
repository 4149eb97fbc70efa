"""Window -> front end -> audio model: one raw (unsmoothed) prediction per window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.audio.frontend import FrontEnd, FrontEndOutput
from engine.inference.base import Runner
from engine.models.bundle import Bundle


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class WindowPrediction:
    """One window's raw model output (a row of a Prediction)."""

    probs: np.ndarray  # [C]
    valence: float
    arousal: float
    embedding: np.ndarray  # [E]
    shared: np.ndarray  # [S]
    silent: bool
    rms_db: float
    nonfinite: int
    clipped: float


@dataclass
class Prediction:
    """Raw model output for a batch of windows (row i = window i)."""

    probs: np.ndarray  # [B, C]
    va: np.ndarray  # [B, 2] valence, arousal in [-1, 1]
    embedding: np.ndarray  # [B, E]
    shared: np.ndarray  # [B, S]
    silent: np.ndarray  # [B] bool
    rms_db: np.ndarray  # [B]
    nonfinite: np.ndarray  # [B] count of replaced samples
    clipped: np.ndarray  # [B] share of full-scale samples

    def row(self, i: int = 0) -> WindowPrediction:
        return WindowPrediction(
            probs=self.probs[i],
            valence=float(self.va[i, 0]),
            arousal=float(self.va[i, 1]),
            embedding=self.embedding[i],
            shared=self.shared[i],
            silent=bool(self.silent[i]),
            rms_db=float(self.rms_db[i]),
            nonfinite=int(self.nonfinite[i]),
            clipped=float(self.clipped[i]),
        )


class WindowPredictor:
    """Front end and audio runner for one bundle. `__call__(windows)` with [N] or [B, N] float32 audio."""

    def __init__(self, bundle: Bundle, runner: Runner, device: str = "cpu") -> None:
        audio = bundle.manifest.audio
        self.classes = bundle.classes
        self.frontend = FrontEnd(bundle.frontend_config(), audio.mel_mean, audio.mel_std, device=device)
        self.runner = runner

    def __call__(self, windows: np.ndarray) -> Prediction:
        return self.predict(self.frontend(windows))

    def predict(self, fe: FrontEndOutput) -> Prediction:
        """The model part alone, for a front-end output (lets the live loop time the two stages apart)."""
        logits, va, embedding, shared = self.runner(fe.features.cpu().numpy())
        return Prediction(
            probs=softmax(logits.astype(np.float64)).astype(np.float32),
            va=np.clip(va, -1.0, 1.0),
            embedding=embedding,
            shared=shared,
            silent=fe.silent.cpu().numpy(),
            rms_db=fe.rms_db.cpu().numpy(),
            nonfinite=fe.nonfinite.cpu().numpy(),
            clipped=fe.clipped.cpu().numpy(),
        )

    def reset(self) -> None:
        self.frontend.reset()
