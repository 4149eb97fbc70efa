"""What an audio training run depends on: `TrainConfig` and its enums, the checkpoint file names, and
`json_safe` for strict-JSON metrics. No side effects."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.audio.frontend import FrontEndConfig
from engine.config import Device  # the engine's --device enum: auto | cpu | cuda
from engine.models.encoders import Arch, EncoderConfig

LAST_CKPT = "ckpt.pt"


BEST_CKPT = "best.pt"


TRAINING_EXTRAS = ("classes", "frontend", "mel_mean", "mel_std")  # what export needs beside the weights


SYNTHETIC = "synthetic"


class SplitKind(StrEnum):
    SPEAKER = "speaker"  # whole speakers held out (default)
    RANDOM = "random"  # clips at random: speakers leak; labelled so everywhere
    CORPUS = "corpus"  # cross-corpus: train on the others, test on `test_corpus`


class EpochChoice(StrEnum):
    """Which clips choose the epoch that is kept."""

    # an inner speaker-independent split of the training speakers: the reported clips stay unseen
    INNER = "inner"
    # the reported validation clips themselves (the seed protocol): the figure is the best of N epochs
    HELDOUT = "heldout"


class EnsembleEpoch(StrEnum):
    """Which epoch of each fold a fold ensemble keeps."""

    # the epoch chosen on the folds' mean curve (every epoch's weights kept until then; one process)
    CHOSEN = "chosen"
    # each fold's last epoch, from its resume checkpoint: nothing is chosen (the last-epoch fold means are
    # the members' unchosen estimate), and shares of the folds (--only-folds) can be gathered later
    LAST = "last"


class VALoss(StrEnum):
    MSE = "mse"
    CCC = "ccc"


class AudioAugment(StrEnum):
    NONE = "none"
    SPEC = "spec"  # SpecAugment masks on cached features (cheap)
    WAVE = "wave"  # random placement + gallery-microphone chain on the waveform, then the front end
    FULL = "full"  # wave then spec


class Balance(StrEnum):
    """How training clips are drawn each epoch (see docs/training.md, "Balancing")."""

    NONE = "none"  # every clip once per epoch, shuffled (the seed protocol)
    SPEAKER = "speaker"  # weights 1/clips-of-the-speaker: every speaker the same share of an epoch
    CORPUS = "corpus"  # weights 1/clips-of-the-corpus: every corpus the same share
    SPEAKER_CLASS = "speaker_class"  # every speaker the same share, and within a speaker every class


CORPUS_FOLDS = "corpus"  # --folds corpus: leave one corpus out per fold


class TrainConfig(BaseModel):
    """Everything a run depends on; stored in its checkpoints and metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    data: list[str] = Field(default_factory=lambda: [SYNTHETIC], description="corpus specs; 'synthetic[:N[:SEED]]'")
    taxonomy: str = "default"
    split: SplitKind = SplitKind.SPEAKER
    test_corpus: str | None = Field(None, description="with split=corpus: the held-out corpus")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    select: EpochChoice = Field(
        EpochChoice.INNER, description="inner: choose the epoch on held-back training speakers; heldout: seed protocol"
    )
    refit: bool = Field(
        False,
        description="with select=inner: train again on all training speakers up to the chosen epoch, replaying "
        "the learning-rate schedule of the choosing run (the held-back speakers then train too)",
    )
    folds: int | Literal["corpus"] | None = Field(
        None,
        description="speaker-grouped K-fold cross-validation (or 'corpus': leave one corpus out per fold) instead "
        "of one split; the epoch is chosen on the folds' mean validation macro-F1",
    )
    ensemble: bool = Field(False, description="with folds: also write the K fold members as one ensemble.pt")
    ensemble_epoch: EnsembleEpoch = Field(EnsembleEpoch.CHOSEN, description="with ensemble: the members' epoch")
    only_folds: tuple[int, ...] | None = Field(
        None,
        description="with folds: train only these folds (1-based) and stop; one process per share of the folds, "
        "then a run with --resume and without this gathers them (selection, summary, refit)",
    )
    balance: Balance = Field(Balance.NONE, description="weighted sampling of training clips per epoch")
    synthetic_per_class: int = Field(0, ge=0, description="procedural clips per class added to training only")
    synthetic_stream: bool = Field(
        False,
        description="the synthetic_per_class clips are windows cut from the demo's crossfaded procedural stream "
        "(as `synth:` sources play) rather than single utterances",
    )
    synthetic_weight: float = Field(
        1.0, gt=0, description="with --balance: the procedural corpus weighs as this many speakers (or corpora)"
    )
    cache_dir: Path | None = None
    # model
    arch: Arch = Arch.CNN
    width: int = Field(32, gt=0)
    embedding_dim: int = Field(128, gt=0)
    rnn_hidden: int = Field(128, gt=0)
    dropout: float = Field(0.3, ge=0, lt=1)
    instnorm: bool = Field(
        False, description="per-utterance mean/variance normalisation of each mel bin (in the model)"
    )
    heads: int = Field(4, gt=0)
    layers: int = Field(2, gt=0)
    shared_dim: int = Field(128, gt=0)
    # optimisation (seed protocol)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=1, description="global batch; each DDP process takes batch/world")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    va_loss: VALoss = VALoss.MSE
    va_weight: float = Field(0.5, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: bool = Field(False, description="inverse-frequency cross-entropy weights")
    plateau_patience: int = Field(3, ge=0)
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    augment: AudioAugment = AudioAugment.SPEC
    mixup: float = Field(0.0, ge=0, description="mixup Beta(alpha, alpha) on features and targets; 0: off")
    speed_perturb: float = Field(
        0.0, ge=0, le=1, description="with wave augmentation: share of clips resampled x0.9-1.1"
    )
    pitch_shift: float = Field(
        0.0, ge=0, le=1, description="with wave augmentation: share of clips shifted +-1-2 semitones"
    )
    seed: int = 0
    # running
    out: Path = Path("runs/audio")
    resume: bool = False
    compile: bool = Field(False, description="torch.compile the encoder (about 10x faster training on CPU)")
    # One thread by default: on a shared or oversubscribed CPU, two OpenMP threads per process measured up
    # to 20x slower than one (threads spin at barriers waiting for a descheduled partner).
    threads: int = Field(1, ge=0, description="torch CPU threads per process; 0 leaves torch's default")
    latency_threads: int = Field(2, ge=1, description="ONNX Runtime threads for the CPU timing (the engine's)")
    device: Device = Device.AUTO
    reports: bool = True
    latency_runs: int = Field(50, ge=0, description="ONNX Runtime timing repetitions (0: skip)")

    def encoder_config(self, n_classes: int, frontend: FrontEndConfig) -> EncoderConfig:
        return EncoderConfig(
            arch=self.arch,
            n_classes=n_classes,
            n_mels=frontend.n_mels,
            n_frames=frontend.n_frames,
            embedding_dim=self.embedding_dim,
            width=self.width,
            rnn_hidden=self.rnn_hidden,
            dropout=self.dropout,
            heads=self.heads,
            layers=self.layers,
            instnorm=self.instnorm,
        )


def json_safe(obj: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
