"""The real-parts fixtures work: sound played into the null sink is what PortAudio records, Xvfb shows
what pygame draws, and the SDL dummy driver renders in-process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests import realparts

SR = 22050
RED = (255, 0, 0)


def tone_file(path: Path, freq: float, seconds: float = 3.0, sample_rate: int = 44100) -> Path:
    """A sine tone at half scale, written at a rate other than the capture rate so resampling happens."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * freq * t), sample_rate, subtype="PCM_16")
    return path


def assert_tone(recording: np.ndarray, freq: float) -> None:
    x = np.asarray(recording, dtype=np.float64).ravel()
    rms = float(np.sqrt(np.mean(x**2)))
    # A 0.5-amplitude sine has RMS 0.354; a silent or broken path records ~0.
    assert rms > 0.1, f"recorded RMS {rms:.4f}: nothing reached the capture device"
    peak = realparts.dominant_frequency(x, SR)
    assert abs(peak - freq) < 5, f"dominant frequency {peak:.1f} Hz, expected {freq} Hz"


class FrameCounter:
    """A capture callback that only counts frames, as the engine's callback only copies."""

    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, indata, frames, time_info, status) -> None:
        self.frames += frames

    def grows(self, within: float = 1.0) -> bool:
        start = self.frames
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if self.frames > start:
                return True
        return False


@pytest.mark.pulse
@pytest.mark.timeout(60)
def test_tone_played_into_null_sink_is_recorded_in_process(pulse, tmp_path):
    import sounddevice as sd

    names = {d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0}
    assert {"pulse", "default"} <= names, f"PortAudio input devices: {names}"
    with pulse.play(tone_file(tmp_path / "a440.wav", 440.0)):
        time.sleep(0.2)
        recording = sd.rec(SR, samplerate=SR, channels=1, dtype="float32", blocking=True)
    assert recording.shape == (SR, 1)
    assert_tone(recording, 440.0)


@pytest.mark.pulse
@pytest.mark.timeout(60)
def test_array_played_into_null_sink_is_recorded_by_a_subprocess(pulse, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, sounddevice as sd
        x = sd.rec({SR}, samplerate={SR}, channels=1, dtype="float32", device="pulse", blocking=True)
        np.save(sys.argv[1], x)
        """
    )
    t = np.arange(3 * 48000) / 48000
    out = tmp_path / "rec.npy"
    # The child gets only the server's env on top of a clean base, not whatever this process inherited.
    env = pulse.client_env({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    with pulse.play(0.5 * np.sin(2 * np.pi * 660.0 * t), sample_rate=48000):
        time.sleep(0.2)
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=30)
    assert_tone(np.load(out), 660.0)


@pytest.mark.pulse
@pytest.mark.timeout(60)
def test_silence_when_nothing_plays(pulse):
    import sounddevice as sd

    recording = sd.rec(SR // 2, samplerate=SR, channels=1, dtype="float32", blocking=True)
    assert float(np.abs(recording).max()) < 1e-4


@pytest.mark.pulse
@pytest.mark.timeout(60)
def test_suspended_sink_stalls_the_stream_and_resume_revives_it(pulse):
    import sounddevice as sd

    counter = FrameCounter()
    with sd.InputStream(samplerate=SR, channels=1, dtype="float32", callback=counter) as stream:
        assert counter.grows(), "no audio before suspending"
        pulse.suspend_sink()
        time.sleep(0.3)  # let blocks already in flight arrive
        assert not counter.grows(within=0.5), "frames kept coming from a suspended sink"
        assert stream.active, "a stall is not an error: PortAudio keeps the stream active"
        pulse.resume_sink()
        assert counter.grows(), "the same stream did not deliver again after resume"


@pytest.mark.pulse
@pytest.mark.timeout(60)
def test_unloaded_sink_ends_the_stream_and_reloaded_sink_can_be_reopened(pulse):
    import sounddevice as sd

    counter = FrameCounter()
    finished = []
    stream = sd.InputStream(
        samplerate=SR, channels=1, dtype="float32", callback=counter, finished_callback=lambda: finished.append(1)
    )
    with stream:
        assert counter.grows()
        pulse.unload_sink()
        deadline = time.monotonic() + 2.0
        while stream.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stream.active and not stream.stopped, "PortAudio should end the stream on its own"
        assert finished == [1]
        with pytest.raises(sd.PortAudioError):
            sd.InputStream(samplerate=SR, channels=1, dtype="float32")
    pulse.load_sink()
    counter = FrameCounter()
    with sd.InputStream(samplerate=SR, channels=1, dtype="float32", callback=counter):
        assert counter.grows(), "a new stream on the reloaded sink got no audio"


@pytest.mark.pulse
@pytest.mark.timeout(60)
def test_restarted_daemon_serves_new_streams_on_the_same_device(pulse, tmp_path):
    import sounddevice as sd

    pulse.stop_daemon()
    with pytest.raises(sd.PortAudioError):
        sd.InputStream(samplerate=SR, channels=1, dtype="float32", device="pulse")
    pulse.start_daemon()
    with pulse.play(tone_file(tmp_path / "a330.wav", 330.0)):
        time.sleep(0.2)
        recording = sd.rec(SR // 2, samplerate=SR, channels=1, dtype="float32", device="pulse", blocking=True)
    assert_tone(recording, 330.0)


PYGAME_RED_WINDOW = textwrap.dedent(
    """
    import sys, pygame
    pygame.display.init()
    screen = pygame.display.set_mode((64, 48))
    screen.fill((255, 0, 0))
    pygame.display.flip()
    print(pygame.display.get_driver(), flush=True)
    sys.stdin.readline()  # keep the window up until the test has looked at the screen
    pygame.display.quit()
    """
)


@pytest.mark.display
@pytest.mark.timeout(60)
def test_pygame_window_under_xvfb_shows_red(xvfb_server, xvfb_display):
    assert realparts.count_color(xvfb_server.screenshot(), RED) == 0, "screen is red before any window"
    env = {
        "PATH": "/usr/bin:/bin",
        "DISPLAY": xvfb_display,
        "SDL_VIDEODRIVER": "x11",  # fail rather than fall back to another driver
        "PYGAME_HIDE_SUPPORT_PROMPT": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", PYGAME_RED_WINDOW],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        driver = proc.stdout.readline().strip()
        assert driver == "x11", (
            f"pygame did not open an X11 window: {driver!r} {proc.stderr.read() if not driver else ''}"
        )
        red = 0
        deadline = time.monotonic() + 5.0
        while red != 64 * 48 and time.monotonic() < deadline:
            time.sleep(0.05)
            red = realparts.count_color(xvfb_server.screenshot(), RED)
        assert red == 64 * 48, f"{red} red pixels on the X screen, expected the 64x48 window"
        proc.communicate("\n", timeout=10)
        assert proc.returncode == 0
    finally:
        # SDL turns SIGTERM into a quit event, so closing stdin is the quick way to end the child.
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        realparts.stop_process(proc)


@pytest.mark.timeout(60)
def test_pygame_dummy_driver_renders_in_process(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    pygame.display.init()
    try:
        assert pygame.display.get_driver() == "dummy"
        screen = pygame.display.set_mode((32, 24))
        screen.fill(RED)
        pygame.draw.rect(screen, (0, 0, 255), pygame.Rect(4, 2, 10, 5))
        pygame.display.flip()
        pixels = pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)
    finally:
        pygame.display.quit()
    assert pixels.shape == (24, 32, 3)
    assert realparts.count_color(pixels, (0, 0, 255)) == 50
    assert realparts.count_color(pixels, RED) == 32 * 24 - 50
