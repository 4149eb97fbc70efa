"""The engine in-process and through `synesthesia run`: real sockets, bad input, silence, dead peers, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq

from engine.analysis.live import AnalysisLoop
from engine.analysis.predict import WindowPredictor
from engine.analysis.state import EmotionTracker, StateKind
from engine.app import Engine, run_headless
from engine.audio.ringbuffer import RingBuffer
from engine.audio.source import Source
from engine.audio.windows import SlidingWindows
from engine.cli import main
from engine.config import build_config
from engine.inference.base import Component
from engine.inference.select import open_runner
from engine.models.bundle import load_bundle
from tests.netparts import OscReceiver, free_udp_port
from tests.test_frontend import speech_like

SR = 22050


@pytest.fixture
def osc_rx() -> Iterator[OscReceiver]:
    rx = OscReceiver()
    yield rx
    rx.close()


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    sf.write(path, np.concatenate([speech_like(i) for i in range(2)]), SR)
    return path


def config(source: str, osc: list[str], **sections):
    base = {
        "audio": {"source": source, "realtime": False, "loop": True},
        "analysis": {"backend": "onnx", "device": "cpu"},
        "osc": {"targets": osc, "in_port": None, "audio_rate_hz": 20.0},
        "zmq": {"pub": "tcp://127.0.0.1:*", "ctl": None},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return build_config(overrides=base)


@contextmanager
def running(bundle: Path, cfg) -> Iterator[Engine]:
    """An Engine with its headless main loop on a helper thread (as `synesthesia run --headless` runs it)."""
    engine = Engine(cfg, load_bundle(bundle))
    stop = threading.Event()
    engine.start()
    main = threading.Thread(target=run_headless, args=(engine, None, stop), daemon=True)
    main.start()
    try:
        yield engine
    finally:
        stop.set()
        main.join(10)
        engine.stop()


def wait_until(pred, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def subscribe(endpoint: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    return ctx, sub


def collect(sub: zmq.Socket, seconds: float) -> list[tuple[str, dict]]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        if sub.poll(50):
            topic, body = sub.recv_multipart()[:2]
            out.append((topic.decode(), json.loads(body)))
    return out


def test_engine_publishes_every_design_address_over_real_sockets(
    full_bundle: Path, speech_wav: Path, osc_rx: OscReceiver
) -> None:
    # Real time: a free-running file analyses hundreds of windows a second, and the OSC flood (thousands of
    # datagrams a second) overruns the Python receiver's socket buffer, so the kernel drops heartbeats.
    cfg = config(f"file:{speech_wav}", [f"127.0.0.1:{osc_rx.port}"], audio={"realtime": True})
    with running(full_bundle, cfg) as engine:
        ctx, sub = subscribe(engine.sender.zmq.endpoint)
        try:
            osc_rx.wait_for("/syn/nearest", 1, timeout=30)  # the first window (3 s of audio) has been analysed
            osc_rx.wait_for("/syn/heartbeat", 2, timeout=30)
            msgs = collect(sub, 1.5)
        finally:
            sub.close()
            ctx.term()
        status = engine.status()
    got = set(osc_rx.addresses())
    expected = {f"/syn/emotion/{c}" for c in ("angry", "happy", "sad", "neutral")} | {
        "/syn/emotion/label", "/syn/emotion/confidence", "/syn/valence", "/syn/arousal", "/syn/embedding",
        "/syn/state", "/syn/nearest", "/syn/audio/rms", "/syn/audio/onset", "/syn/audio/centroid",
        "/syn/audio/low", "/syn/audio/mid", "/syn/audio/high", "/syn/audio/flux", "/syn/audio/beat",
        "/syn/audio/tempo", "/syn/heartbeat", "/syn/status/fps", "/syn/status/latency_ms", "/syn/status/source",
    }  # fmt: skip
    assert expected <= got
    beats = [args[0] for args in osc_rx.wait_for("/syn/heartbeat", 2)]
    assert beats == sorted(beats) and all(isinstance(b, int) for b in beats)
    assert len(osc_rx.wait_for("/syn/nearest")[0]) == 3
    topics = {t for t, _ in msgs}
    assert {"emotion", "audio", "status"} <= topics
    emotions = [m for t, m in msgs if t == "emotion"]
    assert all(m["v"] == 1 and m["label"] in m["probs"] and -1 <= m["valence"] <= 1 for m in emotions)
    seqs = [m["seq"] for m in emotions]
    assert seqs == sorted(seqs)
    st = [m for t, m in msgs if t == "status"][-1]
    for key in ("backend", "timings_ms", "source", "sender", "analysis", "uptime_s", "heartbeat", "notices"):
        assert key in st
    assert {"capture_to_window", "frontend", "encoder", "tracker", "send"} <= set(st["timings_ms"])
    assert st["analysis"]["errors"] == {} and st["analysis"]["bad_input"]["nonfinite_windows"] == 0
    assert status["source"]["state"] in ("running", "stopped") and "onnx" in status["backend"]


def test_beat_and_tempo_of_a_click_track_arrive_over_osc_and_zeromq(
    tiny_bundle: Path, tmp_path: Path, osc_rx: OscReceiver
) -> None:
    from tests.test_audio_features import click_track

    wav = tmp_path / "clicks.wav"
    sf.write(wav, click_track(120.0, 8.0)[0], SR)
    cfg = config(f"file:{wav}", [f"127.0.0.1:{osc_rx.port}"], audio={"realtime": True})
    with running(tiny_bundle, cfg) as engine:
        ctx, sub = subscribe(engine.sender.zmq.endpoint)
        try:
            wait_until(lambda: any(a[0] > 0 for a in osc_rx.wait_for("/syn/audio/tempo", 1)), what="a tempo")
            msgs = collect(sub, 1.0)
        finally:
            sub.close()
            ctx.term()
    tempos = [a[0] for a in osc_rx.wait_for("/syn/audio/tempo") if a[0] > 0]
    assert abs(tempos[-1] - 120.0) <= 2.0
    beats = [a[0] for a in osc_rx.wait_for("/syn/audio/beat")]
    assert max(beats) > 0.5 and min(beats) == 0.0  # pulses, not a constant
    for name in ("low", "mid", "high", "flux"):
        values = [a[0] for a in osc_rx.wait_for(f"/syn/audio/{name}")]
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)
    audio = [m for t, m in msgs if t == "audio"]
    assert audio and {"rms", "onset", "centroid", "low", "mid", "high", "flux", "beat", "tempo"} <= set(audio[-1])


def test_dead_osc_targets_do_not_slow_or_stop_analysis(tiny_bundle: Path, speech_wav: Path) -> None:
    targets = [f"127.0.0.1:{free_udp_port()}", "no-such-host.invalid:9000"]
    cfg = config(f"file:{speech_wav}", targets)
    with running(tiny_bundle, cfg) as engine:
        wait_until(lambda: engine.analysis.windows_done >= 20, what="20 windows")
        status = engine.status()
    assert status["analysis"]["errors"] == {}
    targets_stats = status["sender"]["osc"]["targets"]
    assert targets_stats["no-such-host.invalid:9000"]["errors"] >= 1
    assert status["sender"]["errors"] == 0


def test_a_control_change_is_sent_at_once_not_at_the_next_hop(
    tiny_bundle: Path, speech_wav: Path, osc_rx: OscReceiver
) -> None:
    cfg = config(f"file:{speech_wav}", [f"127.0.0.1:{osc_rx.port}"], audio={"realtime": True}, analysis={})
    with running(tiny_bundle, cfg) as engine:
        wait_until(lambda: engine.latest() is not None, what="a first window")
        engine.controls.apply("override", "angry")
        states = osc_rx.wait_for("/syn/state", timeout=30)
        wait_until(lambda: ("override",) in osc_rx.wait_for("/syn/state", len(states)), what="override state")
        wait_until(lambda: engine.latest().state is StateKind.OVERRIDE, what="override at the next hop")
        assert engine.latest().label == "angry"


def analysis_over(bundle: Path, audio: np.ndarray, hop_s: float = 0.5) -> tuple[AnalysisLoop, list]:
    """Run the analysis loop (no threads) over a whole signal; returns the loop and every state."""
    b = load_bundle(bundle)
    ring = RingBuffer(10 * SR, SR)
    hop = round(hop_s * SR)
    windows = SlidingWindows(ring, 3 * SR, hop)
    runner = open_runner(b, Component.AUDIO, "onnx", "cpu").runner
    loop = AnalysisLoop(windows, WindowPredictor(b, runner), EmotionTracker(b.classes))
    states = []
    for pos in range(0, audio.size, hop):  # one hop of audio arrives, the loop takes its window
        ring.write(audio[pos : pos + hop])
        if (s := loop.step(timeout=0.0)) is not None:
            states.append(s)
    return loop, states


def test_nan_inf_and_clipped_blocks_are_counted_and_the_state_stays_finite(tiny_bundle: Path) -> None:
    x = np.concatenate([speech_like(0), speech_like(1)])
    x[SR : SR + 512] = np.nan
    x[2 * SR] = np.inf
    x[4 * SR : 4 * SR + 4000] = 4.0  # beyond full scale, as a broken driver can deliver
    loop, states = analysis_over(tiny_bundle, x)
    stats = loop.stats()
    assert stats["errors"] == {} and len(states) == 7
    assert stats["bad_input"]["nonfinite_windows"] >= 1 and stats["bad_input"]["clipped_windows"] >= 1
    for s in states:
        assert np.isfinite(s.probs).all() and np.isfinite([s.valence, s.arousal]).all()


def test_long_silence_is_silent_and_keeps_the_label(tiny_bundle: Path) -> None:
    x = np.concatenate([speech_like(0), np.zeros(7 * SR, np.float32)])
    _, states = analysis_over(tiny_bundle, x, hop_s=1.0)
    spoken = [s for s in states if not s.silent]
    assert spoken and states[-1].state is StateKind.SILENT
    assert {s.label for s in states if s.silent} == {spoken[-1].label}
    assert states[-1].valence == spoken[-1].valence


# -- through the command line ---------------------------------------------------------------------------


def no_audio_env() -> dict[str, str]:
    """An environment in which PortAudio finds no input (no PulseAudio server to reach)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env["PULSE_SERVER"] = "unix:/nonexistent/pulse"
    return env


