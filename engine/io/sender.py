"""The one sender thread: one bounded queue per topic in front of OSC out and ZeroMQ PUB.

Producers (analysis thread, main loop, render loop) call `publish`, which never blocks and never touches a
socket. Each topic has its own queue and policy (`TopicPolicy`), so one kind of message can never push
another out: frames are latest-only (one slot; the newest frame replaces an unsent one, counted: a late
frame is worth nothing), every other topic keeps up to `queue_size` messages and drops the OLDEST when
full (counted per topic; an installation wants the room's current state, not a backlog). The thread drains
the topics in turn, one message from each per round, so a flood on one topic delays the others by at most
one message; within a round the messages go out in the order they were published (a replay re-publishes
a recorded stream and must send it in the recorded order). Sequence numbers are given per topic at
publish time, so a receiver sees every drop (queue or network) as a gap. Failed sends are counted and
logged rate-limited per topic. A slow or absent peer therefore costs drops, never analysis or frame time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.io.osc_out import OscOut
from engine.io.schema import OscMessage, Topic, envelope
from engine.io.zmq_pub import ZmqPublisher
from engine.ratelog import RateLimitedLog
from engine.threads import OwnedThread
from engine.timing import StageTimer

log = logging.getLogger("synesthesia.sender")

ERROR_LOG_INTERVAL_S = 10.0


class Overflow(StrEnum):
    LATEST = "latest"  # the newest message replaces the queued ones
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True)
class TopicPolicy:
    overflow: Overflow
    bound: int  # messages held for the topic at most


def default_policies(queue_size: int) -> dict[Topic, TopicPolicy]:
    """Frames latest-only; state, audio features and status each in their own drop-oldest queue."""
    keep = TopicPolicy(Overflow.DROP_OLDEST, queue_size)
    return {Topic.FRAME: TopicPolicy(Overflow.LATEST, 1), Topic.EMOTION: keep, Topic.AUDIO: keep, Topic.STATUS: keep}


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
    order: int = 0  # publish order across all topics


class Sender:
    """Owns the per-topic queues and the thread; the outputs are used only from that thread."""

    def __init__(
        self,
        osc: OscOut | None = None,
        zmq: ZmqPublisher | None = None,
        queue_size: int = 1024,
        timer: StageTimer | None = None,
        policies: Mapping[Topic, TopicPolicy] | None = None,
    ) -> None:
        self.osc = osc
        self.zmq = zmq
        self.queue_size = queue_size
        self.timer = timer or StageTimer()
        self.policies = {**default_policies(queue_size), **(policies or {})}
        self._queues: dict[Topic, deque[Outgoing]] = {t: deque() for t in self.policies}
        self._drops: dict[Topic, int] = dict.fromkeys(self.policies, 0)
        self._cond = threading.Condition()
        self._seq: dict[Topic, int] = {}
        self._thread = OwnedThread(self._run, "sender", wake=self._wake)
        self._log = RateLimitedLog(log, ERROR_LOG_INTERVAL_S)
        self.published = 0
        self.errors = 0
        self.sent = 0
        self.last_latency_ms: float | None = None
        # called on the sender thread with each message as sent (topic, data, osc): the show recorder
        self.tap: Callable[[Topic, dict[str, Any], Sequence[OscMessage]], None] | None = None

    @property
    def queue_drops(self) -> int:
        """Messages dropped from the queues, all topics."""
        with self._cond:
            return sum(self._drops.values())

    def pending(self, topic: Topic) -> list[Outgoing]:
        """The messages of `topic` waiting to be sent, oldest first."""
        with self._cond:
            return list(self._queues[topic])

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
        policy = self.policies[topic]
        with self._cond:
            seq = self._seq.get(topic, 0)
            self._seq[topic] = seq + 1
            queue = self._queues[topic]
            if policy.overflow is Overflow.LATEST:
                self._drops[topic] += len(queue)
                queue.clear()
            elif len(queue) >= policy.bound:
                queue.popleft()
                self._drops[topic] += 1
            item = Outgoing(topic, seq, time.time(), data or {}, tuple(osc), captured_at, blob, build, self.published)
            queue.append(item)
            self.published += 1
            self._cond.notify()
        return seq

    def start(self) -> None:
        self._thread.start()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _next_round(self, stop: threading.Event) -> list[Outgoing] | None:
        """One message from each topic that has any, in publish order (waits for one); None once stopped and
        drained."""
        with self._cond:
            while not any(self._queues.values()):
                if stop.is_set():
                    return None
                self._cond.wait(0.5)
            return sorted((q.popleft() for q in self._queues.values() if q), key=lambda item: item.order)

    def _run(self, stop: threading.Event) -> None:
        while (batch := self._next_round(stop)) is not None:
            for item in batch:
                self._send(item)

    def _send(self, item: Outgoing) -> None:
        start = time.perf_counter()
        try:
            data, osc = item.build() if item.build is not None else (item.data, item.osc)
            if self.tap is not None:
                self.tap(item.topic, data, osc)
            if self.osc is not None and osc:
                self.osc.send(osc)
            if self.zmq is not None and (data or item.blob is not None):
                body = json.dumps(envelope(item.topic, item.seq, item.t, data), separators=(",", ":"))
                parts = [item.topic.value.encode(), body.encode()]
                if item.blob is not None:
                    parts.append(item.blob)
                self.zmq.send(parts)
            self.sent += 1
        except Exception as exc:  # one bad message must not end the thread that every peer depends on
            self.errors += 1
            topic = item.topic.value
            self._log.error(topic, "sending a %s message failed (%d errors in all)", topic, self.errors, exc_info=exc)
        done = time.perf_counter()
        self.timer.add("send", (done - start) * 1000.0)
        if item.captured_at is not None:
            self.last_latency_ms = (time.monotonic() - item.captured_at) * 1000.0
            self.timer.add("latency", self.last_latency_ms)

    def stop(self, timeout: float = 2.0) -> bool:
        """Send what is queued (within `timeout`), end the thread, close the outputs; False when the thread
        did not end (its sockets are left open then: closing them under it would be worse)."""
        if not self._thread.stop(timeout):
            return False
        for out in (self.osc, self.zmq):
            if out is not None:
                out.close()
        return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            topics = {
                t.value: {
                    "depth": len(q),
                    "bound": self.policies[t].bound,
                    "policy": self.policies[t].overflow.value,
                    "drops": self._drops[t],
                }
                for t, q in self._queues.items()
            }
        return {
            "queue": {
                "depth": sum(t["depth"] for t in topics.values()),
                "size": self.queue_size,
                "drops": sum(t["drops"] for t in topics.values()),
                "topics": topics,
            },
            "published": self.published,
            "sent": self.sent,
            "errors": self.errors,
            "osc": self.osc.stats() if self.osc else None,
            "zmq": self.zmq.stats() if self.zmq else None,
        }
