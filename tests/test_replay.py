"""Record a show (`--record DIR`) and replay it (`--source replay:DIR`): same labels, same OSC, in order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.io.schema import Topic
from engine.replay import FILE, Recorder, read_recording
from tests.netparts import OscReceiver
from tests.test_engine import speech_wav  # noqa: F401 - fixture

REPLAYED = ("/syn/emotion/", "/syn/state", "/syn/audio/", "/syn/embedding", "/syn/nearest")


def run_engine(*args: str, rx: OscReceiver) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--backend", "onnx", "--osc-in", "0"]
    cmd += ["--osc", f"127.0.0.1:{rx.port}", "--zmq-pub", "tcp://127.0.0.1:*", "--zmq-ctl", "tcp://127.0.0.1:*"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def stream(rx: OscReceiver) -> list[tuple[str, tuple]]:
    with rx._lock:
        return [(a, v) for a, v in rx.messages if a.startswith(REPLAYED)]


def test_record_10_s_then_replay_gives_the_same_labels_and_osc_in_order(speech_wav: Path, tmp_path: Path) -> None:  # noqa: F811
    rec = tmp_path / "show"
    first, second = OscReceiver(), OscReceiver()
    try:
        live = run_engine("--source", f"file:{speech_wav}", "--duration", "10", "--record", str(rec), rx=first)
        assert live.returncode == 0, live.stderr[-2000:]
        assert "recording the show to" in live.stderr
        replay = run_engine("--source", f"replay:{rec}", rx=second)
        assert replay.returncode == 0, replay.stderr[-2000:]
        assert "source ended" in replay.stderr and "Traceback" not in replay.stderr
        a, b = stream(first), stream(second)
    finally:
        first.close()
        second.close()
    labels = [v[0] for addr, v in a if addr == "/syn/emotion/label"]
    assert len(labels) >= 10, "the live run sent too few states to compare"
    assert [v[0] for addr, v in b if addr == "/syn/emotion/label"] == labels
    assert b == a  # every emotion, state and audio-feature message, values and order
    header, lines = read_recording(rec)
    assert header["v"] == 1 and header["bundle"] and {ln["k"] for ln in lines} >= {"msg", "controls", "source"}
    assert not any(ln.get("topic") == Topic.STATUS.value for ln in lines)  # status and frames are not recorded


def test_a_damaged_line_is_skipped_and_a_bad_recording_is_a_clear_error(tmp_path: Path) -> None:
    rec = tmp_path / "r"
    rec.mkdir()
    good = {"k": "msg", "t": 0.5, "topic": "audio", "data": {"rms": 0.1}, "osc": [["/syn/audio/rms", [0.1]]]}
    lines = [json.dumps({"k": "header", "v": 1}), json.dumps(good), '{"k": "msg", "t": 0.7, "topic": "au', "[1, 2]"]
    (rec / FILE).write_text("\n".join(lines) + "\n")
    header, read = read_recording(rec)
    assert header["v"] == 1 and read == [good]
    (rec / FILE).write_text(json.dumps({"k": "header", "v": 99}) + "\n")
    with pytest.raises(ConfigError, match="newer"):
        read_recording(rec)
    with pytest.raises(ConfigError, match="cannot read"):
        read_recording(tmp_path / "absent")
    (rec / FILE).write_text(json.dumps(good) + "\n")
    with pytest.raises(ConfigError, match="no header"):
        read_recording(rec)


def test_an_unwritable_directory_leaves_the_show_unrecorded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rec = Recorder(blocker / "show", {"engine": "test"})
    assert not rec.active and rec.error
    rec.message(Topic.AUDIO, {"rms": 0.1}, [("/syn/audio/rms", (0.1,))])  # ignored, no exception
    rec.close()
    assert "unrecorded" in capsys.readouterr().err


def test_a_full_queue_drops_the_newest_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.replay as replay

    monkeypatch.setattr(replay, "QUEUE_LINES", 3)
    rec = Recorder(tmp_path / "show", {"engine": "test"})
    with rec._cond:  # re-entrant: the writer cannot drain meanwhile, as behind a stalled disk
        queued = len(rec._lines)
        for i in range(5):
            rec.event("controls", n=i)
    assert rec.dropped == 5 - (3 - queued)
    rec.close()
    kept = [json.loads(line) for line in (tmp_path / "show" / FILE).read_text().splitlines()]
    assert [line.get("n") for line in kept if line["k"] == "controls"] == list(range(3 - queued))  # oldest kept


def test_every_control_message_is_recorded_with_its_outcome_and_sender(tmp_path: Path) -> None:
    from engine.controls import Controls
    from engine.io.control import ControlSurface

    rec = Recorder(tmp_path / "show", {"engine": "test"})
    surface = ControlSurface(Controls(("angry", "happy", "sad", "neutral")))
    surface.on_event = rec.control
    surface.apply("freeze", [1], "osc 127.0.0.1:50000")
    surface.apply("speed", [float("nan")], "zmq")
    surface.apply("warp", [3], "web")
    surface.apply("query", [], "osc 127.0.0.1:50000")  # queries change nothing: not recorded
    rec.close()
    lines = [json.loads(line) for line in (tmp_path / "show" / FILE).read_text().splitlines()]
    events = [(e["name"], e["args"], e["outcome"], e["surface"]) for e in lines if e["k"] == "control"]
    assert events == [
        ("freeze", [1], "applied", "osc 127.0.0.1:50000"),
        ("speed", ["nan"], "rejected", "zmq"),
        ("warp", [3], "unknown", "web"),
    ]
    assert all("error" in e for e in lines if e["k"] == "control" and e["outcome"] != "applied")
    assert rec.error is None and rec.dropped == 0
