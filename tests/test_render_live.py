"""`synesthesia run` end to end, with real parts: the engine (`python -m engine run --source file:...`) in a
subprocess with a tiny bundle; its real window under Xvfb read back from the X server's framebuffer
(Xvfb -fbdir, tests/realparts.py), its headless frames read back from the ZeroMQ `frame` topic, and
control over real UDP OSC.

Colour direction checks: the test bundle's generator has random weights ("lively": scaled so frames have
contrast and follow z), so its own colours say nothing about emotion; what moves the colours in the art
corpus's directions (trainer.art.painter.EXPECTED_DIRECTIONS) is the render's colour grade from the
valence/arousal of the override. These tests check that the grade reaches the screen and the stream.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from tests.bundles import make_bundle
from trainer.art.painter import EXPECTED_DIRECTIONS, colour_stats

zmq = pytest.importorskip("zmq")
pytest.importorskip("pygame")

ROOT = Path(__file__).resolve().parents[1]
W, H = 320, 240
HAPPY_SAD = [d for d in EXPECTED_DIRECTIONS if {d.higher, d.lower} == {"happy", "sad"}]


@pytest.fixture(scope="session")
def render_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "render", generator=True, lively=True)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """A render engine subprocess and an OSC client socket (replies come back to it)."""

    def __init__(self, proc: subprocess.Popen, osc_port: int, startup: str) -> None:
        self.proc = proc
        self.startup = startup
        self.osc_port = osc_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def send(self, name: str, *args) -> None:
        msg = OscMessageBuilder(address=f"/syn/ctl/{name}")
        for a in args:
            msg.add_arg(a)
        self.sock.sendto(msg.build().dgram, ("127.0.0.1", self.osc_port))

    def sendraw(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.osc_port))

    def query(self, timeout: float = 10.0) -> dict[str, list]:
        self.sock.settimeout(0.0)
        try:  # drop stale replies
            while True:
                self.sock.recv(65536)
        except BlockingIOError:
            pass
        self.send("query")
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        return {m.message.address: list(m.message.params) for m in OscPacket(data).messages}

    def wait_frames(self, n: int, timeout: float = 20.0) -> int:
        """Wait until the engine has rendered `n` more frames; returns its frame count."""
        start = self.query()["/syn/status/frames"][0]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            frames = self.query()["/syn/status/frames"][0]
            if frames >= start + n:
                return frames
            time.sleep(0.05)
        raise AssertionError(f"engine rendered fewer than {n} frames in {timeout} s")

    def close(self) -> str:
        """Stop the engine; returns everything it printed."""
        self.sock.close()
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.startup + out


@pytest.fixture(scope="session")
def audio_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of sound with attacks: noise bursts over a chord, so loudness and onsets move the picture."""
    import soundfile as sf

    sr = 22050
    t = np.arange(6 * sr) / sr
    rng = np.random.default_rng(0)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    envelope = np.exp(-((t % 0.5) / 0.12))  # an attack every half second
    audio = 0.3 * chord * (0.4 + 0.6 * envelope) + 0.2 * envelope * rng.standard_normal(t.size)
    path = tmp_path_factory.mktemp("audio") / "room.wav"
    sf.write(path, audio.astype(np.float32), sr)
    return path


