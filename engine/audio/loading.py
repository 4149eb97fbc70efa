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


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read wav/flac/ogg/mp3 (anything libsndfile decodes) as mono float32 at `sample_rate`.

    Raises AudioLoadError naming the file when it is missing, empty or undecodable. Non-finite samples
    are kept: the front end owns that policy.
    """
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
    return resample(audio, int(sr), sample_rate)
