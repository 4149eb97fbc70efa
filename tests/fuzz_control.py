"""Control fuzz run (not collected by pytest): malformed OSC and ZeroMQ control input at a real engine.

    python -m tests.fuzz_control [--osc N] [--zmq N] [--seed S]     # defaults 10000, 2000, 0

Starts `synesthesia run --headless --source synth:happy` with every port on 127.0.0.1 (nothing else is
ever targeted), then sends N malformed OSC datagrams (type tags without data, unknown tags, truncated,
garbage, wrong types, NaN/inf, bad bundles; a new source port for every 10th) and N malformed ZeroMQ
requests (wrong types, missing args, NaN/inf, huge numbers, deep nesting, 60 KB payloads, random bytes),
each waiting for its reply. Heartbeats are counted on a python-osc receiver throughout. Afterwards both
control servers must still answer a good command. Prints one JSON line; exit 1 when something died.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from tests.netparts import OscReceiver, free_tcp_port, free_udp_port

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
CONTROLS = ["speed", "intensity", "override", "seed", "freeze", "smoothing", "hud", "blackout"]


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (4 - len(b) % 4)


def _osc(address: str, *args: object) -> bytes:
    msg = OscMessageBuilder(address=address)
    for a in args:
        msg.add_arg(a)
    return msg.build().dgram


def osc_case(rng: np.random.Generator) -> bytes:
    """One malformed or invalid OSC datagram."""
    name = CONTROLS[int(rng.integers(len(CONTROLS)))]
    addr = f"/syn/ctl/{name}"
    match int(rng.integers(10)):
        case 0:  # type tags that promise data the datagram does not hold
            return _pad(addr.encode()) + _pad(("," + "fdsihb"[int(rng.integers(6))] * int(rng.integers(1, 4))).encode())
        case 1:  # a tag python-osc does not read (it would log through the root logger)
            return _pad(addr.encode()) + _pad(b",x") + struct.pack(">f", 0.5)
        case 2:  # truncated
            good = _osc(addr, 0.5)
            return good[: int(rng.integers(1, len(good)))]
        case 3:
            return bytes(rng.integers(0, 256, int(rng.integers(1, 512)), dtype=np.uint8))
        case 4:  # wrong type
            return _osc(addr, "x" * int(rng.integers(1, 200)))
        case 5:  # NaN / inf as doubles
            return _osc(addr, float(rng.choice([np.nan, np.inf, -np.inf])))
        case 6:  # bundle element longer than the packet
            return b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 4096) + b"/syn"
        case 7:  # unknown control / address
            return _osc(f"/syn/ctl/x{int(rng.integers(1000))}", 1.0)
        case 8:  # far out of range
            return _osc(addr, float(rng.choice([1e30, -1e30, 3e38])))
        case _:  # missing arguments
            return _osc(addr)


def zmq_case(rng: np.random.Generator) -> bytes:
    """One malformed or invalid ZeroMQ control request."""
    name = CONTROLS[int(rng.integers(len(CONTROLS)))]
    match int(rng.integers(10)):
        case 0:
            return json.dumps({"v": 1, "cmd": name, "args": ["x"]}).encode()
        case 1:
            return json.dumps({"v": 1, "cmd": name}).encode()
        case 2:
            return b'{"v":1,"cmd":"%s","args":[%s]}' % (name.encode(), rng.choice([b"NaN", b"Infinity", b"-Infinity"]))
        case 3:
            return b'{"v":1,"cmd":"%s","args":[%s]}' % (name.encode(), b"9" * int(rng.integers(300, 6000)))
        case 4:
            depth = int(rng.integers(1000, 20000))
            return b'{"v":1,"cmd":"seed","args":' + b"[" * depth + b"]" * depth + b"}"
        case 5:
            return json.dumps({"v": 1, "cmd": name, "args": ["x" * 60_000]}).encode()
        case 6:
            return bytes(rng.integers(0, 256, int(rng.integers(1, 2048)), dtype=np.uint8))
        case 7:
            return json.dumps({"v": 1, "cmd": name, "args": [1e308 * 10]}).encode()  # Infinity
        case 8:
            return json.dumps({"v": int(rng.integers(2, 9)), "cmd": name, "args": [1]}).encode()
        case _:
            return json.dumps([name, 1]).encode()


def _heartbeats(rx: OscReceiver) -> int:
    return len([a for a in rx.addresses() if a == "/syn/heartbeat"])


def main(n_osc: int, n_zmq: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    osc_in, pub, ctl = free_udp_port(), free_tcp_port(), free_tcp_port()
    rx = OscReceiver()
    cmd = [
        sys.executable, "-m", "engine", "run", "--headless", "--source", "synth:happy", "--backend", "onnx",
        "--osc", f"{LOOPBACK}:{rx.port}", "--osc-in", str(osc_in),
        "--zmq-pub", f"tcp://{LOOPBACK}:{pub}", "--zmq-ctl", f"tcp://{LOOPBACK}:{ctl}", "--duration", "600",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []  # drained on a thread: a flooding engine must not block on a full pipe
    drain = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    drain.start()
    ctx = zmq.Context()
    result: dict[str, object] = {"command": " ".join(cmd[1:])}
    try:
        rx.wait_for("/syn/heartbeat", 1, timeout=120)
        # the control port is bound just after the first heartbeat can go out: wait for it to answer
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((LOOPBACK, 0))
        probe.settimeout(0.5)
        for _ in range(60):
            probe.sendto(_osc("/syn/ctl/query"), (LOOPBACK, osc_in))
            try:
                probe.recvfrom(65536)
                break
            except TimeoutError:
                continue
        hb0, t0 = _heartbeats(rx), time.monotonic()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(n_osc):
            if i % 10 == 0:  # a new source port now and then: the log limiter must not be per port
                sender.close()
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.sendto(osc_case(rng), (LOOPBACK, osc_in))
            if i % 100 == 99:
                time.sleep(0.002)  # stay inside the loopback receive buffer
        sender.close()
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 5000)
        req.connect(f"tcp://{LOOPBACK}:{ctl}")
        zmq_errors = zmq_unanswered = 0
        zmq_done = 0
        for _ in range(n_zmq):
            zmq_done += 1
            req.send(zmq_case(rng))
            try:
                zmq_errors += json.loads(req.recv())["ok"] is False
            except zmq.Again:
                zmq_unanswered += 1
                req.close()
                req = ctx.socket(zmq.REQ)
                req.setsockopt(zmq.LINGER, 0)
                req.setsockopt(zmq.RCVTIMEO, 5000)
                req.connect(f"tcp://{LOOPBACK}:{ctl}")
                if zmq_unanswered >= 3:  # the control socket is dead: no point in waiting 5 s per request
                    break
        flood_s = time.monotonic() - t0
        # both control servers still work
        req.send(json.dumps({"v": 1, "cmd": "speed", "args": [1.25]}).encode())
        try:
            good = json.loads(req.recv())
        except zmq.Again:
            good = {"ok": False}
        req.close()
        probe.sendto(_osc("/syn/ctl/query"), (LOOPBACK, osc_in))
        probe.settimeout(5.0)
        try:
            state = {m.message.address: list(m.message.params) for m in OscPacket(probe.recvfrom(65536)[0]).messages}
        except TimeoutError:
            state = {}
        probe.close()
        time.sleep(2.0)
        result.update(
            osc_sent=n_osc,
            zmq_sent=n_zmq,
            flood_s=round(flood_s, 1),
            zmq_error_replies=zmq_errors,
            zmq_unanswered=zmq_unanswered,
            zmq_good_after=bool(good["ok"] and good["state"]["ctl"]["speed"] == 1.25),
            zmq_requests_done=zmq_done,
            osc_query_after=state.get("/syn/ctl/speed") == [1.25],
            osc_malformed=state.get("/syn/control/malformed", [None])[0],
            osc_rejected=state.get("/syn/control/rejected", [None])[0],
            osc_unknown=state.get("/syn/control/unknown", [None])[0],
            heartbeats_during=_heartbeats(rx) - hb0,
            heartbeat_s=round(time.monotonic() - t0, 1),
            engine_alive=proc.poll() is None,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drain.join(timeout=10)
        ctx.destroy(linger=0)
        rx.close()
    result.update(
        exit_code=proc.returncode,
        stderr_lines=len(lines),
        control_log_lines=sum("synesthesia.control" in line for line in lines),
        tracebacks=sum("Traceback" in line for line in lines),
    )
    print(json.dumps(result))
    ok = (
        result.get("engine_alive")
        and result.get("zmq_good_after")
        and result.get("osc_query_after")
        and not result["tracebacks"]
        and not result.get("zmq_unanswered")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--osc", type=int, default=10_000)
    p.add_argument("--zmq", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    sys.exit(main(a.osc, a.zmq, a.seed))