def launch(
    bundle: Path, audio: Path, tmp: Path, *args: str, env: dict[str, str] | None = None, extra_toml: str = ""
) -> Engine:
    """`python -m engine run` on free ports, with a small window/canvas at 20 fps (config file)."""
    port = free_port()
    config = tmp / "test.toml"
    config.write_text(
        f'[render]\nwidth = {W}\nheight = {H}\nfps = 20\nbackend = "onnx"\ndevice = "cpu"\n'
        '[analysis]\nbackend = "onnx"\ndevice = "cpu"\n' + extra_toml
    )
    cmd = [sys.executable, "-m", "engine", "run", "--config", str(config), "--bundle", str(bundle)]
    cmd += ["--source", f"file:{audio}", "--osc-in", str(port), "--osc", f"127.0.0.1:{free_port()}"]
    cmd += ["--zmq-ctl", f"tcp://127.0.0.1:{free_port(socket.SOCK_STREAM)}", "--duration", "120", *args]
    if "--zmq-pub" not in args:
        cmd += ["--zmq-pub", f"tcp://127.0.0.1:{free_port(socket.SOCK_STREAM)}"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines = []
    end = time.monotonic() + 90
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        # the window opens while the models warm up; the control servers start once the engine listens
        said = "".join(lines)
        if "synesthesia: rendering to" in said and "synesthesia: OSC control on" in said:
            return Engine(proc, port, said)
    proc.kill()
    raise AssertionError("engine did not start rendering:\n" + "".join(lines))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def check_control_behaviour(engine: Engine, grab) -> None:
    """Shared by the window and the headless test: `grab(after)` returns a frame (H x W x 3 uint8) rendered at
    or after frame number `after` (the engine's frame counter, from `wait_frames`)."""
    engine.send("smoothing", 0.2)  # the condition and the grade ease in ~1 s instead of ~5
    after = engine.wait_frames(10)
    # live: pixels change from frame to frame
    shots = []
    for _ in range(3):
        shots.append(grab(after))
        after = engine.wait_frames(4)
    assert shots[0].max() > 30, "the window shows an image"
    assert min(mean_abs_diff(a, b) for a, b in itertools.pairwise(shots)) > 0.2

    # freeze holds the image (the engine keeps rendering frames)
    engine.send("freeze", 1)
    held = grab(engine.wait_frames(3))
    assert mean_abs_diff(held, grab(engine.wait_frames(8))) == 0.0
    engine.send("freeze", 0)

    # blackout is black
    engine.send("blackout", 1)
    assert grab(engine.wait_frames(3)).max() <= 8  # JPEG may ring by a level or two
    engine.send("blackout", 0)

    # override happy vs sad: colour statistics in the art corpus's directions
    frames = {}
    for label in ("happy", "sad"):
        engine.send("override", label)
        after = engine.wait_frames(30)  # 1.5 s at 20 fps: > 7 time constants
        frames[label] = []
        for _ in range(3):
            frames[label].append(grab(after))
            after = engine.wait_frames(3)
    stats = {k: colour_stats(np.stack(v)) for k, v in frames.items()}
    for d in HAPPY_SAD:
        assert stats[d.higher][d.stat] > stats[d.lower][d.stat], (d, stats)
    state = engine.query()
    assert state["/syn/ctl/override"] == ["sad"]
    assert state["/syn/status/mode"] == ["live"]


# -- (a) the real window under Xvfb ----------------------------------------------------------------------


@pytest.mark.display
def test_window_under_xvfb_reads_back_pixels_and_obeys_osc(render_bundle, audio_fixture, xvfb_server, tmp_path) -> None:
    env = dict(os.environ, DISPLAY=xvfb_server.display, SDL_VIDEO_WINDOW_POS="0,0")
    env.pop("SDL_VIDEODRIVER", None)
    env.pop("WAYLAND_DISPLAY", None)
    engine = launch(render_bundle, audio_fixture, tmp_path, env=env)
    try:

        def grab(after: int) -> np.ndarray:
            # the window presents synchronously: once the counter says `after`, the screen shows it or newer
            return xvfb_server.screenshot()[:H, :W]

        check_control_behaviour(engine, grab)
        outside = xvfb_server.screenshot()[H + 20 :, W + 20 :]
        assert outside.max() == 0, "the window has the configured size"
    finally:
        out = engine.close()
    assert "window 320x240" in out, out


# -- (b) headless: frames on the ZeroMQ frame topic ------------------------------------------------------


def decode_jpeg(data: bytes) -> np.ndarray:
    import pygame

    surface = pygame.image.load(io.BytesIO(data), "frame.jpg")
    return pygame.surfarray.array3d(surface).swapaxes(0, 1)


def no_display_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}


@pytest.fixture
def headless(render_bundle, audio_fixture, tmp_path) -> Iterator[tuple[Engine, object]]:
    port = free_port(socket.SOCK_STREAM)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame")
    sub.setsockopt(zmq.RCVHWM, 4)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://127.0.0.1:{port}")
    engine = launch(
        render_bundle,
        audio_fixture,
        tmp_path,
        "--zmq-frames",
        "--zmq-pub",
        f"tcp://127.0.0.1:{port}",
        env=no_display_env(),
    )
    try:
        yield engine, sub
    finally:
        out = engine.close()
        sub.close()
        ctx.term()
        assert "no display" in out and "running headless" in out, out


def latest_frame(sub, after: int = 0, timeout: float = 10.0) -> tuple[dict, np.ndarray]:
    """The newest frame on the topic whose frame number is at least `after` (older ones are skipped)."""
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    end = time.monotonic() + timeout
    while True:
        if not poller.poll(max(1, int((end - time.monotonic()) * 1000))):
            raise AssertionError(f"no frame >= {after} published within {timeout} s")
        topic, header, image = sub.recv_multipart()
        assert topic == b"frame"
        head = json.loads(header)
        if head["frame"] < after:
            continue
        while poller.poll(0):  # anything newer already queued
            topic, header, image = sub.recv_multipart()
            head = json.loads(header)
        return head, decode_jpeg(image)


def test_headless_frames_on_zmq_change_and_obey_osc(headless) -> None:
    engine, sub = headless
    header, first = latest_frame(sub)
    assert header["v"] == 1 and header["format"] == "jpeg"
    assert (header["width"], header["height"]) == (W, H) == (first.shape[1], first.shape[0])
    assert isinstance(header["seq"], int) and header["t"] > 0
    seqs = [header["seq"], latest_frame(sub)[0]["seq"]]
    assert seqs[1] > seqs[0]
    check_control_behaviour(engine, lambda after: latest_frame(sub, after)[1])


# -- (c) a TouchDesigner-like operator: one float per address, 60 msg/s per channel, plus garbage -------


