"""OSC over UDP to one or more targets (python-osc builds the datagrams; one non-blocking socket sends them).

A target that does not resolve, refuses (ICMP port unreachable surfaces as ConnectionRefusedError on some
systems) or whose socket buffer is full costs a counted error, never an exception or a wait. Unresolved
hosts are looked up again every `RESOLVE_RETRY_S`, so a TouchDesigner machine that boots after the engine is
found. Broadcast addresses work (SO_BROADCAST is set).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import parse_hostport
from engine.deps import require
from engine.io.schema import OscMessage

log = logging.getLogger("synesthesia.osc")

RESOLVE_RETRY_S = 5.0


@dataclass
class _Target:
    host: str
    port: int
    addr: tuple[Any, ...] | None = None
    family: int = socket.AF_INET
    next_resolve: float = 0.0
    sent: int = 0
    errors: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class OscOut:
    """Sends lists of (address, args) to every target. Used by one thread (the sender)."""

    def __init__(self, targets: Sequence[str]) -> None:
        self._builder = require("pythonosc.osc_message_builder", "OSC output").OscMessageBuilder
        self.targets = [_Target(*parse_hostport(t)) for t in targets]
        self._sockets: dict[int, socket.socket] = {}
        self.messages = 0

    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self._sockets[family] = sock
        return sock

    def _resolve(self, t: _Target, now: float) -> bool:
        if t.addr is not None:
            return True
        if now < t.next_resolve:
            return False
        try:
            family, _, _, _, addr = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            t.next_resolve = now + RESOLVE_RETRY_S
            self._error(t, f"cannot resolve: {exc}")
            return False
        t.addr, t.family = addr, family
        return True

    def _error(self, t: _Target, what: str) -> None:
        t.errors += 1
        if what != t.last_error:  # log each new kind of failure once, count the rest
            log.warning("OSC target %s: %s", t.name, what)
        t.last_error = what

    def encode(self, address: str, args: tuple[Any, ...]) -> bytes:
        b = self._builder(address=address)
        for a in args:
            b.add_arg(a)
        return b.build().dgram

    def send(self, messages: Sequence[OscMessage]) -> None:
        if not self.targets or not messages:
            return
        dgrams = [self.encode(addr, args) for addr, args in messages]
        now = time.monotonic()
        for t in self.targets:
            if not self._resolve(t, now):
                continue
            sock = self._socket(t.family)
            for d in dgrams:
                try:
                    sock.sendto(d, t.addr)
                    t.sent += 1
                except OSError as exc:  # refused, unreachable, buffer full: count, go on
                    self._error(t, f"{type(exc).__name__}: {exc}")
        self.messages += len(dgrams)

    def stats(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "targets": {t.name: {"sent": t.sent, "errors": t.errors, "last_error": t.last_error} for t in self.targets},
        }

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
