"""ZeroMQ PUB socket: multipart [topic, json] (and [b"frame", json, image] for frames); never blocks.

Drop accounting: a plain PUB socket drops silently for a subscriber whose queue (SNDHWM) is full. Each send
is therefore first tried with XPUB_NODROP set, which makes a full subscriber queue raise `Again` instead;
that message is counted as dropped and then sent again lossy, so subscribers that do keep up still get it.
The count is "messages at least one subscriber could not take".
"""

from __future__ import annotations

import logging
from typing import Any

from engine.deps import require

log = logging.getLogger("synesthesia.zmq")


class ZmqPublisher:
    """Bound PUB socket; `send` from one thread (the sender), `close` after that thread has stopped."""

    def __init__(self, address: str, hwm: int = 100, context: Any = None) -> None:
        zmq = require("zmq", "ZeroMQ output")
        self._zmq = zmq
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self.address = address
        sock = self._ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(address)
        except zmq.ZMQError:
            sock.close(0)
            if self._own_context:
                self._ctx.term()
            raise
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._nodrop = False
        self._set_nodrop(True)
        self.sent = 0
        self.dropped = 0
        self.errors = 0

    def _set_nodrop(self, on: bool) -> None:
        if on != self._nodrop:
            self._sock.setsockopt(self._zmq.XPUB_NODROP, int(on))
            self._nodrop = on

    def send(self, parts: list[bytes]) -> bool:
        """Send one multipart message; False when some subscriber could not take it (counted)."""
        zmq = self._zmq
        try:
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK)
            self.sent += 1
            return True
        except zmq.Again:
            self.dropped += 1
        except zmq.ZMQError as exc:
            self.errors += 1
            log.warning("ZeroMQ send failed: %s", exc)
            return False
        try:  # lossy retry: reaches the subscribers that have room
            self._set_nodrop(False)
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # nobody had room; already counted
        finally:
            self._set_nodrop(True)
        return False

    def stats(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "sent": self.sent, "dropped": self.dropped, "errors": self.errors}

    def close(self) -> None:
        self._sock.close(0)
        if self._own_context:
            self._ctx.term()
