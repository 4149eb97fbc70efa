"""Frames to other software: Spout/Syphon selection and their one-line refusal off Windows/macOS, the frame
format conversions, `[spout]`/`[syphon]` validation, the CLI flags and what `synesthesia check` says
(engine/render/share.py). The NDI receiver test is tests/test_ndi.py.

Spout and Syphon cannot load on Linux: their upload paths are not exercised here (docs/design.md §8)."""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.check import Verdict, check_frame_shares
from engine.cli import build_parser
from engine.config import build_config
from engine.errors import ConfigError
from engine.overrides import run_overrides
from engine.render.share import (
    FrameShareUnavailableError,
    ShareKind,
    SpoutTap,
    SyphonTap,
    build_share_taps,
    probe,
)
from engine.render.taps import opaque_buffer, rgb_into_bgra, rgb_into_rgba
from tests.test_engine import no_audio_env

not_windows = pytest.mark.skipif(sys.platform == "win32", reason="this checks the refusal off Windows")
not_macos = pytest.mark.skipif(sys.platform == "darwin", reason="this checks the refusal off macOS")


@not_windows
def test_spout_off_windows_is_one_clear_line() -> None:
    with pytest.raises(FrameShareUnavailableError) as err:
        SpoutTap("Wall")
    message = str(err.value)
    assert message.startswith("Spout needs Windows and `pip install SpoutGL`") and "\n" not in message


@not_macos
def test_syphon_off_macos_is_one_clear_line() -> None:
    with pytest.raises(FrameShareUnavailableError) as err:
        SyphonTap("Wall")
    message = str(err.value)
    assert message.startswith("Syphon needs macOS and `pip install syphon-python`") and "\n" not in message


def test_on_the_right_platform_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, system, module, extra in (
        (ShareKind.SPOUT, "win32", "SpoutGL", "synesthesia[spout]"),
        (ShareKind.SYPHON, "darwin", "syphon", "synesthesia[syphon]"),
    ):
        monkeypatch.setattr(sys, "platform", system)
        monkeypatch.setitem(sys.modules, module, None)  # the package is not importable (as on a bare install)
        with pytest.raises(FrameShareUnavailableError, match=rf"{module} is needed.*{re.escape(extra)}"):
            probe(kind)


def test_a_missing_ndi_package_is_one_line_and_the_other_outputs_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cyndilib", None)
    cfg = build_config({"ndi": {"enabled": True}, "spout": {"enabled": True}, "syphon": {"enabled": True}})
    taps, problems = build_share_taps(cfg)
    assert any(p.startswith("no NDI output: cyndilib is needed") and "synesthesia[ndi]" in p for p in problems)
    loadable = {"spout": sys.platform == "win32", "syphon": sys.platform == "darwin"}
    for name, here in loadable.items():
        if not here:
            assert any(p.startswith(f"no {name.capitalize()} output: ") for p in problems)
    assert len(taps) + len(problems) == 3 and all("\n" not in p for p in problems)


def test_conversions_fill_the_preallocated_buffer() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
    view = np.asfortranarray(rgb)  # any strides in, as the surface view gives
    buf = opaque_buffer(9, 14)
    assert buf.flags.c_contiguous and (buf[..., 3] == 255).all()
    out = rgb_into_rgba(view, buf)
    assert out is buf and (out[..., :3] == rgb).all() and (out[..., 3] == 255).all()
    out = rgb_into_bgra(view, buf)
    assert out is buf and (out[..., 0] == rgb[..., 2]).all() and (out[..., 2] == rgb[..., 0]).all()
    assert (out[..., 1] == rgb[..., 1]).all() and (out[..., 3] == 255).all()


def test_spout_and_syphon_config_is_validated() -> None:
    cfg = build_config({"spout": {"enabled": True, "name": "Wall"}, "syphon": {"max_fps": 30}})
    assert cfg.spout.enabled and cfg.spout.name == "Wall" and cfg.syphon.max_fps == 30
    assert cfg.syphon.name == "Synesthesia" and not cfg.syphon.enabled
    for section in ("spout", "syphon"):
        with pytest.raises(ConfigError, match=rf"{section}\.name"):
            build_config({section: {"name": ""}})
        with pytest.raises(ConfigError, match=rf"{section}\.max_fps"):
            build_config({section: {"max_fps": 0}})
        with pytest.raises(ConfigError, match=rf"{section}\.enabled"):
            build_config({section: {"enabled": "yes"}})
        with pytest.raises(ConfigError, match=rf"{section}\.sender"):
            build_config({section: {"sender": "x"}})


