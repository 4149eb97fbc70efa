"""synesthesia-train audio / export / hpo / compare on tiny procedural data (CPU, seconds each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models.bundle import load_bundle
from engine.models.checkpoint import load_audio_model
from engine.models.encoders import Arch
from tests.bundles import attach_small_art_half
from trainer.bundle.export import PARITY_ATOL
from trainer.cli import main

TINY = ["--data", "synthetic:3", "--epochs", "1", "--width", "4", "--embedding-dim", "16", "--rnn-hidden", "16"]
FAST = ["--no-reports", "--latency-runs", "0", "--augment", "none", "--heads", "2", "--layers", "1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the module: the procedural clips are generated once."""
    return tmp_path_factory.mktemp("features")


def export_tiny(tmp_path: Path, *flags: str) -> int:
    """`synesthesia-train export` of tmp_path/run/best.pt, audio only (no art half: seconds, not minutes)."""
    return main(["export", str(tmp_path / "run" / "best.pt"), "--art-from", "none", *flags])


def train_tiny(out: Path, cache: Path, *extra: str) -> dict:
    assert main(["audio", *TINY, *FAST, "--cache-dir", str(cache), "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("arch", [a.value for a in Arch])
def test_every_family_trains_one_epoch(arch: str, tmp_path: Path, cache: Path) -> None:
    metrics = train_tiny(tmp_path, cache, "--arch", arch)
    assert metrics["arch"] == arch
    assert metrics["split_rule"].startswith("speaker-independent")
    assert set(metrics["split"]["val_speakers"]).isdisjoint(metrics["split"]["train_speakers"])
    assert 0.0 <= metrics["val"]["accuracy"] <= 1.0
    assert len(metrics["val"]["confusion"]) == 4
    assert metrics["parameters"]["encoder"] > 0
    model = load_audio_model(tmp_path / "best.pt")
    logits, va, _emb, shared = model(torch.zeros(2, 1, 128, 130))
    assert logits.shape == (2, 4) and va.shape == (2, 2) and shared.shape == (2, 128)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and "optimizer" in ckpt and ckpt["train_config"]["arch"] == arch


def test_reports_and_random_split_are_labelled(tmp_path: Path, cache: Path) -> None:
    assert (
        main(
            [
                "audio",
                *TINY,
                "--split",
                "random",
                "--arch",
                "ann",
                "--latency-runs",
                "2",
                "--augment",
                "full",
                "--cache-dir",
                str(cache),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "NOT speaker-independent" in metrics["split_rule"]
    assert metrics["command"].startswith("synesthesia-train audio")
    assert metrics["cpu_ms_per_window"]["onnxruntime"] > 0
    for png in ("confusion.png", "curves.png", "embedding.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, cache: Path) -> None:
    first = train_tiny(tmp_path, cache, "--arch", "ann")
    second = train_tiny(tmp_path, cache, "--arch", "ann", "--epochs", "2", "--resume")
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 was not trained again
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["epoch"] == 1
    # a different setup in the same folder is refused, not silently mixed
    assert (
        main(
            [
                "audio",
                *TINY,
                *FAST,
                "--arch",
                "cnn",
                "--resume",
                "--epochs",
                "3",
                "--cache-dir",
                str(cache),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )


def test_export_matches_torch(tmp_path: Path, cache: Path) -> None:
    train_tiny(tmp_path / "run", cache, "--arch", "cnn")
    bundle_dir = tmp_path / "bundle"
    assert export_tiny(tmp_path, "--out", str(bundle_dir), "--license", "test") == 0
    bundle = load_bundle(bundle_dir)
    assert bundle.classes == ["angry", "happy", "sad", "neutral"]
    assert bundle.manifest.metrics["export_parity_max_abs"]["audio_model"] <= PARITY_ATOL
    assert len(bundle.manifest.audio.mel_mean) == 128
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((5, 1, 128, 130)).astype(np.float32)
    session = ort.InferenceSession(str(bundle.file("audio_model.onnx")), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": x})
    with torch.no_grad():
        ref = load_audio_model(bundle.file("audio_model.pt"))(torch.from_numpy(x))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=PARITY_ATOL)


def test_hpo_two_trials_in_sqlite(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "study.db"
    argv = ["hpo", *TINY, *FAST, "--arch", "ann", "--trials", "2", "--storage", f"sqlite:///{db}"]
    assert main([*argv, "--study-name", "t", "--cache-dir", str(cache), "--out", str(tmp_path / "hpo")]) == 0
    result = json.loads((tmp_path / "hpo" / "hpo.json").read_text())
    assert db.is_file() and len(result["trials"]) == 2
    assert result["inner_split_rule"].startswith("inner speaker-independent")
    assert "never used while tuning" in result["final"]["note"]
    import optuna

    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{db}").trials) == 2


def test_compare_writes_table_and_plot(tmp_path: Path, cache: Path) -> None:
    argv = ["compare", *TINY, *FAST, "--arch", "ann", "--arch", "cnn", "--cache-dir", str(cache)]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    md = (tmp_path / "compare.md").read_text()
    assert "Epoch chosen on: an inner split of the training speakers" in md
    assert "speaker-independent" in md and "| ann |" in md and "| cnn |" in md
    assert (tmp_path / "compare.png").is_file()
    assert [r["name"] for r in json.loads((tmp_path / "compare.json").read_text())["rows"]] == ["ann", "cnn"]


def test_evaluate_reports_unseen_speakers(tmp_path: Path, cache: Path) -> None:
    train_tiny(tmp_path / "run", cache, "--arch", "ann")
    assert export_tiny(tmp_path, "--out", str(tmp_path / "b"), "--tensorrt", "off") == 0
    out = tmp_path / "eval"
    argv = ["evaluate", "--bundle", str(tmp_path / "b"), "--data", "synthetic:3", "--cache-dir", str(cache)]
    assert main([*argv, "--out", str(out)]) == 0
    result = json.loads((out / "evaluate.json").read_text())
    assert result["all"]["n"] == 12
    assert result["unseen_speakers"]["n"] + result["seen_in_training"]["clips"] == 12


def test_cli_unknown_module_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from trainer import cli

    monkeypatch.setitem(cli.COMMANDS, "gan", ("trainer.no_such_module", "x"))
    assert cli.main(["gan"]) == 1
    assert "not available in this build" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_ddp_two_processes(tmp_path: Path, cache: Path) -> None:
    """Two gloo processes on the CPU: one set of checkpoints and reports, written by rank 0."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [
        torchrun,
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "trainer.cli",
        "audio",
        *TINY,
        *FAST,
        "--arch",
        "ann",
        "--threads",
        "1",
        "--cache-dir",
        str(cache),
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and (tmp_path / "best.pt").is_file()


def test_tensorrt_on_without_a_gpu_fails_in_one_line(tmp_path: Path, cache: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the compile would run")
    train_tiny(tmp_path / "run", cache, "--arch", "ann")
    assert export_tiny(tmp_path, "--out", str(tmp_path / "b"), "--tensorrt", "on") == 1
    assert "TensorRT compile requested but" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensorrt_export_loads_in_the_engine(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("torch_tensorrt", reason="needs torch-tensorrt")
    from engine.inference.base import Component, example_inputs
    from engine.inference.tensorrt_backend import TensorRTRunner
    from engine.inference.torch_backend import TorchRunner

    train_tiny(tmp_path / "run", cache, "--arch", "cnn")
    assert export_tiny(tmp_path, "--out", str(tmp_path / "b"), "--tensorrt", "on") == 0
    bundle = load_bundle(tmp_path / "b")
    assert len(bundle.manifest.tensorrt) == 1
    x = example_inputs(Component.AUDIO, bundle.manifest)
    got = TensorRTRunner(bundle, Component.AUDIO)(*x)
    ref = TorchRunner(bundle, Component.AUDIO, "cuda")(*x)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=5e-2)


def test_export_fails_when_onnx_disagrees_with_torch(tmp_path: Path, cache: Path) -> None:
    from trainer.bundle.export import ExportError, export_onnx

    train_tiny(tmp_path / "run", cache, "--arch", "ann")
    model = load_audio_model(tmp_path / "run" / "best.pt")
    with pytest.raises(ExportError, match="differs from torch"):
        # a negative tolerance stands in for a broken graph: any difference at all fails the export
        export_onnx(model, [torch.zeros(1, 1, 128, 130)], tmp_path / "m.onnx", ["features"], model.output_names, -1.0)


def test_epoch_is_chosen_on_held_back_training_speakers(tmp_path: Path, cache: Path) -> None:
    """Default: the kept epoch is chosen on an inner split of the training speakers, so the reported
    validation speakers are seen exactly once; --select heldout is the seed protocol, labelled optimistic."""
    metrics = train_tiny(tmp_path / "inner", cache, "--arch", "ann", "--epochs", "2")
    sel, split = metrics["selection"], metrics["split"]
    assert sel["on"] == "inner" and sel["rule"].startswith("inner speaker-independent")
    assert set(sel["speakers"]) <= set(split["train_speakers"])
    assert set(sel["speakers"]).isdisjoint(split["val_speakers"])
    assert sel["clips"] > 0
    assert sel["best"]["epoch"] == metrics["best_epoch"]
    # the checkpoint keeps the outer split (what the alignment and `evaluate` hold out)
    ckpt = torch.load(tmp_path / "inner" / "best.pt", weights_only=True)
    assert ckpt["split"]["val_speakers"] == split["val_speakers"]

    seed = train_tiny(tmp_path / "heldout", cache, "--arch", "ann", "--epochs", "2", "--select", "heldout")
    assert seed["selection"]["on"] == "heldout" and "optimistic" in seed["selection"]["note"]
    assert "selection" not in seed["split"]
    # --refit: trained again on every training speaker up to the chosen epoch, with their statistics
    refit = train_tiny(tmp_path / "refit", cache, "--arch", "ann", "--epochs", "2", "--refit")
    assert refit["selection"]["refit"] is True and "trained again" in refit["selection"]["note"]
    outer_stats = torch.load(tmp_path / "heldout" / "best.pt", weights_only=True)["mel_mean"]
    assert torch.load(tmp_path / "refit" / "best.pt", weights_only=True)["mel_mean"] == outer_stats
    assert ckpt["mel_mean"] != outer_stats  # without --refit: the inner training speakers' statistics


@pytest.mark.slow
def test_own_recordings_quickstart_ends_in_a_bundle_the_engine_plays(tmp_path: Path, cache: Path) -> None:
    """docs/training.md §1: train, export (the default bundle's art half aligned to the new encoder), run."""
    import subprocess
    import sys

    from trainer.bundle.export import export_checkpoint

    train_tiny(tmp_path / "run", cache, "--arch", "cnn")
    out = tmp_path / "mine"
    export_checkpoint(tmp_path / "run" / "best.pt", out, license="test")
    attach_small_art_half(out, tmp_path / "run" / "best.pt", tmp_path / "art")  # `export`, small settings
    bundle = load_bundle(out)
    assert bundle.manifest.generator is not None and (out / "art_index.npz").is_file()
    frames = tmp_path / "frames"
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--bundle", str(out), "--headless", "--frames-dir", str(frames),
         "--source", "synth:happy", "--duration", "3", "--osc-in", "0", "--zmq-ctl", "tcp://127.0.0.1:*",
         "--zmq-pub", "tcp://127.0.0.1:*"],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "SDL_VIDEODRIVER": "dummy"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(frames.glob("*.png"))) > 5, proc.stderr[-2000:]
