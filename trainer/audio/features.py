"""Decode-once feature cache and the in-memory clip bank the training loops draw batches from.

Each clip is decoded, silence-trimmed and put through the engine's front end (unscaled log-mel) once;
the trimmed waveform and the clean log-mel are stored as one npz per clip under the cache directory,
keyed by the file's path, mtime and size and the front-end configuration, so twenty epochs (and the
next run) never decode again. A `ClipBank` holds the waveforms (float16, for on-the-fly waveform
augmentation) and the clean log-mels (float32, for evaluation and spec-only training) in RAM.

Procedural clips (`trainer.audio.synthetic`) go through the same cache, keyed by their generation spec.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.atomicfile import atomic_path
from engine.audio.frontend import FrontEnd, FrontEndConfig, trim_silence
from engine.audio.loading import load_audio

log = logging.getLogger("synesthesia.features")

CACHE_VERSION = 2
MAX_CLIP_WINDOWS = 2.0  # trimmed clips longer than this many windows are cut (RAVDESS/EmoDB never are)
_FE_BATCH = 32


def default_cache_dir() -> Path:
    root = os.environ.get("SYNESTHESIA_CACHE")
    return Path(root) / "features" if root else Path.home() / ".cache" / "synesthesia" / "features"


def config_digest(config: FrontEndConfig, trim: bool) -> str:
    """Short hash of everything that changes the cached arrays."""
    text = f"v{CACHE_VERSION}|trim={trim}|{config.model_dump_json()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def place_in_window(audio: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Cut or pad a clip to `n` samples.

    Evaluation (`rng` None) does what the engine sees at the start of an utterance: a centred cut of a
    long clip, a short clip padded at the end. Training draws the cut or the start at random, so the
    encoder learns that speech may sit anywhere in the live window.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size >= n:
        start = int(rng.integers(0, audio.size - n + 1)) if rng is not None else (audio.size - n) // 2
        return audio[start : start + n]
    out = np.zeros(n, dtype=np.float32)
    start = int(rng.integers(0, n - audio.size + 1)) if rng is not None else 0
    out[start : start + audio.size] = audio
    return out


def crops_of(audio: np.ndarray, n: int, count: int) -> list[np.ndarray]:
    """Up to `count` evenly spaced `n`-sample windows of a clip, first and last at its ends (test-time
    averaging); a clip no longer than one window gives its one evaluation window."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size <= n or count <= 1:
        return [place_in_window(audio, n)]
    starts = np.unique(np.linspace(0, audio.size - n, count).round().astype(np.int64))
    return [audio[s : s + n] for s in starts]


@dataclass
class ClipSource:
    """Where one clip's audio comes from: a file, or a generator for procedural clips."""

    key: str  # the cache key's identity part (file: path|mtime|size; procedural: its spec)
    load: Callable[[], np.ndarray]  # -> mono float32 at the front end's rate

    @classmethod
    def from_file(cls, path: str | Path, sample_rate: int) -> ClipSource:
        p = Path(path).resolve()
        st = p.stat()
        return cls(f"{p}|{st.st_mtime_ns}|{st.st_size}", lambda: load_audio(p, sample_rate))