def test_run_and_check_flags_map_onto_the_sections() -> None:
    parser = build_parser()
    for command in ("run", "check"):
        args = parser.parse_args([command, "--spout", "Wall", "--syphon", "--ndi"])
        o = run_overrides(args)
        assert o["spout"] == {"enabled": True, "name": "Wall"} and o["syphon"] == {"enabled": True}
        assert o["ndi"] == {"enabled": True}
    assert "spout" not in run_overrides(parser.parse_args(["run"]))
    assert run_overrides(argparse.Namespace(syphon="Mac Wall"))["syphon"]["name"] == "Mac Wall"


def test_check_reports_what_loads() -> None:
    cfg = build_config(
        {"ndi": {"enabled": True, "name": "Wall"}, "spout": {"enabled": True}, "syphon": {"enabled": True}}
    )
    results = {r.name: r for r in check_frame_shares(cfg)}
    assert set(results) == {"ndi", "spout", "syphon"}
    if sys.platform not in ("win32", "darwin"):
        assert results["spout"].verdict is Verdict.WARN and "Spout needs Windows" in results["spout"].detail
        assert results["syphon"].verdict is Verdict.WARN and "Syphon needs macOS" in results["syphon"].detail
    try:
        import cyndilib  # noqa: F401
    except ImportError:
        assert results["ndi"].verdict is Verdict.WARN and "synesthesia[ndi]" in results["ndi"].detail
    else:
        assert results["ndi"].verdict is Verdict.OK and "runtime" in results["ndi"].detail
        assert "'Wall'" in results["ndi"].detail
    assert check_frame_shares(build_config({})) == []


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="Spout/Syphon may load here")
def test_a_show_asked_for_spout_and_syphon_says_so_once_and_goes_on(full_bundle: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    cfg = tmp_path / "v.toml"
    cfg.write_text('[render]\nwidth = 96\nheight = 64\nfps = 20\n[syphon]\nenabled = true\nname = "Mac Wall"\n')
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--config", str(cfg), "--bundle", str(full_bundle)]
    cmd += ["--source", "synth:happy", "--spout", "Wall", "--frames-dir", str(frames), "--duration", "3"]
    cmd += ["--osc-in", "0", "--zmq-pub", "tcp://127.0.0.1:*", "--zmq-ctl", "tcp://127.0.0.1:*"]
    proc = subprocess.run(
        cmd, env={**no_audio_env(), "SDL_VIDEODRIVER": "dummy"}, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    spout = [ln for ln in lines if "Spout" in ln]
    syphon = [ln for ln in lines if "Syphon" in ln]
    assert spout == [
        "synesthesia: no Spout output: Spout needs Windows and `pip install SpoutGL` (extra spout); "
        f"this machine runs {platform.system()}"
    ]
    assert len(syphon) == 1 and syphon[0].startswith("synesthesia: no Syphon output: Syphon needs macOS")
    assert "Traceback" not in proc.stderr
    assert len(list(frames.glob("frame_*.png"))) > 10  # the show went on and rendered


def test_bench_times_the_paced_row_with_the_frame_taps_on(full_bundle: Path) -> None:
    from engine.inference.base import Component
    from engine.inference.select import open_runner
    from engine.models.bundle import load_bundle
    from engine.render.bench import bench_render

    bundle = load_bundle(full_bundle)
    runner = open_runner(bundle, Component.GENERATOR, "onnx", "cpu").runner
    try:
        import cyndilib  # noqa: F401

        ndi = True
    except ImportError:
        ndi = False
    out = bench_render(bundle, runner, seconds=0.6, width=128, height=72, fps=30, ndi=ndi, zmq_frames=True)
    row = out["paced_inline_ndi_zmq" if ndi else "paced_inline_zmq"]
    assert row["fps"] > 0 and row["frame_ms_p99"] > 0
    assert row["zmq-frames"]["delivered"] > 0 and row["zmq-frames"]["errors"] == 0
    assert row["zmq_sender"]["sent"] > 0 and row["zmq_sender"]["errors"] == 0
    if ndi:
        assert row["ndi"]["delivered"] > 0 and row["ndi"]["errors"] == 0
