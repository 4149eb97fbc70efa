"""The decode-once feature cache, statistics on the training split, the inner HPO split, the default pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio.frontend import FrontEnd, FrontEndConfig, trim_silence
from engine.models.bundle import load_bundle
from trainer.audio.config import TrainConfig
from trainer.audio.data import inner_split, prepare
from trainer.audio.features import ClipSource, FeatureCache, mel_statistics, place_in_window, standardize
from trainer.cli import main


def tone(path: Path, freq: float, seconds: float = 1.5, sr: int = 22050) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    audio = np.zeros(int((seconds + 1.0) * sr), dtype=np.float32)
    audio[sr // 2 : sr // 2 + t.size] = 0.3 * np.sin(2 * np.pi * freq * t)  # silence either side to trim
    sf.write(path, audio, sr)
    return path


def test_cache_computes_once_and_matches_the_front_end(tmp_path: Path) -> None:
    cfg = FrontEndConfig()
    wav = tone(tmp_path / "a.wav", 440.0)
    cache = FeatureCache(cfg, tmp_path / "cache")
    audio, mels = cache.get_many([ClipSource.from_file(wav, cfg.sample_rate)])
    assert (cache.hits, cache.misses) == (0, 1)
    raw, _ = sf.read(wav, dtype="float32")
    trimmed = trim_silence(raw, cfg)
    assert abs(audio[0].size - trimmed.size) == 0 and audio[0].dtype == np.float16
    expected = FrontEnd(cfg)(place_in_window(trimmed, cfg.n_samples)).features[0, 0].numpy()
    np.testing.assert_allclose(mels[0], expected, atol=1e-3)
    again = FeatureCache(cfg, tmp_path / "cache")
    _, mels2 = again.get_many([ClipSource.from_file(wav, cfg.sample_rate)])
    assert (again.hits, again.misses) == (1, 0)
    np.testing.assert_array_equal(mels2, mels)


def test_cache_key_follows_the_file_and_the_front_end(tmp_path: Path) -> None:
    cfg = FrontEndConfig()
    wav = tone(tmp_path / "a.wav", 440.0)
    cache = FeatureCache(cfg, tmp_path / "cache")
    key = cache.path_for(ClipSource.from_file(wav, cfg.sample_rate))
    tone(wav, 880.0)
    os.utime(wav, ns=(1, 10**18))  # a rewritten file gets a new mtime
    assert cache.path_for(ClipSource.from_file(wav, cfg.sample_rate)) != key
    other = FeatureCache(FrontEndConfig(n_mels=64), tmp_path / "cache")
    assert other.path_for(ClipSource.from_file(wav, cfg.sample_rate)) != cache.path_for(
        ClipSource.from_file(wav, cfg.sample_rate)
    )


def test_damaged_cache_entry_is_recomputed(tmp_path: Path) -> None:
    cfg = FrontEndConfig()
    src = ClipSource.from_file(tone(tmp_path / "a.wav", 300.0), cfg.sample_rate)
    cache = FeatureCache(cfg, tmp_path / "cache")
    cache.get_many([src])
    cache.path_for(src).write_bytes(b"not an npz")
    fresh = FeatureCache(cfg, tmp_path / "cache")
    fresh.get_many([src])
    assert fresh.misses == 1


def test_statistics_are_per_bin_and_standardize_uses_them() -> None:
    rng = np.random.default_rng(0)
    mels = rng.normal(-40.0, 10.0, (6, 128, 130)).astype(np.float32)
    mels[:, 0] += 30.0
    mean, std = mel_statistics(mels)
    assert mean.shape == std.shape == (128,)
    assert mean[0] == pytest.approx(mels[:, 0].mean(), abs=1e-3)
    z = standardize(mels, mean, std)
    assert z.shape == (6, 1, 128, 130)
    assert float(z[:, 0, 0].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(z[:, 0, 5].std()) == pytest.approx(1.0, abs=1e-2)


def test_statistics_come_from_the_training_split_only(tmp_path: Path) -> None:
    cfg = TrainConfig(data=["synthetic:3"], cache_dir=tmp_path / "cache")
    prep = prepare(cfg, progress=False)
    mean, _ = mel_statistics(prep.train.mels)
    np.testing.assert_array_equal(prep.mel_mean, mean)
    assert set(prep.train.speakers).isdisjoint(prep.val.speakers)
    inner = inner_split(prep, 0.3, seed=1)
    assert set(inner.val.speakers) <= set(prep.train.speakers)  # tuning never sees the outer validation
    assert set(inner.val.speakers).isdisjoint(prep.val.speakers)
    assert set(inner.train.speakers).isdisjoint(inner.val.speakers)


def test_default_pipeline_writes_a_bundle_with_every_figure(tmp_path: Path) -> None:
    argv = ["default", "--data", "synthetic:3", "--synthetic-per-class", "0", "--epochs", "1", "--width", "4"]
    argv += ["--rnn-hidden", "16", "--no-compile"]
    argv += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "bundle"), "--latency-runs", "2"]
    # the audio half only: the art half trains a GAN for minutes and has its own end-to-end test
    for step in ("main", "seed3", "cross", "bundle"):
        argv += ["--steps", step]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    bundle = load_bundle(tmp_path / "bundle")
    metrics = bundle.manifest.metrics
    assert metrics["default"]["split_rule"].startswith("speaker-independent")
    assert metrics["seed3"]["taxonomy"] == "seed3"
    assert metrics["source"] == "main"  # no cv run: the single-split run ships
    assert set(metrics["goals"]) == {
        "seed3_accuracy", "default_macro_f1", "sad_recall", "cross_language_accuracy", "max_parameters",
        "max_cpu_ms_per_window",
    }  # fmt: skip
    assert metrics["default"]["command"].startswith("synesthesia-train audio")
    assert "non-commercial" in bundle.manifest.license
    assert bundle.manifest.data["split"]["val_speakers"]
    summary = json.loads((tmp_path / "runs" / "main" / "metrics.json").read_text())
    assert summary["taxonomy"] == "default"


def test_stream_cut_procedural_clips_are_windows_of_the_demo_stream() -> None:
    from engine.audio.synth import SynthStream
    from trainer.audio.data import synthetic_records

    fe = FrontEndConfig()
    n = round(fe.window_s * fe.sample_rate)
    recs, clips = synthetic_records(["happy", "sad"], 2, 7, fe)
    recs_s, cut = synthetic_records(["happy", "sad"], 2, 7, fe, stream=True)
    assert [r.emotion for r in recs] == [r.emotion for r in recs_s] and [r.speaker for r in recs] == [
        r.speaker for r in recs_s
    ]
    assert all(c.key != s.key for c, s in zip(clips, cut, strict=True))  # cached apart
    first, second = cut[0].load(), cut[0].load()
    assert first.shape == (n,) and np.isfinite(first).all() and np.array_equal(first, second)  # seeded
    assert not np.allclose(first, clips[0].load()[:n])
    # the window is the stream's own audio at the clip's voice and valence/arousal, from some offset
    from trainer.audio.synthetic import SyntheticCorpus

    spec = SyntheticCorpus(["happy", "sad"], 2, duration_s=fe.window_s, seed=7, sample_rate=fe.sample_rate).spec(0)
    whole = SynthStream((spec.valence, spec.arousal), kind=spec.kind, sample_rate=fe.sample_rate, seed=spec.seed)
    audio = whole.read(6 * fe.sample_rate + n)
    starts = [k for k in range(6 * fe.sample_rate) if abs(audio[k] - first[0]) < 1e-7]
    assert any(np.array_equal(audio[k : k + n], first) for k in starts)