def test_touchdesigner_like_stream_with_garbage_then_query(render_bundle, audio_fixture, tmp_path) -> None:
    # headless, frames published (to nobody): the render loop runs and counts frames
    engine = launch(render_bundle, audio_fixture, tmp_path, "--headless", "--zmq-frames", env=no_display_env())
    try:
        before = engine.query()["/syn/status/frames"][0]
        garbage = [
            b"\x00\x01garbage",
            OscMessageBuilder(address="/syn/ctl/intensity").build().dgram,  # no value
            b"/syn/ctl/speed\x00\x00,f\x00\x00\x3f",  # truncated float
            b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00\x10\x00",  # element larger than the packet
        ]
        wrong_type = ("intensity", "high")
        unknown = ("warpdrive", 1.0)
        n_ticks = 180  # 3 s at 60 Hz
        start = time.monotonic()
        for i in range(n_ticks):
            t = i / 60.0
            # an OSC Out CHOP: one float per channel per cook, every value a float
            engine.send("intensity", float(0.5 + 0.4 * np.sin(t)))
            engine.send("speed", float(1.0 + 0.5 * np.cos(t)))
            engine.send("blackout", 0.0)
            engine.send("hud", 1.0 if i % 120 < 60 else 0.0)
            if i % 10 == 0:
                engine.sendraw(garbage[(i // 10) % len(garbage)])
                engine.send(*wrong_type)
                engine.send(*unknown)
            delay = start + (i + 1) / 60.0 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        last = n_ticks - 1
        state = engine.query()
        assert state["/syn/ctl/intensity"][0] == pytest.approx(0.5 + 0.4 * np.sin(last / 60.0), abs=1e-5)
        assert state["/syn/ctl/speed"][0] == pytest.approx(1.0 + 0.5 * np.cos(last / 60.0), abs=1e-5)
        assert state["/syn/ctl/blackout"] == [0]
        assert state["/syn/ctl/hud"] == [1 if last % 120 < 60 else 0]
        bad = n_ticks // 10
        assert state["/syn/control/malformed"][0] >= bad * 3 // 4  # 3 of 4 garbage kinds are framing errors
        assert state["/syn/control/rejected"][0] >= bad  # wrong type (+ the argument-less intensity)
        assert state["/syn/control/unknown"] == [bad]
        assert state["/syn/control/applied"][0] >= 0.99 * n_ticks * 4  # UDP on localhost: next to no loss
        frames = state["/syn/status/frames"][0]
        assert frames > before + 30, "rendering went on throughout"
        assert engine.wait_frames(5) > frames, "and still goes on"
    finally:
        engine.close()


@pytest.mark.display
def test_kiosk_fills_the_screen_hides_the_hud_and_logs_to_a_file(
    render_bundle, audio_fixture, xvfb_server, tmp_path
) -> None:
    env = dict(os.environ, DISPLAY=xvfb_server.display)
    env.pop("SDL_VIDEODRIVER", None)
    env.pop("WAYLAND_DISPLAY", None)
    log_file = tmp_path / "log" / "kiosk.log"
    extra = f'[kiosk]\nlog_file = "{log_file}"\nlog_max_mb = 1\nlog_backups = 2\n'
    # the config asks for a HUD; the kiosk turns it off
    engine = launch(render_bundle, audio_fixture, tmp_path, "--kiosk", "--hud", env=env, extra_toml=extra)
    try:
        engine.wait_frames(10)
        screen = xvfb_server.screenshot()
        h, w = screen.shape[:2]
        # fullscreen: every quarter of the screen shows the picture
        for quarter in (screen[: h // 2, : w // 2], screen[h // 2 :, w // 2 :]):
            assert quarter.mean() > 10
        state = engine.query()
        assert state["/syn/ctl/hud"] == [0]
        assert state["/syn/status/sink"] == ["window"]
    finally:
        out = engine.close()
    assert "fullscreen" in out
    text = log_file.read_text()
    assert "kiosk log" in text
    assert "(fullscreen)" in text  # the window line went to the log file too


def test_zmq_frames_arrive_while_a_window_is_open(render_bundle, audio_fixture, xvfb_server, tmp_path) -> None:
    env = dict(os.environ, DISPLAY=xvfb_server.display, SDL_VIDEO_WINDOW_POS="0,0")
    env.pop("SDL_VIDEODRIVER", None)
    env.pop("WAYLAND_DISPLAY", None)
    port = free_port(socket.SOCK_STREAM)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://127.0.0.1:{port}")
    engine = launch(
        render_bundle, audio_fixture, tmp_path, "--zmq-frames", "--zmq-pub", f"tcp://127.0.0.1:{port}", env=env
    )
    try:
        assert "rendering to window" in engine.startup and "on the ZeroMQ frame topic" in engine.startup
        header, first = latest_frame(sub)
        assert header["format"] == "jpeg" and (header["width"], header["height"]) == (W, H)
        assert first.shape == (H, W, 3) and first.std() > 1.0  # a decoded picture, not an empty buffer
        later, second = latest_frame(sub, header["frame"] + 5)
        assert later["frame"] > header["frame"]
        # the frame on the wire is what the window shows (JPEG-close to a screenshot taken around then)
        shot = xvfb_server.screenshot()[:H, :W]
        assert mean_abs_diff(shot, second) < 40
    finally:
        out = engine.close()
        sub.close()
        ctx.term()
    assert "Traceback" not in out