class FeatureCache:
    """Trimmed waveform + unscaled clean log-mel per clip, computed once, stored as npz."""

    def __init__(self, config: FrontEndConfig | None = None, root: str | Path | None = None, trim: bool = True) -> None:
        self.config = config or FrontEndConfig()
        self.trim = trim
        self.digest = config_digest(self.config, trim)
        self.root = Path(root) if root is not None else default_cache_dir()
        self._frontend: FrontEnd | None = None
        self.hits = 0
        self.misses = 0

    @property
    def frontend(self) -> FrontEnd:
        if self._frontend is None:
            self._frontend = FrontEnd(self.config)  # no statistics: unscaled log-mel
        return self._frontend

    def path_for(self, source: ClipSource) -> Path:
        name = hashlib.sha256(f"{source.key}|{self.digest}".encode()).hexdigest()
        return self.root / name[:2] / f"{name[2:24]}.npz"

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["audio"], data["mel"]
        except (OSError, KeyError, ValueError, EOFError):
            return None  # missing or damaged (an interrupted write): recompute

    def _write(self, path: Path, audio: np.ndarray, mel: np.ndarray) -> None:
        with atomic_path(path, suffix=".npz") as tmp:  # parallel ranks or runs never see half a file
            np.savez(tmp, audio=audio, mel=mel)

    def prepare_audio(self, audio: np.ndarray) -> np.ndarray:
        """Trim (trainer policy) and cap the length, float32."""
        if self.trim:
            audio = trim_silence(audio, self.config)
        cap = int(MAX_CLIP_WINDOWS * self.config.n_samples)
        return np.ascontiguousarray(audio[:cap], dtype=np.float32)

    def mels(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Clean evaluation windows -> unscaled log-mel [N, n_mels, n_frames] float32, batched."""
        n = self.config.n_samples
        out = []
        for start in range(0, len(clips), _FE_BATCH):
            batch = np.stack([place_in_window(c, n) for c in clips[start : start + _FE_BATCH]])
            out.append(self.frontend(batch).features[:, 0].numpy())  # [B, 1, M, T] -> [B, M, T]
        return np.concatenate(out) if out else np.zeros((0, self.config.n_mels, self.config.n_frames), np.float32)

    def get_many(
        self, sources: Sequence[ClipSource], progress: Callable[[int], None] | None = None
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """(trimmed waveforms float16, clean log-mels [N, M, T]) for every source, from cache or computed."""
        audio: list[np.ndarray | None] = [None] * len(sources)
        mels = np.zeros((len(sources), self.config.n_mels, self.config.n_frames), np.float32)
        todo: list[int] = []
        for i, src in enumerate(sources):
            got = self._read(self.path_for(src))
            if got is None:
                todo.append(i)
                continue
            audio[i], mels[i] = got
            self.hits += 1
            if progress:
                progress(1)
        for start in range(0, len(todo), _FE_BATCH):
            chunk = todo[start : start + _FE_BATCH]
            clips = [self.prepare_audio(sources[i].load()) for i in chunk]
            chunk_mels = self.mels(clips)  # from float32: the engine's features of this clip, exactly
            for i, clip, mel in zip(chunk, clips, chunk_mels, strict=True):
                # float16 waveforms (for augmentation) keep 200 MB of speech in 100 MB of RAM and disk
                clip16 = clip.astype(np.float16)
                self._write(self.path_for(sources[i]), clip16, mel)
                audio[i], mels[i] = clip16, mel
                self.misses += 1
            if progress:
                progress(len(chunk))
        return [a for a in audio if a is not None], mels


@dataclass
class ClipBank:
    """Clips of one experiment in RAM with their targets; `subset` views share nothing mutable."""

    audio: list[np.ndarray]  # trimmed waveforms, float16, variable length
    mels: np.ndarray  # [N, n_mels, n_frames] unscaled clean log-mel
    labels: np.ndarray  # [N] int64 class index, -1 for clips with only VA targets
    va: np.ndarray  # [N, 2] float32 (valence, arousal) targets
    has_va: np.ndarray  # [N] bool
    speakers: list[str]
    corpora: list[str]
    ids: list[str] = field(default_factory=list)  # file path or procedural id, for reports

    def __len__(self) -> int:
        return len(self.audio)

    def subset(self, index: Sequence[int] | np.ndarray) -> ClipBank:
        idx = np.asarray(index, dtype=np.int64)
        return ClipBank(
            audio=[self.audio[i] for i in idx],
            mels=self.mels[idx],
            labels=self.labels[idx],
            va=self.va[idx],
            has_va=self.has_va[idx],
            speakers=[self.speakers[i] for i in idx],
            corpora=[self.corpora[i] for i in idx],
            ids=[self.ids[i] for i in idx] if self.ids else [],
        )

    @classmethod
    def concat(cls, banks: Sequence[ClipBank]) -> ClipBank:
        return cls(
            audio=[a for b in banks for a in b.audio],
            mels=np.concatenate([b.mels for b in banks]),
            labels=np.concatenate([b.labels for b in banks]),
            va=np.concatenate([b.va for b in banks]),
            has_va=np.concatenate([b.has_va for b in banks]),
            speakers=[s for b in banks for s in b.speakers],
            corpora=[c for b in banks for c in b.corpora],
            ids=[i for b in banks for i in b.ids],
        )

    def waves(self, index: Sequence[int] | np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
        """[B, n] float32 windows of the chosen clips (random placement with `rng`)."""
        return np.stack([place_in_window(self.audio[i].astype(np.float32), n, rng) for i in index])


def mel_statistics(mels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean and std over clips and frames ([N, M, T] -> [M], [M]), float64 accumulation."""
    if len(mels) == 0:
        raise ValueError("no clips to compute feature statistics from")
    mean = mels.mean(axis=(0, 2), dtype=np.float64)
    std = mels.std(axis=(0, 2), dtype=np.float64)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def standardize(mels: np.ndarray | torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """[B, M, T] unscaled log-mel -> [B, 1, M, T] z-scored float32 tensor (the encoder's input)."""
    x = torch.as_tensor(mels, dtype=torch.float32)
    m = torch.as_tensor(mean, dtype=torch.float32)[:, None]  # [M, 1] broadcasts over frames
    s = torch.as_tensor(std, dtype=torch.float32)[:, None]
    return ((x - m) / s).unsqueeze(1)
