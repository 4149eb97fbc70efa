"""The trainer's own files through the engine's one checkpoint writer: GAN evaluation of a bundle runs and
returns figures, and the audio resume file and GAN checkpoint survive a crash in the middle of a write."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import engine.models.checkpoint as checkpoint_module
from engine.errors import BundleError
from engine.models.checkpoint import load_checkpoint
from engine.models.generator import GeneratorConfig
from tests.bundles import make_bundle
from trainer.art.encoder import ArtEncoder, ImageEncoderConfig
from trainer.art.images import procedural_art
from trainer.audio.config import LAST_CKPT
from trainer.audio.loop import RESUME_KEYS
from trainer.bundle.evaluate import evaluate_gan
from trainer.cli import main
from trainer.gan.model import DiscriminatorConfig, condition_bank
from trainer.gan.train import GanConfig, load_gan_checkpoint, train_gan

TINY = ["--data", "synthetic:3", "--width", "4", "--embedding-dim", "16", "--rnn-hidden", "16", "--no-reports"]
FAST = ["--latency-runs", "0", "--augment", "none"]


def _crash_after(monkeypatch: pytest.MonkeyPatch, good_writes: int) -> None:
    """torch.save inside save_checkpoint: the first `good_writes` calls work, later ones write half a file
    and die (a crash or a full disk mid-write)."""
    real = torch.save
    calls = {"n": 0}

    def flaky(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= good_writes:
            return real(obj, f, *args, **kwargs)
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", flaky)


def test_gan_evaluation_of_a_bundle_runs_and_returns_numbers(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", generator=True, art_encoder=True)
    report = evaluate_gan(bundle, per_class=4, art_per_class=6, art_val_per_class=4, cache_dir=tmp_path / "cache")
    assert 0.0 <= report["consistency_art_cond"]["consistency"] <= 1.0
    assert 0.0 <= report["consistency_real_heldout"] <= 1.0
    assert math.isfinite(report["diversity"]["ratio"]) and report["diversity"]["ratio"] > 0
    assert math.isfinite(report["frechet"]["mean"])
    assert report["smoothness"]["z_mean_change"] >= 0
    assert "emotion consistency" in report["summary"]


def test_evaluate_command_reports_gan_figures_of_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "bundle", generator=True, art_encoder=True)
    assert main(["evaluate", "--bundle", str(bundle), "--cache-dir", str(tmp_path / "cache")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["gan"].startswith("emotion consistency")


def test_gan_evaluation_needs_the_art_half(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no art half"):
        evaluate_gan(make_bundle(tmp_path / "audio_only"))


def test_audio_resume_file_survives_a_crash_mid_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["audio", *TINY, *FAST, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main([*args, "--epochs", "1"]) == 0
    before = load_checkpoint(out / LAST_CKPT, "audio_model", required=RESUME_KEYS)
    assert before["epoch"] == 0

    _crash_after(monkeypatch, good_writes=0)
    with pytest.raises(OSError, match="disk full"):
        main([*args, "--epochs", "2", "--resume"])
    monkeypatch.undo()

    after = load_checkpoint(out / LAST_CKPT, "audio_model", required=RESUME_KEYS)  # the old file, whole
    assert after["epoch"] == 0
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    assert main([*args, "--epochs", "2", "--resume"]) == 0  # and the run goes on from it
    assert load_checkpoint(out / LAST_CKPT, "audio_model", required=RESUME_KEYS)["epoch"] == 1


def test_gan_checkpoint_survives_a_crash_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    art = procedural_art(["angry", "happy", "sad", "neutral"], 4, size=32, seed=0)
    enc = ArtEncoder(ImageEncoderConfig(input_size=32, width=4, stages=2, feature_dim=16, shared_dim=16)).eval()
    bank = condition_bank(enc, art)
    gen = GeneratorConfig(resolution=32, z_dim=8, cond_dim=16, base_channels=4, max_channels=16)
    disc = DiscriminatorConfig(resolution=32, cond_dim=16, base_channels=4, max_channels=16)
    cfg = GanConfig(
        generator=gen, discriminator=disc, steps=2, batch_size=4, checkpoint_every=1, sample_every=100, ema_start=0
    )
    out = tmp_path / "gan"
    _crash_after(monkeypatch, good_writes=1)  # the step-1 checkpoint is written, the step-2 one dies
    with pytest.raises(OSError, match="disk full"):
        train_gan(art, bank, cfg, out)
    monkeypatch.undo()
    assert load_gan_checkpoint(out / "gan_last.pt")["step"] == 1
    result = train_gan(art, bank, cfg, out, resume=True)
    assert result.step == 2 and load_gan_checkpoint(out / "gan_last.pt")["step"] == 2
