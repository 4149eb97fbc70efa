"""Outgoing messages over real sockets: OSC schema and UDP, ZeroMQ PUB/SUB, the sender's queue policy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from engine.analysis.state import EmotionState, StateKind
from engine.audio.features import AudioFrame
from engine.io.osc_out import OscOut
from engine.io.schema import OscAddresses, Topic, audio_osc, emotion_json, emotion_osc, envelope, status_osc
from engine.io.sender import Sender
from engine.io.zmq_pub import ZmqPublisher
from tests.netparts import OscReceiver, free_udp_port

CLASSES = ("angry", "happy", "sad", "neutral")


@pytest.fixture
def osc_rx() -> Iterator[OscReceiver]:
    rx = OscReceiver()
    yield rx
    rx.close()


def make_state(label: str = "happy", kind: StateKind = StateKind.LISTENING) -> EmotionState:
    shared = np.zeros(8, np.float32)
    shared[1] = 1.0
    return EmotionState(
        classes=CLASSES,
        label=label,
        probs=np.array([0.1, 0.6, 0.2, 0.1], np.float32),
        confidence=0.6,
        valence=0.5,
        arousal=-0.25,
        embedding=np.ones(4, np.float32) / 2,
        shared=shared,
        state=kind,
        t=3.0,
        hop=1,
    )


def test_addresses_follow_the_prefix() -> None:
    a = OscAddresses("/venue/syn/")
    assert a.emotion("sad") == "/venue/syn/emotion/sad"
    assert (a.valence, a.rms, a.heartbeat, a.latency_ms) == (
        "/venue/syn/valence",
        "/venue/syn/audio/rms",
        "/venue/syn/heartbeat",
        "/venue/syn/status/latency_ms",
    )


def test_emotion_messages_cover_the_design_table() -> None:
    a = OscAddresses()
    msgs = dict(emotion_osc(a, make_state(), ["art-1", "art-2"]))
    for c in CLASSES:
        assert isinstance(msgs[f"/syn/emotion/{c}"][0], float)
    assert msgs["/syn/emotion/label"] == ("happy",)
    assert msgs["/syn/state"] == ("listening",)
    assert msgs["/syn/valence"] == (0.5,) and msgs["/syn/arousal"] == (-0.25,)
    assert len(msgs["/syn/embedding"]) == 8 and msgs["/syn/nearest"] == ("art-1", "art-2")
    assert "/syn/nearest" not in dict(emotion_osc(a, make_state(), None))


def test_json_envelope_and_no_nan_on_the_wire() -> None:
    s = make_state()
    data = emotion_json(s, [])
    env = envelope(Topic.EMOTION, 7, 1700000000.0, data)
    assert env["v"] == 1 and env["seq"] == 7 and env["topic"] == "emotion" and env["t"] == 1700000000.0
    assert env["probs"]["happy"] == pytest.approx(0.6) and env["label"] == "happy" and env["state"] == "listening"
    nan_frame = AudioFrame(float("nan"), float("inf"), 100.0)
    assert all(np.isfinite(args[0]) for _, args in audio_osc(OscAddresses(), nan_frame))
    json.dumps(env, allow_nan=False)


def test_osc_out_reaches_a_real_server_with_typed_arguments(osc_rx: OscReceiver) -> None:
    out = OscOut([f"127.0.0.1:{osc_rx.port}"])
    a = OscAddresses()
    out.send(emotion_osc(a, make_state(), ["art-3"]) + status_osc(a, 42, 59.5, 12.25))
    assert osc_rx.wait_for("/syn/heartbeat")[0] == (42,)
    assert osc_rx.wait_for("/syn/emotion/label")[0] == ("happy",)
    assert osc_rx.wait_for("/syn/emotion/happy")[0][0] == pytest.approx(0.6, abs=1e-6)
    assert len(osc_rx.wait_for("/syn/embedding")[0]) == 8
    assert osc_rx.wait_for("/syn/status/fps")[0] == (59.5,)
    out.close()


def test_unreachable_and_unresolvable_targets_are_counted_not_raised(osc_rx: OscReceiver) -> None:
    closed = free_udp_port()
    out = OscOut([f"127.0.0.1:{closed}", "no-such-host.invalid:9000", f"127.0.0.1:{osc_rx.port}"])
    for i in range(20):
        out.send([("/syn/heartbeat", (i,))])
        time.sleep(0.005)  # lets ICMP "port unreachable" come back between sends
    assert len(osc_rx.wait_for("/syn/heartbeat", 20)) == 20  # the live target is unaffected
    stats = out.stats()["targets"]
    assert stats["no-such-host.invalid:9000"]["errors"] >= 1
    assert stats[f"127.0.0.1:{osc_rx.port}"]["errors"] == 0
    out.close()


def sub_socket(ctx: zmq.Context, endpoint: str, hwm: int | None = None) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    if hwm is not None:
        sub.setsockopt(zmq.RCVHWM, hwm)
        sub.setsockopt(zmq.RCVBUF, 4096)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    return sub


def wait_connected(pub: ZmqPublisher, sub: zmq.Socket, timeout: float = 10.0) -> None:
    """PUB/SUB joins late: publish probes until one arrives (then drain)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send([b"probe", b"{}"])
        if sub.poll(50):
            while sub.poll(50):
                sub.recv_multipart()
            return
    raise AssertionError("subscriber never connected")


