"""Who may steer the show (issue: open by default): control binds loopback unless configured, an allow-list
of sender networks for OSC and ZeroMQ control, query replies only to allowed senders (no amplification),
and the startup lines say what listens where. Real sockets on 127.0.0.0/8: Linux answers every address of
that network, so 127.0.0.2 is a real second sender."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from engine.config import EngineConfig, load_config
from engine.controls import Controls
from engine.io.allow import SenderAllowList
from engine.io.control import ControlSurface
from engine.io.osc_control import OscControlServer
from engine.io.zmq_control import ZmqControlServer
from tests.netparts import free_tcp_port, free_udp_port

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "happy", "sad", "neutral"]
QUERY = b"/syn/ctl/query\x00\x00"  # 16 bytes, no arguments
FREEZE_ON = b"/syn/ctl/freeze\x00,i\x00\x00\x00\x00\x00\x01"


def _sender(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(0.5)
    return s


def _reply(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None


def test_defaults_and_presets_listen_on_loopback_only() -> None:
    cfg = EngineConfig()
    assert cfg.osc.in_host == "127.0.0.1"
    assert cfg.zmq.ctl.startswith("tcp://127.0.0.1:") and cfg.zmq.pub.startswith("tcp://127.0.0.1:")
    for preset in sorted((ROOT / "installation" / "configs").glob("*.toml")):
        c = load_config(str(preset), {})
        assert c.osc.in_host == "127.0.0.1", preset.name
        assert "127.0.0.1" in c.zmq.pub and (c.zmq.ctl is None or "127.0.0.1" in c.zmq.ctl), preset.name
        allowed = SenderAllowList(c.osc.allow)
        assert "127.0.0.1" in allowed and "192.168.1.20" not in allowed, preset.name


def test_allow_list_parses_networks_and_mapped_addresses() -> None:
    allow = SenderAllowList(["192.168.1.0/24", "10.0.0.7", "::1/128"])
    assert "192.168.1.77" in allow and "10.0.0.7" in allow and "::1" in allow
    assert "::ffff:192.168.1.5" in allow  # an IPv4 sender seen through an IPv6 socket
    assert "10.0.0.8" not in allow and "192.168.2.1" not in allow and "not-an-ip" not in allow
    with pytest.raises(ValueError, match="not an IP network"):
        SenderAllowList(["192.168.1.0/33"])


def test_bad_allow_entry_is_a_config_error_naming_the_key() -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"zmq\.ctl_allow\.1"):
        load_config(None, {"zmq": {"ctl_allow": ["127.0.0.1", "lan"]}})


def test_osc_control_hears_only_allowed_senders_and_refused_ones_get_no_reply() -> None:
    surface = ControlSurface(Controls(CLASSES))
    server = OscControlServer(surface, "127.0.0.1", 0, "/syn", allow=SenderAllowList(["127.0.0.1/32"])).start()
    stranger, friend = _sender("127.0.0.2"), _sender("127.0.0.1")
    try:
        for _ in range(20):  # a spoofable 16-byte query from outside the list: nothing comes back
            stranger.sendto(QUERY, server.address)
        stranger.sendto(FREEZE_ON, server.address)
        assert _reply(stranger) is None
        deadline = time.monotonic() + 5
        while surface.counters.refused < 21 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert surface.counters.refused == 21
        assert surface.controls.snapshot().freeze is False  # not applied
        assert server.replies == 0

        friend.sendto(QUERY, server.address)
        reply = _reply(friend)
        assert reply is not None and reply.startswith(b"#bundle")
        friend.sendto(FREEZE_ON, server.address)
        deadline = time.monotonic() + 5
        while not surface.controls.snapshot().freeze and time.monotonic() < deadline:
            time.sleep(0.01)
        assert surface.controls.snapshot().freeze is True
    finally:
        stranger.close()
        friend.close()
        server.stop()


def test_query_port_pins_where_replies_go() -> None:
    surface = ControlSurface(Controls(CLASSES))
    listener = _sender("127.0.0.1")
    pinned = listener.getsockname()[1]
    server = OscControlServer(surface, "127.0.0.1", 0, "/syn", query_port=pinned).start()
    asker = _sender("127.0.0.1")
    elsewhere = _sender("127.0.0.1")
    try:
        # "query <port>" would redirect the reply; with query_port set it goes to the pinned port only
        port = elsewhere.getsockname()[1]
        query_to = b"/syn/ctl/query\x00\x00,i\x00\x00" + port.to_bytes(4, "big")
        asker.sendto(query_to, server.address)
        assert _reply(listener) is not None
        assert _reply(elsewhere) is None and _reply(asker) is None
    finally:
        for s in (listener, asker, elsewhere):
            s.close()
        server.stop()


def test_zmq_control_refuses_senders_outside_the_list_without_state() -> None:
    surface = ControlSurface(Controls(CLASSES))
    ctx = zmq.Context()
    server = ZmqControlServer(
        surface, "tcp://127.0.0.1:*", context=ctx, allow=SenderAllowList(["127.0.0.1/32"])
    ).start()
    port = server.bound.rsplit(":", 1)[1]

    def ask(source: str, cmd: str, args: list) -> dict:
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 5000)
        req.connect(f"tcp://{source}:0;127.0.0.1:{port}")  # connect from a chosen source address
        try:
            req.send(json.dumps({"v": 1, "cmd": cmd, "args": args}).encode())
            return json.loads(req.recv())
        finally:
            req.close()

    try:
        refused = ask("127.0.0.2", "freeze", [1])
        assert refused["ok"] is False and refused["error"] == "sender not allowed" and "state" not in refused
        assert surface.controls.snapshot().freeze is False and surface.counters.refused == 1
        accepted = ask("127.0.0.1", "freeze", [1])
        assert accepted["ok"] is True and surface.controls.snapshot().freeze is True
        assert server.status()["serving"] is True
    finally:
        server.stop()
        ctx.term()


def test_run_says_what_listens_where() -> None:
    osc_in, ctl, pub = free_udp_port(), free_tcp_port(), free_tcp_port()
    cmd = [
        sys.executable, "-m", "engine", "run", "--headless", "--source", "synth:happy", "--duration", "2",
        "--osc-in", str(osc_in), "--zmq-ctl", f"tcp://127.0.0.1:{ctl}", "--zmq-pub", f"tcp://127.0.0.1:{pub}",
        "--osc", f"127.0.0.1:{free_udp_port()}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert f"OSC control on 127.0.0.1:{osc_in}, senders allowed: 127.0.0.0/8, ::1/128" in err
    assert f"ZeroMQ control on tcp://127.0.0.1:{ctl}, senders allowed: 127.0.0.0/8, ::1/128" in err
    assert f"ZeroMQ PUB on tcp://127.0.0.1:{pub}" in err
    assert "reachable from the network" not in err


def test_check_warns_when_control_is_open_to_everyone(tmp_path: Path) -> None:
    port = free_udp_port()
    cfg = tmp_path / "open.toml"
    cfg.write_text(f'[osc]\nin_host = "0.0.0.0"\nin_port = {port}\nallow = ["0.0.0.0/0"]\n[zmq]\nenabled = false\n')
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "check", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next(ln for ln in proc.stdout.splitlines() if "osc in" in ln)
    assert "WARN" in line and "reachable from the network" in line and "0.0.0.0/0" in line
