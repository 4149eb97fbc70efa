"""Live capture through a real PulseAudio null sink: the end-to-end acceptance run and a device that goes away.

PortAudio records the sink's monitor as its default input, so whatever the test plays is what the engine
hears, through the same resampling and callback path as a microphone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import zmq

from engine.app import Engine, run_headless
from engine.audio.frontend import FrontEndConfig
from engine.audio.synth import synthesize
from engine.config import build_config
from engine.models.bundle import load_bundle
from engine.models.checkpoint import audio_model_from_config
from tests.bundles import CLASSES
from tests.netparts import OscReceiver, free_tcp_port
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
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://127.0.0.1:{zmq_port}")
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