def test_sender_publishes_multipart_topic_json_with_sequence_numbers(osc_rx: OscReceiver) -> None:
    ctx = zmq.Context()
    pub = ZmqPublisher("tcp://127.0.0.1:*", hwm=100, context=ctx)
    sub = sub_socket(ctx, pub.endpoint)
    wait_connected(pub, sub)
    sender = Sender(OscOut([f"127.0.0.1:{osc_rx.port}"]), pub, queue_size=64)
    sender.start()
    try:
        for _ in range(3):
            sender.publish(Topic.AUDIO, {"rms": 0.5}, [("/syn/audio/rms", (0.5,))])
        sender.publish(Topic.STATUS, {"heartbeat": 1})
        got = []
        while len(got) < 4 and sub.poll(10_000):
            topic, body = sub.recv_multipart()
            got.append((topic, json.loads(body)))
        # topics are drained in turn, so only the order within a topic is fixed
        assert [m["seq"] for t, m in got if t == b"audio"] == [0, 1, 2]  # per topic
        assert [m["seq"] for t, m in got if t == b"status"] == [0]
        assert all(m["v"] == 1 and m["t"] > 1e9 for _, m in got)
        assert len(osc_rx.wait_for("/syn/audio/rms", 3)) == 3
    finally:
        sender.stop()
        sub.close()
        ctx.term()


def test_interleaved_topics_go_out_in_publish_order() -> None:
    """A replay re-publishes a recorded stream (audio, then emotion, then audio...); the round-robin over
    topics must not turn it into emotion-first."""
    sender = Sender(None, None, queue_size=16)
    sent: list[tuple[str, int]] = []
    sender.tap = lambda topic, data, osc: sent.append((topic.value, data["i"]))
    published = [(Topic.AUDIO, 0), (Topic.EMOTION, 1), (Topic.AUDIO, 2), (Topic.EMOTION, 3)]
    for topic, i in published:  # queued before the thread starts, so they are drained in rounds
        sender.publish(topic, {"i": i})
    sender.start()
    sender.stop()
    assert sent == [(t.value, i) for t, i in published]


def test_queue_drops_the_oldest_when_full() -> None:
    sender = Sender(None, None, queue_size=4)  # not started: nothing drains the queue
    for i in range(10):
        sender.publish(Topic.AUDIO, {"i": i})
    assert sender.queue_drops == 6
    assert [item.data["i"] for item in sender.pending(Topic.AUDIO)] == [6, 7, 8, 9]


