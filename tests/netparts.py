"""Real network peers for tests: a python-osc UDP server that records what it receives, a ZeroMQ
subscriber, free ports."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from pythonosc import dispatcher, osc_server

RCVBUF = 4 << 20  # bytes; the kernel caps it at net.core.rmem_max


class OscReceiver:
    """A real python-osc UDP server on a free loopback port, recording (address, args) in arrival order.

    One server thread handles the datagrams in turn (a threading server would record them in whatever
    order its per-datagram threads happen to run), with a large receive buffer so a loaded machine does
    not drop a burst before the thread reads it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple]] = []
        self.times: list[float] = []  # time.monotonic() of each message's arrival
        self._lock = threading.Lock()
        d = dispatcher.Dispatcher()
        d.set_default_handler(self._record)
        self.server = osc_server.BlockingOSCUDPServer(("127.0.0.1", 0), d)
        self.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, address: str, *args) -> None:
        with self._lock:
            self.messages.append((address, args))
            self.times.append(time.monotonic())

    def received(self, address: str, since: float = 0.0) -> list[tuple[float, tuple]]:
        """(arrival time, args) of every `address` message that arrived at or after `since` (monotonic)."""
        with self._lock:
            return [
                (t, args) for t, (a, args) in zip(self.times, self.messages, strict=True) if a == address and t >= since
            ]

    def addresses(self) -> list[str]:
        with self._lock:
            return [a for a, _ in self.messages]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10.0) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = [args for a, args in self.messages if a == address]
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise AssertionError(f"{address}: {len(got)} of {count} messages in {timeout} s; got {set(self.addresses())}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zmq_subscriber(endpoint: str, topic: bytes = b"") -> tuple[Any, Any]:
    """(context, SUB socket) connected to `endpoint` for `topic` (all by default); close both when done."""
    import zmq  # only the tests that talk ZeroMQ need it

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    return ctx, sub
