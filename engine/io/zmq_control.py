"""ZeroMQ control: a REP socket taking the OSC control commands as JSON (docs/design.md §7).

Request:  {"v": 1, "cmd": "<name>", "args": [...]}      (cmd "query" only reads)
Reply:    {"v": 1, "t": <unix time>, "seq": <n>, "ok": bool, "error"?: str, "state": {...}}

A REP socket that does not answer a request is wedged for good, so every request gets exactly one
reply: malformed JSON, a wrong shape, an unknown command or an invalid value are answered with
`ok: false` and an error string (and counted and logged like the OSC ones). Anything the checks did not
foresee (a bug, a RecursionError) is caught per request: counted as an internal error, logged
rate-limited, answered, and the thread goes on serving. Requests over 64 KB are answered with an error
unread; libzmq itself drops a peer whose message exceeds 1 MiB (MAXMSGSIZE), so nothing larger is ever
buffered. One explicit thread, owned by the app (`start()` / `stop()`); it polls so that `stop()`
returns within ~0.2 s.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from engine.deps import require
from engine.io.allow import LOOPBACK, SenderAllowList, exposure
from engine.io.control import ControlSurface, Outcome
from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.control")

MAX_REQUEST_BYTES = 64 * 1024
# Between the two limits a request is refused with a reply; past MAXMSGSIZE libzmq drops the connection
# (the REQ peer sees no reply), which keeps a flood of huge messages out of memory.
MAX_MESSAGE_BYTES = 16 * MAX_REQUEST_BYTES


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_request(frames: list[bytes]) -> tuple[str, list[Any]]:
    """(cmd, args) from a request's frames; ValueError with a readable message when malformed."""
    if len(frames) != 1:
        raise ValueError(f"expected one frame, got {len(frames)}")
    raw = frames[0]
    if len(raw) > MAX_REQUEST_BYTES:
        raise ValueError(f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        req = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("not JSON this engine reads (nested too deep)") from None
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, NaN/Infinity, ints past 4300 digits
        raise ValueError(f"not JSON ({str(exc)[:200]})") from exc
    if not isinstance(req, dict):
        raise ValueError("the request must be a JSON object")
    if req.get("v") != 1:
        raise ValueError(f"unsupported message version v={req.get('v')!r} (this engine speaks v=1)")
    cmd = req.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ValueError("'cmd' must be a non-empty string")
    args = req.get("args", [])
    if not isinstance(args, list):
        raise ValueError("'args' must be a list")
    if any(isinstance(a, dict | list) for a in args):
        raise ValueError("'args' must hold numbers, strings or booleans")
    return cmd, args


class ZmqControlServer:
    """REP socket on `endpoint` (e.g. tcp://*:5557); `start()` binds (errors surface there) and serves."""

    def __init__(
        self,
        surface: ControlSurface,
        endpoint: str = "tcp://127.0.0.1:5557",
        context: Any = None,
        allow: SenderAllowList | None = None,
    ) -> None:
        self.surface = surface
        self.endpoint = endpoint
        self.allow = allow if allow is not None else SenderAllowList(LOOPBACK)
        self._context = context
        self._socket: Any = None
        self._thread = OwnedThread(self._serve, "zmq-control")
        self.seq = 0
        self.internal_errors = 0

    @property
    def serving(self) -> bool:
        """True while the serving thread runs (for status: a dead control thread must show)."""
        return self._thread.alive

    @property
    def bound(self) -> str:
        """The endpoint actually bound (with the real port when a wildcard port was asked for)."""
        zmq = require("zmq", "ZeroMQ control")
        return self._socket.getsockopt(zmq.LAST_ENDPOINT).decode() if self._socket is not None else self.endpoint

    def start(self) -> ZmqControlServer:
        zmq = require("zmq", "ZeroMQ control")
        ctx = self._context or zmq.Context.instance()
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError:
            sock.close()
            raise
        self._socket = sock
        self._thread.start()
        log.debug("ZeroMQ control on %s, senders allowed: %s", self.bound, self.allow)
        return self

    def describe(self) -> str:
        return f"ZeroMQ control on {self.bound}, senders allowed: {self.allow}{exposure(self.bound)}"

    def status(self) -> dict[str, Any]:
        return {
            "kind": "zmq",
            "address": self.bound if self._socket is not None else self.endpoint,
            "allow": str(self.allow),
            "serving": self.serving,
            "internal_errors": self.internal_errors,
        }

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop serving (the thread closes the socket); False when the thread did not end."""
        return self._thread.stop(timeout)

    def __enter__(self) -> ZmqControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, stop: threading.Event) -> None:
        zmq = require("zmq", "ZeroMQ control")
        sock = self._socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not stop.is_set():
                if not dict(poller.poll(200)).get(sock):
                    self.surface.log.flush()
                    continue
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    continue
                peer = _peer_address(parts[0], zmq)
                if peer is not None and peer not in self.allow:
                    reply = self.refuse(peer)
                else:
                    reply = self.handle([p.bytes for p in parts])
                try:
                    sock.send(reply)
                except zmq.ZMQError as exc:  # the peer went away; REP is ready for the next request
                    self.surface.log.warning("zmq-send", "cannot send a control reply: %s", exc)
        finally:
            sock.close(linger=0)
            self._socket = None

    def refuse(self, peer: str) -> bytes:
        """The answer to a sender outside the allow-list: REP must answer, but nothing is applied or told."""
        self.seq += 1
        self.surface.count(Outcome.REFUSED, peer, f"sender not in zmq.ctl_allow ({self.allow})")
        return json.dumps(
            {"v": 1, "t": time.time(), "seq": self.seq, "ok": False, "error": "sender not allowed"}
        ).encode()

    def handle(self, frames: list[bytes]) -> bytes:
        """One request -> one reply (bytes); never raises."""
        self.seq += 1
        try:
            return self._handle(frames)
        except Exception as exc:  # the per-request guard: a REP socket that does not answer is dead for good
            self.internal_errors += 1
            self.surface.count(Outcome.ERROR, "zmq", f"internal error {type(exc).__name__}: {str(exc)[:200]}")
            error = f"internal error ({type(exc).__name__})"
            return json.dumps({"v": 1, "t": time.time(), "seq": self.seq, "ok": False, "error": error}).encode()

    def _handle(self, frames: list[bytes]) -> bytes:
        ok, error = True, None
        try:
            cmd, args = parse_request(frames)
        except ValueError as exc:
            ok, error = False, str(exc)
            self.surface.count(Outcome.MALFORMED, "zmq", error)
        else:
            outcome, error = self.surface.apply(cmd, args, source="zmq")
            ok = outcome in (Outcome.APPLIED, Outcome.QUERY)
        reply: dict[str, Any] = {"v": 1, "t": time.time(), "seq": self.seq, "ok": ok}
        if error is not None:
            reply["error"] = error
        reply["state"] = self.surface.state()
        try:
            return json.dumps(reply, default=str, allow_nan=False).encode()
        except ValueError:  # a NaN somewhere in the status: still answer
            return json.dumps(reply, default=str).replace("NaN", "null").encode()


def _peer_address(frame: Any, zmq: Any) -> str | None:
    """The sending host of a received frame (libzmq's "Peer-Address"); None where the transport has none."""
    try:
        return frame.get("Peer-Address")
    except zmq.ZMQError:  # ipc and inproc carry no peer address
        return None
