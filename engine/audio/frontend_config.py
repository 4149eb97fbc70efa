"""The front end's settings and its constant, the mel filter bank (cached on disk): no torch, so a show can
load a bundle and open its window before torch is imported (engine/audio/frontend.py runs the front end)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("synesthesia.frontend")


class FrontEndConfig(BaseModel):
    """Front-end settings; stored under `audio` in a bundle's manifest (with the z-score statistics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(22050, gt=0)
    window_s: float = Field(3.0, gt=0)
    n_fft: int = Field(1024, gt=0)
    hop_length: int = Field(512, gt=0)
    n_mels: int = Field(128, gt=0)
    fmin: float = Field(0.0, ge=0)
    fmax: float | None = None
    top_db: float = Field(80.0, gt=0)
    target_rms_db: float = Field(-23.0, le=0, description="RMS level (dBFS) windows are normalised to")
    max_gain_db: float = Field(30.0, ge=0, description="cap on normalisation gain, so hiss is not blown up")
    silence_db: float = Field(-50.0, le=0, description="a frame quieter than this (dBFS RMS) is silent")
    silence_fraction: float = Field(0.9, gt=0, le=1, description="share of silent frames that makes a window silent")
    trim_top_db: float = Field(40.0, gt=0, description="trainer: trim edges quieter than peak minus this")

    @property
    def n_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length  # centred STFT


def cache_root() -> Path:
    """Where the engine keeps what it can rebuild (mel filter banks, TensorRT programs): $SYNESTHESIA_CACHE
    or ~/.cache/synesthesia."""
    return Path(os.environ.get("SYNESTHESIA_CACHE", Path.home() / ".cache" / "synesthesia"))


def mel_filterbank(cfg: FrontEndConfig) -> np.ndarray:
    """librosa's mel filter bank [n_mels, n_fft // 2 + 1] for `cfg`, cached on disk.

    Importing `librosa.filters` pulls in scipy.signal and scipy.stats: about 2 s of every start-up on two
    cores, for a constant. The cache file is named after what changes the bank (the parameters and the
    librosa version); an unreadable or unwritable cache only costs that import.
    """
    params = {"sr": cfg.sample_rate, "n_fft": cfg.n_fft, "n_mels": cfg.n_mels, "fmin": cfg.fmin, "fmax": cfg.fmax}
    key = hashlib.sha256(json.dumps({**params, "librosa": version("librosa")}, sort_keys=True).encode()).hexdigest()
    path = cache_root() / "mel" / f"{key[:20]}.npy"
    shape = (cfg.n_mels, cfg.n_fft // 2 + 1)
    try:
        fb = np.load(path, allow_pickle=False)
        if fb.shape == shape and fb.dtype == np.float32 and np.isfinite(fb).all():
            return fb
    except (OSError, ValueError):
        pass  # absent or damaged: rebuild it
    import librosa

    fb = librosa.filters.mel(**params).astype(np.float32)
    try:
        from engine.atomicfile import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, fb, allow_pickle=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        log.debug("mel filter bank not cached at %s: %s", path, exc)
    return fb
