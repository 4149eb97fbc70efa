"""Control parsing and the OSC / ZeroMQ control servers over real sockets (UDP on localhost, ZeroMQ tcp)."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.controls import Controls
from engine.io.control import ControlSurface, Outcome, flatten_state
from engine.io.osc_control import OscControlServer
from engine.io.zmq_control import ZmqControlServer, parse_request

zmq = pytest.importorskip("zmq")

CLASSES = ["angry", "happy", "sad", "neutral"]


def surface(status=None) -> ControlSurface:
    return ControlSurface(Controls(CLASSES), status=status)


# -- parsing ---------------------------------------------------------------------------------------------


def test_surface_applies_counts_and_never_raises() -> None:
    s = surface()
    assert s.apply("intensity", [0.5]) == (Outcome.APPLIED, None)
    assert s.apply("freeze", [1.0])[0] is Outcome.APPLIED  # TouchDesigner sends floats
    assert s.apply("override", ["Happy"])[0] is Outcome.APPLIED
    assert s.apply("override", [0.2, -0.4])[0] is Outcome.APPLIED
    assert s.apply("seed", [42.0])[0] is Outcome.APPLIED
    outcome, err = s.apply("intensity", ["loud"])
    assert outcome is Outcome.REJECTED and "intensity" in err
    assert s.apply("intensity", [2.0])[0] is Outcome.REJECTED
    assert s.apply("freeze", [])[0] is Outcome.REJECTED
    assert s.apply("override", ["joyful"])[0] is Outcome.REJECTED
    assert s.apply("seed", [1.5])[0] is Outcome.REJECTED
    assert s.apply("warp", [1])[0] is Outcome.UNKNOWN
    assert s.apply("query", [])[0] is Outcome.QUERY
    c = s.counters
    assert (c.applied, c.rejected, c.unknown, c.queries, c.received) == (5, 5, 1, 1, 12)
    snap = s.controls.snapshot()
    assert snap.intensity == 0.5 and snap.freeze and snap.seed == 42
    assert snap.override.valence == 0.2 and snap.override.arousal == -0.4


def test_state_combines_controls_counters_and_status() -> None:
    s = surface(status=lambda: {"status": {"frames": 12, "fps": 59.5}, "valence": 0.25})
    s.apply("hud", [1])
    state = s.state()
    assert state["ctl"]["hud"] is True
    assert state["control"]["applied"] == 1
    assert state["status"]["frames"] == 12 and state["valence"] == 0.25


def test_a_failing_status_provider_still_gives_a_state() -> None:
    def broken():
        raise RuntimeError("boom")

    assert "ctl" in surface(status=broken).state()


def test_flatten_state_gives_one_scalar_per_address() -> None:
    s = surface(status=lambda: {"status": {"frames": 3, "latency_ms": None}, "embedding": [0.1, 0.2]})
    s.apply("override", [0.5, 0.5])
    msgs = dict((addr, args) for addr, args in flatten_state(s.state(), "/syn"))
    assert msgs["/syn/ctl/intensity"] == [1.0]
    assert msgs["/syn/ctl/freeze"] == [0]  # bools as ints for CHOPs
    assert msgs["/syn/ctl/smoothing"] == [-1.0]  # None: "the configured value"
    assert msgs["/syn/ctl/override"] == ["va"]
    assert msgs["/syn/ctl/override/valence"] == [0.5]
    assert msgs["/syn/status/frames"] == [3]
    assert "/syn/status/latency_ms" not in msgs
    assert msgs["/syn/embedding"] == [0.1, 0.2]
    assert msgs["/syn/control/applied"] == [1]


@pytest.mark.parametrize(
    "frames",
    [
        [b"not json"],
        [b"\xff\xfe"],
        [b"[1, 2]"],
        [json.dumps({"cmd": "freeze", "args": [1]}).encode()],
        [json.dumps({"v": 2, "cmd": "freeze", "args": [1]}).encode()],
        [json.dumps({"v": 1, "cmd": 5}).encode()],
        [json.dumps({"v": 1, "cmd": "freeze", "args": 1}).encode()],
        [json.dumps({"v": 1, "cmd": "freeze", "args": [{"a": 1}]}).encode()],
        [b"{}", b"{}"],
    ],
)
def test_parse_request_rejects_malformed(frames) -> None:
    with pytest.raises(ValueError):
        parse_request(frames)


# -- OSC over real UDP -----------------------------------------------------------------------------------


def osc(address: str, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def recv_state(sock: socket.socket, timeout: float = 5.0) -> dict[str, list]:
    sock.settimeout(timeout)
    data, _ = sock.recvfrom(65536)
    return {m.message.address: list(m.message.params) for m in OscPacket(data).messages}


@pytest.fixture
def osc_server():
    s = surface(status=lambda: {"status": {"frames": 7}})
    server = OscControlServer(s, "127.0.0.1", 0, "/syn").start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    yield server, s, client
    client.close()
    server.stop()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_osc_controls_apply_and_query_answers_the_sender(osc_server) -> None:
    server, _, client = osc_server
    addr = server.address
    client.sendto(osc("/syn/ctl/intensity", 0.25), addr)
    client.sendto(osc("/syn/ctl/blackout", 1), addr)
    client.sendto(osc("/syn/ctl/override", "sad"), addr)
    client.sendto(osc("/syn/ctl/query"), addr)
    state = recv_state(client)
    assert state["/syn/ctl/intensity"] == [pytest.approx(0.25)]
    assert state["/syn/ctl/blackout"] == [1]
    assert state["/syn/ctl/override"] == ["sad"]
    assert state["/syn/status/frames"] == [7]
    assert wait_for(lambda: server.replies == 1)


def test_osc_query_with_a_port_replies_there(osc_server) -> None:
    server, _, client = osc_server
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    try:
        client.sendto(osc("/syn/ctl/query", listener.getsockname()[1]), server.address)
        assert "/syn/ctl/speed" in recv_state(listener)
    finally:
        listener.close()


def garbage_packets() -> list[bytes]:
    good = osc("/syn/ctl/intensity", 0.5)
    future = OscBundleBuilder(time.time() + 3600)  # python-osc would sleep an hour on this one
    future.add_content(OscMessageBuilder(address="/syn/ctl/speed").build())
    return [
        b"",
        b"\x00\x01\x02garbage",
        b"hello world",
        good[:-3],  # truncated argument
        good[:9],  # truncated type tags
        b"/syn/ctl/\xff\xfe\x00\x00,f\x00\x00\x00\x00\x00\x00",  # address not UTF-8
        b"#bundle\x00\x00\x00",  # truncated bundle
        b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 1000) + b"xx",  # element longer than the packet
        osc("/syn/ctl/intensity", "loud"),  # wrong type
        osc("/syn/ctl/freeze", 0.5),  # out of range
        osc("/syn/ctl/override"),  # missing argument
        osc("/syn/ctl/teleport", 1),  # unknown control
        osc("/other/thing", 1.0),  # unknown address
        future.build().dgram,
    ]


def test_osc_garbage_is_counted_and_the_server_keeps_serving(osc_server, caplog) -> None:
    server, s, client = osc_server
    for pkt in garbage_packets():
        client.sendto(pkt, server.address)
    client.sendto(osc("/syn/ctl/speed", 2.0), server.address)
    client.sendto(osc("/syn/ctl/query"), server.address)
    start = time.monotonic()
    state = recv_state(client)
    assert time.monotonic() - start < 3.0  # the future-dated bundle did not stall the server
    assert state["/syn/ctl/speed"] == [pytest.approx(2.0)]
    c = s.counters
    assert c.malformed == 8  # the first eight
    assert c.rejected == 4  # wrong type, out of range, missing argument, the bundle's argument-less speed
    assert c.unknown == 2
    assert c.applied == 1
    assert state["/syn/control/malformed"] == [c.malformed]
    # rate-limited logging: far fewer lines than bad packets
    assert len([r for r in caplog.records if r.name == "synesthesia.control"]) <= 6


# -- ZeroMQ REP ------------------------------------------------------------------------------------------


@pytest.fixture
def zmq_server():
    s = surface(status=lambda: {"status": {"frames": 9}})
    ctx = zmq.Context()
    server = ZmqControlServer(s, "tcp://127.0.0.1:*", context=ctx).start()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(server.bound)
    yield server, s, req
    req.close()
    server.stop()
    ctx.term()


def ask(req, *frames: bytes) -> dict:
    req.send_multipart(list(frames))
    return json.loads(req.recv())


def test_zmq_commands_apply_and_reply_with_state(zmq_server) -> None:
    _, _, req = zmq_server
    rep = ask(req, json.dumps({"v": 1, "cmd": "intensity", "args": [0.3]}).encode())
    assert rep["ok"] is True and rep["v"] == 1 and "error" not in rep
    assert rep["state"]["ctl"]["intensity"] == pytest.approx(0.3)
    assert rep["state"]["status"]["frames"] == 9
    rep2 = ask(req, json.dumps({"v": 1, "cmd": "override", "args": ["happy"]}).encode())
    assert rep2["state"]["ctl"]["override"] == "happy"
    assert rep2["seq"] == rep["seq"] + 1 and rep2["t"] >= rep["t"]
    rep3 = ask(req, json.dumps({"v": 1, "cmd": "query"}).encode())
    assert rep3["ok"] is True and rep3["state"]["ctl"]["override"] == "happy"


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        ((b"{not json",), "not JSON"),
        ((b"\xff\xfe\xfd",), "not JSON"),
        ((json.dumps({"v": 1, "cmd": "freeze", "args": ["yes"]}).encode(),), "freeze"),
        ((json.dumps({"v": 1, "cmd": "warp"}).encode(),), "unknown control"),
        ((json.dumps({"v": 7, "cmd": "freeze", "args": [1]}).encode(),), "version"),
        ((b"{}", b"extra"), "one frame"),
    ],
)
def test_zmq_bad_requests_get_ok_false_and_the_socket_keeps_working(zmq_server, frames, fragment) -> None:
    _, _, req = zmq_server
    rep = ask(req, *frames)
    assert rep["ok"] is False and fragment in rep["error"]
    assert "state" in rep
    ok = ask(req, json.dumps({"v": 1, "cmd": "hud", "args": [1]}).encode())
    assert ok["ok"] is True and ok["state"]["ctl"]["hud"] is True
