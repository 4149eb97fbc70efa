"""The shared front end: librosa parity, shapes, and defined behaviour on bad input."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio.frontend import FrontEnd, FrontEndConfig, trim_silence, window_starts
from engine.audio.loading import load_audio
from engine.errors import AudioLoadError

SR = 22050
N = 66150


def speech_like(seed: int = 0) -> np.ndarray:
    """Voiced harmonics with a moving pitch, two formant-like resonances and syllable-rate gating."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    harmonics = np.arange(1, 30)[:, None]
    freqs = harmonics * f0[None, :]
    amp = np.exp(-(((freqs - 600) / 250) ** 2)) + 0.6 * np.exp(-(((freqs - 1700) / 300) ** 2)) + 0.05
    voiced = (amp * np.sin(harmonics * phase[None, :])).sum(axis=0)
    gate = (np.sin(2 * np.pi * 4 * t) > -0.2).astype(float)
    x = voiced * gate + 0.02 * rng.standard_normal(N)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(N) / SR
    return {
        "white_noise": (0.1 * rng.standard_normal(N)).astype(np.float32),
        "tone_440": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "tone_sweep": (0.2 * np.sin(2 * np.pi * (100 + 2000 * t) * t)).astype(np.float32),
        "quiet_tone": (1e-3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32),
        "speech_like": speech_like(),
    }


@pytest.mark.parametrize("name", list(signals()))
def test_log_mel_matches_librosa(name: str) -> None:
    x = signals()[name]
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=x, sr=SR, n_fft=1024, hop_length=512, n_mels=128, power=2.0),
        ref=1.0,
        amin=1e-10,
        top_db=80.0,
    )
    ours = FrontEnd().log_mel(torch.from_numpy(x)[None])[0].numpy()
    assert ours.shape == ref.shape == (128, 130)
    assert np.abs(ours - ref).max() < 0.01


def test_batch_equals_single_and_output_shape() -> None:
    fe = FrontEnd(mel_mean=np.full(128, -30.0), mel_std=np.full(128, 15.0))
    batch = np.stack(list(signals().values()))
    out = fe(batch)
    assert out.features.shape == (5, 1, 128, 130)
    for i, x in enumerate(batch):
        single = fe(x).features[0]
        assert torch.allclose(single, out.features[i], atol=1e-4)


def test_zscore_uses_bundle_statistics() -> None:
    x = signals()["white_noise"]
    raw = FrontEnd()(x).features
    scaled = FrontEnd(mel_mean=-20.0, mel_std=4.0)(x).features
    assert torch.allclose(scaled, (raw + 20.0) / 4.0, atol=1e-4)


def test_loudness_normalisation_makes_level_independent_features() -> None:
    x = signals()["speech_like"]
    fe = FrontEnd()
    loud, soft = fe(x).features, fe(x * 0.05).features
    assert torch.allclose(loud, soft, atol=1e-2)


def test_nan_and_inf_are_replaced_and_counted() -> None:
    x = signals()["speech_like"].copy()
    x[100:110] = np.nan
    x[5000] = np.inf
    x[6000] = -np.inf
    out = FrontEnd()(x)
    assert torch.isfinite(out.features).all()
    assert int(out.nonfinite[0]) == 12


def test_clipped_input_is_clamped_and_measured() -> None:
    x = np.clip(signals()["tone_440"] * 8, -1.0, 1.0)
    x[:10] = 3.0  # beyond full scale, as float files can be
    out = FrontEnd()(x)
    assert torch.isfinite(out.features).all()
    assert float(out.clipped[0]) > 0.5


def test_all_silent_input_is_silent_and_finite() -> None:
    out = FrontEnd()(np.zeros(N, dtype=np.float32))
    assert bool(out.silent[0])
    assert torch.isfinite(out.features).all()
    assert float(out.rms_db[0]) < -100


def test_quiet_hiss_is_silent_but_speech_is_not() -> None:
    rng = np.random.default_rng(1)
    fe = FrontEnd()
    assert bool(fe((1e-4 * rng.standard_normal(N)).astype(np.float32)).silent[0])
    assert not bool(fe(signals()["speech_like"]).silent[0])


def test_short_input_is_padded_and_long_truncated() -> None:
    fe = FrontEnd()
    short = signals()["tone_440"][:SR]
    long = np.tile(signals()["tone_440"], 2)
    assert fe(short).features.shape == (1, 1, 128, 130)
    assert fe(long).features.shape == (1, 1, 128, 130)
    assert torch.allclose(fe(long).features, fe(long[:N]).features)


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        FrontEnd()(np.zeros(0, dtype=np.float32))


def test_trim_silence_drops_edges_only() -> None:
    tone = signals()["tone_440"][:SR]
    padded = np.concatenate([np.zeros(SR, np.float32), tone, np.zeros(SR, np.float32)])
    trimmed = trim_silence(padded)
    assert SR * 0.9 < len(trimmed) < SR * 1.2
    assert np.array_equal(trim_silence(np.zeros(100, np.float32)), np.zeros(100, np.float32))


def test_window_starts() -> None:
    assert window_starts(1000, 66150, 11025) == [0]
    assert window_starts(66150 + 2 * 11025, 66150, 11025) == [0, 11025, 22050]


def test_config_geometry() -> None:
    cfg = FrontEndConfig()
    assert (cfg.n_samples, cfg.n_frames) == (66150, 130)


@pytest.mark.parametrize(
    "fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")]
)
def test_load_audio_formats_resample_and_mix(tmp_path, fmt: str, subtype: str) -> None:
    t = np.arange(44100) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, stereo, 44100, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SR) < SR * 0.1  # 1 s at 22050 Hz (codecs may pad a little)
    spectrum = np.abs(np.fft.rfft(y[2000:20000]))
    assert abs(np.argmax(spectrum) * SR / 18000 - 440) < 5


def test_load_audio_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(AudioLoadError, match="no such"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioLoadError, match=r"corrupt\.wav"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioLoadError, match="no samples"):
        load_audio(empty)


def test_mel_filterbank_cache_is_librosa_and_survives_damage(tmp_path, monkeypatch) -> None:
    from engine.audio.frontend import mel_filterbank

    monkeypatch.setenv("SYNESTHESIA_CACHE", str(tmp_path))
    cfg = FrontEndConfig()
    want = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    first = mel_filterbank(cfg)  # computed and written
    (cached,) = (tmp_path / "mel").glob("*.npy")
    assert np.array_equal(mel_filterbank(cfg), first) and np.allclose(first, want, atol=1e-7)
    cached.write_bytes(b"not a numpy file")  # damaged: rebuilt, not trusted
    assert np.allclose(mel_filterbank(cfg), want, atol=1e-7)
    other = mel_filterbank(FrontEndConfig(n_mels=64))  # other parameters, another file
    assert other.shape == (64, cfg.n_fft // 2 + 1) and len(list((tmp_path / "mel").glob("*.npy"))) == 2
