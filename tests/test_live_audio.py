"""Live capture through a real PulseAudio null sink: the end-to-end acceptance run and a device that goes away.

PortAudio records the sink's monitor as its default input, so whatever the test plays is what the engine
hears, through the same resampling and callback path as a microphone.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.app import Engine, run_headless
from engine.audio.frontend import FrontEndConfig
from engine.audio.synth import synthesize
from engine.config import build_config
from engine.models.bundle import load_bundle
from engine.models.checkpoint import audio_model_from_config
from tests.bundles import CLASSES
from tests.netparts import OscReceiver, free_tcp_port, zmq_subscriber
from trainer.bundle.export import write_bundle

pytestmark = pytest.mark.pulse
SR = 22050


@pytest.fixture(scope="module")
def decisive_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights with a sharpened classifier: the plain test bundle's probabilities are all within 0.002
    of uniform, so which label wins would be noise; here one label wins each window by a clear margin."""
    torch.manual_seed(0)
    model = audio_model_from_config({"arch": "cnn", "width": 8, "embedding_dim": 32}, 128).eval()
    with torch.no_grad():
        model.encoder.classifier.weight *= 200.0
    path = tmp_path_factory.mktemp("bundle") / "decisive"
    write_bundle(path, name="decisive", audio_model=model, classes=CLASSES, frontend=FrontEndConfig(),
                 mel_mean=np.full(128, -40.0), mel_std=np.full(128, 20.0), license="test only")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def angry_music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "angry_music.wav"
    sf.write(path, synthesize("angry", kind="music", duration_s=12.0, seed=1), SR)
    return path