def run_cmd(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_missing_bundle_says_so_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--headless", "--bundle", str(tmp_path / "nope"), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1


def test_no_microphone_falls_back_to_the_demo_source_and_sigterm_exits_0(
    tiny_bundle: Path, osc_rx: OscReceiver
) -> None:
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--source", "mic", "--backend", "onnx"]
    cmd += ["--bundle", str(tiny_bundle), "--osc", f"127.0.0.1:{osc_rx.port}", "--zmq-pub", "tcp://127.0.0.1:*"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=no_audio_env())
    try:
        osc_rx.wait_for("/syn/emotion/label", timeout=60)  # the demo source is being analysed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert "no microphone" in err and "synth:tour:music" in err and "Traceback" not in err
    assert len(osc_rx.wait_for("/syn/heartbeat")) >= 1


def test_unknown_synth_class_is_a_one_line_error(tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--headless", "--source", "synth:gloomy", "--bundle", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err
    assert "gloomy" in err and "Traceback" not in err


def test_devices_command_exits_0_and_says_why_there_is_no_input() -> None:
    proc = run_cmd("devices", env=no_audio_env())
    assert proc.returncode == 0 and "no audio input" in proc.stdout


def test_a_failing_encoder_is_counted_and_falls_back_loudly(tiny_bundle: Path) -> None:
    b = load_bundle(tiny_bundle)
    good = open_runner(b, Component.AUDIO, "onnx", "cpu").runner

    class Broken(type(good)):
        def __init__(self) -> None:  # a runner whose device went away
            self.kind, self.device, self.component = good.kind, "cpu", Component.AUDIO

        def __call__(self, *inputs):
            raise RuntimeError("device lost")

        def describe(self) -> str:
            return "broken/cpu"

    ring = RingBuffer(10 * SR, SR)
    windows = SlidingWindows(ring, 3 * SR, SR // 2)
    asked = []
    loop = AnalysisLoop(windows, WindowPredictor(b, Broken()), EmotionTracker(b.classes),
                        fallback=lambda old: asked.append(old.describe()) or good)  # fmt: skip
    x = speech_like(0)
    states = []
    for k in range(6):
        ring.write(x if k == 0 else x[: SR // 2])
        states.append(loop.step(timeout=0.0))
    stats = loop.stats()
    assert states[:3] == [None, None, None] and all(s is not None for s in states[3:])
    assert asked == ["broken/cpu"] and stats["errors"] == {"encoder": 3}
    assert "fell back" in stats["notices"][0] and stats["encoder"] == good.describe()


class FailsOnce:
    """The engine's own runner, except that its first call after `arm()` dies with a non-recoverable error
    (a driver that lost the device node: OSError, not a per-window RuntimeError the fallback handles)."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.armed = False
        self.calls = 0

    def arm(self) -> None:
        self.armed = True

    def __call__(self, *inputs):
        self.calls += 1
        if self.armed:
            self.armed = False
            raise OSError("the inference device went away")
        return self.runner(*inputs)

    def __getattr__(self, name: str):
        return getattr(self.runner, name)


def test_the_kiosk_restarts_a_failed_analysis_stage(tiny_bundle: Path, speech_wav: Path) -> None:
    cfg = config(f"file:{speech_wav}", [], audio={"realtime": True}, kiosk={"enabled": True, "restart_limit": 5})
    with running(tiny_bundle, cfg) as engine:
        wait_until(lambda: engine.analysis.windows_done >= 2, what="analysis")
        thread_before = [t for t in threading.enumerate() if t.name == "analysis"]
        runner = FailsOnce(engine.analysis.predictor.runner)
        engine.analysis.predictor.runner = runner
        runner.arm()
        wait_until(lambda: engine.supervisor.failures == 1, what="the failure seen by the supervisor")
        wait_until(lambda: engine.supervisor.restarts == 1, what="the restart")
        wait_until(lambda: engine.analysis.windows_done >= 2, what="windows analysed again")
        status = engine.status()
        assert status["analysis"]["restarts"] == 1 and status["analysis"]["alive"]
        assert "OSError" in engine.supervisor.last_error
        (after,) = [t for t in threading.enumerate() if t.name == "analysis"]
        assert thread_before and after is not thread_before[0]  # a new thread, and only one


def test_without_the_kiosk_a_failed_analysis_stage_ends_the_run(tiny_bundle: Path, speech_wav: Path) -> None:
    cfg = config(f"file:{speech_wav}", [], audio={"realtime": True})
    engine = Engine(cfg, load_bundle(tiny_bundle))
    engine.start()
    try:
        wait_until(lambda: engine.analysis.windows_done >= 1, what="analysis")
        runner = FailsOnce(engine.analysis.predictor.runner)
        engine.analysis.predictor.runner = runner
        runner.arm()
        wait_until(lambda: not engine.analysis.alive, what="the analysis thread to end")
        with pytest.raises(OSError, match="went away"):  # loudly, in the main thread
            run_headless(engine, 10.0, threading.Event())
    finally:
        engine.stop()


class CrashingSource(Source):
    """A source whose thread dies at once: the base class shows it as `lost` (a crashed capture)."""

    kind = "crash"

    def _run(self, stop: threading.Event) -> None:
        raise OSError("capture thread died")


def test_a_source_lost_before_the_first_window_says_lost_and_sends_zero_audio(
    tiny_bundle: Path, osc_rx: OscReceiver
) -> None:
    cfg = config("synth:happy", [f"127.0.0.1:{osc_rx.port}"])
    engine = Engine(cfg, load_bundle(tiny_bundle), source=CrashingSource(RingBuffer(10 * SR, SR), "crash"))
    stop = threading.Event()
    engine.start()
    main = threading.Thread(target=run_headless, args=(engine, None, stop), daemon=True)
    ctx, sub = subscribe(engine.sender.zmq.endpoint)
    try:
        main.start()
        osc_rx.wait_for("/syn/state", 3, timeout=30)  # every hop while lost, with no window to carry it
        msgs = collect(sub, 1.5)
        engine.controls.apply("freeze", 1)  # the operator's hold wins: its values come from the operator
        wait_until(lambda: ("frozen",) in osc_rx.wait_for("/syn/state"), what="frozen over lost")
    finally:
        stop.set()
        main.join(10)
        engine.stop()
        sub.close()
        ctx.term()
    assert set(osc_rx.wait_for("/syn/state")[:3]) == {("lost",)}
    assert ("lost",) in osc_rx.wait_for("/syn/status/source")
    assert set(osc_rx.wait_for("/syn/audio/rms")) == {(0.0,)}
    assert {m["state"] for t, m in msgs if t == "emotion"} == {"lost"}
    status = [m for t, m in msgs if t == "status"][-1]
    assert status["state"] == "lost" and "capture thread died" in status["source"]["last_error"]
