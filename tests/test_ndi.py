"""NDI out: a headless engine with `--ndi NAME`; an NDI finder and receiver in this process get its frames.

NDI discovery is mDNS; the test points both ends at 127.0.0.1 with an NDI config file (NDI_CONFIG_DIR).
Skipped, saying why, where cyndilib (the `ndi` extra, with the NDI runtime in its wheel) does not load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.config import build_config
from engine.errors import ConfigError
from tests.test_engine import no_audio_env

cyndilib = pytest.importorskip("cyndilib", reason="cyndilib (the `ndi` extra) is not installed")
W, H = 160, 96


@pytest.fixture
def ndi_config(ndi_loopback: Path) -> Path:
    """The session's NDI config (tests/conftest.py): both ends on 127.0.0.1."""
    return ndi_loopback


def test_an_ndi_receiver_gets_the_engines_frames(full_bundle: Path, ndi_config: Path, tmp_path: Path) -> None:
    from cyndilib import Finder, Receiver, RecvBandwidth, RecvColorFormat, VideoFrameSync

    name = f"syn-test-{os.getpid()}"
    cfg = tmp_path / "v.toml"
    cfg.write_text(f"[render]\nwidth = {W}\nheight = {H}\nfps = 20\n")
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--config", str(cfg), "--bundle", str(full_bundle)]
    cmd += ["--source", "synth:happy", "--ndi", name, "--duration", "40", "--osc-in", "0"]
    cmd += ["--zmq-pub", "tcp://127.0.0.1:*", "--zmq-ctl", "tcp://127.0.0.1:*"]
    env = {**no_audio_env(), "NDI_CONFIG_DIR": str(ndi_config), "SDL_VIDEODRIVER": "dummy"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    finder = Finder()
    finder.open()
    receiver = None
    try:
        source, end = None, time.monotonic() + 30
        while source is None and time.monotonic() < end:
            assert proc.poll() is None, proc.stderr.read()
            finder.update_sources()
            source = next((finder.get_source(n) for n in finder.get_source_names() if name in n), None)
            time.sleep(0.1)
        assert source is not None, f"NDI source {name!r} not found: {finder.get_source_names()}"
        receiver = Receiver(color_format=RecvColorFormat.BGRX_BGRA, bandwidth=RecvBandwidth.highest)
        frame = VideoFrameSync()
        receiver.frame_sync.set_video_frame(frame)
        receiver.set_source(source)
        pixels, end = None, time.monotonic() + 20
        while time.monotonic() < end:
            if receiver.is_connected():
                receiver.frame_sync.capture_video()
                if frame.xres:
                    pixels = np.asarray(frame).reshape(frame.yres, frame.xres, 4)
                    if pixels.std() > 1.0:
                        break
            time.sleep(0.05)
        assert pixels is not None, "no NDI video frame arrived"
        assert pixels.shape == (H, W, 4) and pixels[..., :3].std() > 1.0  # a picture, not a blank buffer
    finally:
        if receiver is not None:
            receiver.disconnect()
        finder.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"frames as the NDI source {name!r}" in err and "Traceback" not in err


def test_ndi_config_is_validated() -> None:
    assert build_config({"ndi": {"enabled": True, "name": "Wall"}}).ndi.name == "Wall"
    with pytest.raises(ConfigError, match=r"ndi\.name"):
        build_config({"ndi": {"name": ""}})
    with pytest.raises(ConfigError, match=r"ndi\.max_fps"):
        build_config({"ndi": {"max_fps": 0}})
