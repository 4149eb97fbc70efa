"""The one sender thread: a bounded queue in front of OSC out and ZeroMQ PUB.

Producers (analysis thread, main loop) call `publish`, which never blocks and never touches a socket.
Queue policy: when the queue is full the OLDEST message is dropped and counted - an installation wants the
room's current state, not a backlog of stale ones. Sequence numbers are given per topic at publish time,
so a receiver sees every drop (queue or network) as a gap. A slow or absent peer therefore costs drops,
never analysis or frame time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.io.osc_out import OscOut
from engine.io.schema import OscMessage, Topic, envelope
from engine.io.zmq_pub import ZmqPublisher
from engine.timing import StageTimer

log = logging.getLogger("synesthesia.sender")


@dataclass(frozen=True)
class Outgoing:
    topic: Topic
    seq: int
    t: float  # unix time when published
    data: dict[str, Any]  # JSON fields (the envelope is added when sent)
    osc: tuple[OscMessage, ...]
    captured_at: float | None  # time.monotonic() of the audio it describes, for the latency figure
    blob: bytes | None = None  # extra binary part (encoded frame)
    build: Callable[[], tuple[dict[str, Any], Sequence[OscMessage]]] | None = None  # lazy (data, osc)


class Sender:
    """Owns the queue and the thread; the outputs are used only from that thread."""

    def __init__(
        self,
        osc: OscOut | None = None,
        zmq: ZmqPublisher | None = None,
        queue_size: int = 1024,
        timer: StageTimer | None = None,
    ) -> None:
        self.osc = osc
        self.zmq = zmq
        self.queue_size = queue_size
        self.timer = timer or StageTimer()
        self._queue: deque[Outgoing] = deque()
        self._cond = threading.Condition()
        self._seq: dict[Topic, int] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.published = 0
        self.queue_drops = 0
        self.errors = 0
        self.sent = 0
        self.last_latency_ms: float | None = None

    def publish(
        self,
        topic: Topic,
        data: dict[str, Any] | None = None,
        osc: Sequence[OscMessage] = (),
        captured_at: float | None = None,
        blob: bytes | None = None,
        build: Callable[[], tuple[dict[str, Any], Sequence[OscMessage]]] | None = None,
    ) -> int:
        """Queue one message for both transports (either part may be empty); returns its sequence number.

        `build` returns (data, osc) and runs on the sender thread: formatting then costs the producer nothing.
        """
        with self._cond:
            seq = self._seq.get(topic, 0)
            self._seq[topic] = seq + 1
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.queue_drops += 1
            self._queue.append(Outgoing(topic, seq, time.time(), data or {}, tuple(osc), captured_at, blob, build))
            self.published += 1
            self._cond.notify()
        return seq

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(0.5)
                if not self._queue and self._stopping:
                    return
                batch = list(self._queue)
                self._queue.clear()
            for item in batch:
                self._send(item)

    def _send(self, item: Outgoing) -> None:
        start = time.perf_counter()
        try:
            data, osc = item.build() if item.build is not None else (item.data, item.osc)
            if self.osc is not None and osc:
                self.osc.send(osc)
            if self.zmq is not None and (data or item.blob is not None):
                body = json.dumps(envelope(item.topic, item.seq, item.t, data), separators=(",", ":"))
                parts = [item.topic.value.encode(), body.encode()]
                if item.blob is not None:
                    parts.append(item.blob)
                self.zmq.send(parts)
            self.sent += 1
        except Exception:  # one bad message must not end the thread that every peer depends on
            self.errors += 1
            log.exception("sending a %s message failed", item.topic.value)
        done = time.perf_counter()
        self.timer.add("send", (done - start) * 1000.0)
        if item.captured_at is not None:
            self.last_latency_ms = (time.monotonic() - item.captured_at) * 1000.0
            self.timer.add("latency", self.last_latency_ms)

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued (within `timeout`), end the thread, close the outputs."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("sender did not finish within %.1f s; leaving its sockets open", timeout)
                return  # closing a socket under a thread still using it would be worse
            self._thread = None
        for out in (self.osc, self.zmq):
            if out is not None:
                out.close()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            depth = len(self._queue)
        return {
            "queue": {"depth": depth, "size": self.queue_size, "drops": self.queue_drops},
            "published": self.published,
            "sent": self.sent,
            "errors": self.errors,
            "osc": self.osc.stats() if self.osc else None,
            "zmq": self.zmq.stats() if self.zmq else None,
        }