def test_a_subscriber_that_stops_reading_never_blocks_and_drops_are_counted() -> None:
    ctx = zmq.Context()
    pub = ZmqPublisher("tcp://127.0.0.1:*", hwm=5, context=ctx)
    stuck = sub_socket(ctx, pub.endpoint, hwm=5)  # connected, never reads again
    reader = sub_socket(ctx, pub.endpoint)
    wait_connected(pub, stuck)
    wait_connected(pub, reader)
    sender = Sender(None, pub, queue_size=100_000)
    sender.start()
    body = {"blob": "x" * 4000}
    received = 0
    try:
        start = time.monotonic()
        for i in range(3000):
            sender.publish(Topic.STATUS, body)  # returns at once whatever the peers do
            while reader.poll(0):
                reader.recv_multipart()
                received += 1
            if i % 50 == 0:
                time.sleep(0.005)
        publish_time = time.monotonic() - start
        deadline = time.monotonic() + 20
        while sender.stats()["queue"]["depth"] and time.monotonic() < deadline:
            time.sleep(0.01)
        while reader.poll(200):
            reader.recv_multipart()
            received += 1
        stats = sender.stats()
        assert stats["queue"]["depth"] == 0 and stats["sent"] == 3000  # the sender thread never blocked
        assert stats["zmq"]["dropped"] > 0  # the stuck subscriber's share is counted
        assert received > stats["zmq"]["dropped"]  # and the live subscriber still got messages
        assert publish_time < 30
    finally:
        sender.stop()
        stuck.close()
        reader.close()
        ctx.term()


class SlowSink:
    """A ZeroMQ-publisher stand-in whose sends take `delay_s` (a peer on a slow link): records what arrives."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.got: list[tuple[str, dict]] = []

    def send(self, parts: list[bytes]) -> None:
        time.sleep(self.delay_s)
        self.got.append((parts[0].decode(), json.loads(parts[1])))

    def stats(self) -> dict:
        return {"sent": len(self.got)}

    def close(self) -> None: ...


def test_frames_flooding_a_slow_sender_cannot_push_emotion_messages_out() -> None:
    sink = SlowSink(delay_s=0.003)
    sender = Sender(None, sink, queue_size=64)  # type: ignore[arg-type]
    sender.start()
    blob = b"\xff" * 50_000
    try:
        for i in range(600):  # frames far faster than the sink takes them
            sender.publish(Topic.FRAME, {"frame": i}, blob=blob)
            if i % 10 == 0:
                sender.publish(Topic.EMOTION, {"i": i // 10})
            time.sleep(0.0005)
        deadline = time.monotonic() + 20
        while sender.stats()["queue"]["depth"] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sender.stop()
    emotion = [m["i"] for t, m in sink.got if t == "emotion"]
    frames = [m["frame"] for t, m in sink.got if t == "frame"]
    topics = sender.stats()["queue"]["topics"]
    assert emotion == list(range(60))  # every one, in order
    assert topics["emotion"]["drops"] == 0
    assert topics["frame"]["drops"] > 0 and topics["frame"]["policy"] == "latest"
    assert len(frames) + topics["frame"]["drops"] == 600 and frames == sorted(frames)
    assert frames[-1] == 599  # the newest frame is the one that is kept


def test_failed_sends_are_counted_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(SlowSink):
        def send(self, parts: list[bytes]) -> None:
            raise OSError("peer gone")

    sender = Sender(None, Broken(0.0), queue_size=256)  # type: ignore[arg-type]
    sender.start()
    try:
        for i in range(100):
            sender.publish(Topic.STATUS, {"i": i})
        deadline = time.monotonic() + 10
        while sender.errors < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sender.stop()
    lines = [r for r in caplog.records if r.name == "synesthesia.sender" and "status message failed" in r.message]
    assert sender.errors == 100 and len(lines) == 1  # one line (with its traceback) per interval, not per message
    assert lines[0].exc_info is not None