def test_end_to_end_mic_to_osc_and_zmq(pulse, decisive_bundle: Path, angry_music: Path) -> None:
    analyze = subprocess.Popen(
        [sys.executable, "-m", "engine", "analyze", str(angry_music), "--json", "--bundle", str(decisive_bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    osc = OscReceiver()
    zmq_port = free_tcp_port()
    ctx, sub = zmq_subscriber(f"tcp://127.0.0.1:{zmq_port}")
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--source", "mic", "--duration", "8"]
    cmd += ["--bundle", str(decisive_bundle), "--osc", f"127.0.0.1:{osc.port}", "--zmq-pub", f"tcp://*:{zmq_port}"]
    engine = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pulse.client_env())
    zmsgs: list[tuple[str, dict]] = []
    try:
        osc.wait_for("/syn/heartbeat", timeout=90)  # listening: now the room starts to sound
        playback = pulse.play(angry_music)
        while engine.poll() is None:
            if sub.poll(100):
                topic, body = sub.recv_multipart()[:2]
                zmsgs.append((topic.decode(), json.loads(body)))
        _, err = engine.communicate(timeout=30)
        playback.stop()
        a_out, a_err = analyze.communicate(timeout=120)
    finally:
        for p in (engine, analyze):
            if p.poll() is None:
                p.kill()
                p.communicate()
        sub.close()
        ctx.term()
        osc.close()
    assert engine.returncode == 0, err
    assert analyze.returncode == 0, a_err
    offline = [json.loads(line) for line in a_out.splitlines()]
    windows, summary = offline[:-1], offline[-1]
    assert {w["label"] for w in windows} == {summary["label"]}, "precondition: the fixture is unambiguous offline"

    labels = [args for args in osc.wait_for("/syn/emotion/label", 1)]
    emotions = [m for t, m in zmsgs if t == "emotion" and "hop" in m]
    assert len(labels) >= 6 and len(emotions) >= 6  # a 3 s window, then one every 0.5 s
    stamps = np.array([m["t"] for m in emotions])
    assert 0.3 < float(np.median(np.diff(stamps))) < 0.8  # at the hop rate
    heard = [m for m in emotions if not m["silent"]]
    assert heard, "the engine never heard the playback"
    assert heard[-1]["label"] == summary["label"]
    assert labels[-1] == (summary["label"],)
    for m in emotions:
        assert -1.0 <= m["valence"] <= 1.0 and -1.0 <= m["arousal"] <= 1.0
        assert abs(sum(m["probs"].values()) - 1.0) < 1e-3
    beats = [a[0] for a in osc.wait_for("/syn/heartbeat", 5)]
    assert beats == sorted(beats)
    status = [m for t, m in zmsgs if t == "status"][-1]
    assert status["source"]["kind"] == "mic" and status["source"]["state"] in ("running", "stopped")
    assert status["source"]["device_rate"] == 44100 and status["analysis"]["errors"] == {}


def test_device_that_disappears_is_reported_and_resumes(pulse, decisive_bundle: Path, angry_music: Path) -> None:
    osc = OscReceiver()
    cfg = build_config(
        overrides={
            "audio": {"source": "mic", "reconnect_s": 0.5, "stall_s": 1.0},
            "analysis": {"backend": "onnx", "device": "cpu"},
            "osc": {"targets": [f"127.0.0.1:{osc.port}"], "in_port": None},
            "zmq": {"enabled": False, "ctl": None},
        }
    )
    engine = Engine(cfg, load_bundle(decisive_bundle))
    stop = threading.Event()
    main = threading.Thread(target=run_headless, args=(engine, None, stop), daemon=True)

    def wait(pred, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {engine.status()['source']}"
            time.sleep(0.05)

    try:
        engine.start()
        main.start()
        pulse.play(angry_music)
        wait(lambda: engine.analysis.windows_done >= 2, "windows before the outage")
        pulse.unload_sink()  # the device goes away
        wait(lambda: engine.source.state.value == "lost", "the loss to be noticed")
        beats = len(osc.wait_for("/syn/heartbeat"))
        windows = engine.analysis.windows_done
        time.sleep(2.5)
        assert len(osc.wait_for("/syn/heartbeat", beats + 2)) >= beats + 2  # still publishing status
        assert engine.status()["source"]["state"] == "lost" and engine.analysis.alive
        pulse.load_sink()  # it comes back
        pulse.play(angry_music)
        wait(lambda: engine.source.state.value == "running", "the device to be reopened")
        wait(lambda: engine.analysis.windows_done >= windows + 2, "windows after the outage")
        status = engine.status()
        assert status["source"]["outages"] >= 1 and status["analysis"]["errors"] == {}
    finally:
        stop.set()
        main.join(10)
        engine.stop()
        osc.close()


def test_a_lost_device_says_lost_over_osc_sends_zero_audio_and_comes_back(
    pulse, decisive_bundle: Path, angry_music: Path, tmp_path: Path
) -> None:
    """Unplug (unload the null sink) under the real CLI: `/syn/state` and `/syn/status/source` say `lost`,
    `/syn/audio/rms` is zero, stderr stays quiet; replug: listening again, `last_error` cleared."""
    config = tmp_path / "venue.toml"
    config.write_text("[audio]\nreconnect_s = 0.5\nstall_s = 1.0\n")
    osc = OscReceiver()
    zmq_port = free_tcp_port()
    ctx, sub = zmq_subscriber(f"tcp://127.0.0.1:{zmq_port}", b"status")
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--source", "mic", "--backend", "onnx"]
    cmd += ["--config", str(config), "--bundle", str(decisive_bundle), "--osc", f"127.0.0.1:{osc.port}"]
    cmd += ["--zmq-pub", f"tcp://127.0.0.1:{zmq_port}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=pulse.client_env())
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), s) for s in proc.stderr), daemon=True)
    reader.start()

    def first(address: str, value: tuple, since: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [t for t, args in osc.received(address, since) if args == value]
            if got:
                return got[0]
            time.sleep(0.02)
        raise AssertionError(f"no {address} {value} in {timeout} s: {osc.received(address, since)[-5:]}")

    try:
        osc.wait_for("/syn/heartbeat", timeout=90)
        pulse.play(angry_music)
        deadline = time.monotonic() + 30
        while not any(args[0] > 0 for _, args in osc.received("/syn/audio/rms")):
            assert time.monotonic() < deadline, "the engine never heard the playback"
            time.sleep(0.05)
        first("/syn/state", ("listening",), 0.0, 30)
        unplugged = time.monotonic()
        pulse.unload_sink()
        lost_at = first("/syn/state", ("lost",), unplugged, 5)
        first("/syn/status/source", ("lost",), unplugged, 5)
        time.sleep(6.0)
        replugged = time.monotonic()
        pulse.load_sink()
        pulse.play(angry_music)
        back_at = first("/syn/state", ("listening",), replugged, 5)
        first("/syn/status/source", ("running",), replugged, 5)
        status, since = None, time.time()  # the first status sent after the recovery (unix time, as `t`)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and status is None:
            if sub.poll(100) and (msg := json.loads(sub.recv_multipart()[1]))["t"] >= since:
                status = msg
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
        ctx.term()
        osc.close()
    while_lost = [args for t, args in osc.received("/syn/audio/rms", lost_at + 0.5) if t < replugged]
    assert len(while_lost) > 60 and set(while_lost) == {(0.0,)}  # zeros at the audio rate, not a frozen value
    states = [args for t, args in osc.received("/syn/state", lost_at) if t < replugged]
    assert states.count(("lost",)) >= 8 and set(states) == {("lost",)}  # every hop while it lasts
    assert status is not None and status["source"]["state"] == "running" and status["state"] == "listening"
    assert status["source"]["last_error"] is None and status["source"]["outages"] >= 1
    noisy = [s for t, s in lines if unplugged <= t < replugged]
    err = "".join(s for _, s in lines)
    print(f"\nlost after {lost_at - unplugged:.2f} s, listening {back_at - replugged:.2f} s after the replug,")
    print(f"{len(noisy)} stderr lines in {replugged - unplugged:.1f} s unplugged")
    assert len(noisy) <= 15, "".join(noisy)
    assert "audio source lost:" in err and re.search(r"audio source back after \d+\.\d s", err)
    assert re.search(r"stopped after \d+\.\d s \(signal SIGTERM\)\n$", err)
