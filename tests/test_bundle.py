"""The model bundle: loads when intact; every kind of damage is a one-line error naming the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.errors import BundleError
from engine.inference.base import Component
from engine.inference.select import open_runner
from engine.models.bundle import FORMAT_VERSION, load_bundle


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def _edit_manifest(path: Path, fn) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def test_intact_bundle_loads_with_required_keys(tiny_bundle: Path) -> None:
    b = load_bundle(tiny_bundle)
    m = b.manifest
    assert m.format == FORMAT_VERSION
    assert m.classes == ["angry", "happy", "sad", "neutral"]
    assert m.audio.n_mels == 128 and len(m.audio.mel_mean) == 128
    assert m.encoder.parameters > 0 and m.shared_dim == 128
    assert set(m.files) == {"audio_model.onnx", "audio_model.pt"}
    assert m.metrics["export_parity_max_abs"]["audio_model"] < 1e-4


def test_missing_file(bundle_copy: Path) -> None:
    (bundle_copy / "audio_model.onnx").unlink()
    with pytest.raises(BundleError, match=r"audio_model\.onnx.*missing"):
        load_bundle(bundle_copy)


def test_changed_byte(bundle_copy: Path) -> None:
    f = bundle_copy / "audio_model.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"audio_model\.pt.*sha256"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("key", ["classes", "audio", "encoder", "license", "files"])
def test_missing_key(bundle_copy: Path, key: str) -> None:
    _edit_manifest(bundle_copy, lambda m: m.pop(key))
    with pytest.raises(BundleError, match=f"'{key}' missing"):
        load_bundle(bundle_copy)


def test_missing_nested_key_names_its_path(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda m: m["audio"].pop("mel_std"))
    with pytest.raises(BundleError, match=r"'audio\.mel_std' missing"):
        load_bundle(bundle_copy)


def test_unknown_format_version(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda m: m.update(format=99))
    with pytest.raises(BundleError, match="'format' is 99"):
        load_bundle(bundle_copy)


def test_not_json_and_missing_dir(bundle_copy: Path, tmp_path: Path) -> None:
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_unlisted_reference(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda m: m["files"].pop("audio_model.pt"))
    with pytest.raises(BundleError, match=r"audio_model\.pt.*not listed"):
        load_bundle(bundle_copy)


def _damage(kind: str, path: Path) -> None:
    if kind == "missing-file":
        (path / "audio_model.onnx").unlink()
    elif kind == "changed-byte":
        f = path / "audio_model.onnx"
        data = bytearray(f.read_bytes())
        data[-5] ^= 0x01
        f.write_bytes(bytes(data))
    elif kind == "missing-key":
        _edit_manifest(path, lambda m: m.pop("encoder"))
    else:
        _edit_manifest(path, lambda m: m.update(format=2))


@pytest.mark.parametrize("kind", ["missing-file", "changed-byte", "missing-key", "format"])
def test_cli_damaged_bundle_exits_2_with_one_line(bundle_copy: Path, tmp_path: Path, kind: str) -> None:
    _damage(kind, bundle_copy)
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(22050, np.float32), 22050)
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "analyze", "--bundle", str(bundle_copy), str(wav)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("synesthesia: error:") and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_backends_agree(full_bundle: Path, backend: str) -> None:
    """Every backend that runs here matches the torch reference within 1e-4 (audio) and 1e-3 (images)."""
    bundle = load_bundle(full_bundle)
    for component, tol in ((Component.AUDIO, 1e-4), (Component.GENERATOR, 1e-3)):
        ref = open_runner(bundle, component, "torch", "cpu").runner
        other = open_runner(bundle, component, backend, "cpu").runner
        assert other.kind.value == backend
        rng = np.random.default_rng(3)
        if component is Component.AUDIO:
            inputs = (rng.standard_normal((4, 1, 128, 130), dtype=np.float32),)
        else:
            c = rng.standard_normal((4, 128), dtype=np.float32)
            inputs = (rng.standard_normal((4, 16), dtype=np.float32), c / np.linalg.norm(c, axis=1, keepdims=True))
        for a, b in zip(ref(*inputs), other(*inputs), strict=True):
            assert np.abs(a - b).max() < tol


def test_auto_backend_says_what_it_chose(tiny_bundle: Path) -> None:
    sel = open_runner(load_bundle(tiny_bundle), Component.AUDIO, "auto", "cpu")
    # on the CPU, auto stops at ONNX Runtime (eager torch is only its fallback)
    assert set(sel.timings_ms) == {"onnx/cpu"}
    assert sel.runner.describe().split(" ")[0] in sel.timings_ms
    assert "using" in sel.message


def test_unavailable_backend_falls_back_loudly(tiny_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    sel = open_runner(load_bundle(tiny_bundle), Component.AUDIO, "tensorrt", "cpu")
    assert sel.runner.kind.value in {"onnx", "torch"}
    assert "tensorrt/cpu" in sel.failures
    assert any("tensorrt" in r.message for r in caplog.records)
