"""Decode audio files to mono float32 at the engine's sample rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import AudioLoadError

SAMPLE_RATE = 22050


def to_mono(audio: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] -> [n] float32 (channel mean)."""
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr through librosa); a no-op when the rates match."""
    if orig_sr == target_sr:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def _read(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 at the file's rate, that rate); AudioLoadError naming the file."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"{path}: no such audio file")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioLoadError(f"{path}: cannot decode audio ({exc})") from exc
    audio = to_mono(np.asarray(audio))
    if audio.size == 0:
        raise AudioLoadError(f"{path}: the file holds no samples")
    return audio, int(sr)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read wav/flac/ogg/mp3 (anything libsndfile decodes) as mono float32 at `sample_rate`.

    Raises AudioLoadError naming the file when it is missing, empty or undecodable. Non-finite samples
    are kept: the front end owns that policy.
    """
    audio, sr = _read(path)
    return resample(audio, sr, sample_rate)


def load_audio_sanitised(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """load_audio with NaN/inf replaced by 0 *before* resampling (the front end's policy; a resampler
    would smear one NaN over its whole filter length), and where they were.

    Returns (audio, positions): `positions` are the sorted indices at `sample_rate` of the replaced
    samples, one per replaced sample of the file (so `len(positions)` is the count in the file).
    """
    audio, sr = _read(path)
    bad = np.flatnonzero(~np.isfinite(audio))
    if bad.size:
        audio = np.where(np.isfinite(audio), audio, np.float32(0.0)).astype(np.float32, copy=False)
        bad = bad * sample_rate // sr  # the same instant at the output rate
    return resample(audio, sr, sample_rate), bad
