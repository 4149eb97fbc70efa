"""OSC control input: `<prefix>/ctl/<name>` -> Controls (docs/design.md §7).

A python-osc BlockingOSCUDPServer on one explicit thread (owned by the app: `start()` / `stop()`), so
messages are handled in arrival order with no thread per datagram.

Robustness, checked against python-osc 1.8-1.10:
- the stock server drops datagrams that do not start like a message or bundle without a word; here
  they are counted as malformed;
- the stock dispatcher swallows ParseError silently, lets other decoding errors (e.g. a non-UTF-8
  address: UnicodeDecodeError) escape into socketserver's `handle_error` (a traceback on stderr per
  packet), and *sleeps in the server thread* until a bundle's future timetag — so one crafted packet
  could stall control for hours. `ControlDispatcher` parses each packet itself, counts every failure,
  ignores timetags (controls apply on the next frame anyway) and never raises;
- python-osc reads a value the datagram does not hold as zero (`/syn/ctl/speed ,f` with no float would
  set speed 0) and skips type tags it does not know with a root-logger warning per packet (a log flood):
  `packet_problem` checks every message's type tags against the bytes present first, so such packets
  are counted as malformed and never reach python-osc's parser;
- `handle_error` is overridden as a last line of defence: counted, logged rate-limited, serving goes on.

Only senders in the allow-list (`[osc] allow`, loopback by default) are heard: a datagram from anywhere
else is counted as refused and answered with nothing, so a spoofed source address buys no reply.

`<prefix>/ctl/query` (any arguments) replies with the full current state as one OSC bundle, one message
per value, sent from the control port to the datagram's source address; `<prefix>/ctl/query <port>`
replies to the sender's host at that port instead (TouchDesigner sends from an ephemeral port). With
`[osc] query_port` set, replies go to that port of the sender's host and nowhere else.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Any

from engine.deps import require
from engine.io.allow import LOOPBACK, SenderAllowList, exposure
from engine.io.control import ControlSurface, Outcome, flatten_state
from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.control")

_PARSE_ERRORS = (ValueError, IndexError, TypeError, struct.error, OverflowError)  # + python-osc's ParseErrors


def build_state_bundle(state: dict[str, Any], prefix: str) -> bytes:
    """The state as one OSC bundle (timetag: immediately) of one message per value."""
    osc_bundle_builder = require("pythonosc.osc_bundle_builder", "OSC control")
    osc_message_builder = require("pythonosc.osc_message_builder", "OSC control")
    bundle = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
    for address, args in flatten_state(state, prefix):
        msg = osc_message_builder.OscMessageBuilder(address=address)
        for a in args:
            msg.add_arg(a)
        bundle.add_content(msg.build())
    return bundle.build().dgram


class OscControlServer:
    """UDP OSC control server on (host, port); `start()` binds (errors surface there) and serves."""

    def __init__(
        self,
        surface: ControlSurface,
        host: str = "127.0.0.1",
        port: int = 9001,
        prefix: str = "/syn",
        allow: SenderAllowList | None = None,
        query_port: int | None = None,
    ) -> None:
        self.surface = surface
        self.host = host
        self.port = port
        self.allow = allow if allow is not None else SenderAllowList(LOOPBACK)
        self.query_port = query_port
        self.prefix = prefix.rstrip("/")
        self.ctl_prefix = f"{self.prefix}/ctl/"
        self.replies = 0
        self._server: Any = None
        self._thread = OwnedThread(self._serve, "osc-control")

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when 0 was asked for."""
        if self._server is None:
            return (self.host, self.port)
        return self._server.server_address[:2]

    def start(self) -> OscControlServer:
        osc_server = require("pythonosc.osc_server", "OSC control")
        dispatcher_mod = require("pythonosc.dispatcher", "OSC control")
        osc_packet = require("pythonosc.osc_packet", "OSC control")
        outer = self

        class ControlDispatcher(dispatcher_mod.Dispatcher):
            def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
                outer.handle_packet(data, client_address, osc_packet)
                return []

        class Server(osc_server.BlockingOSCUDPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                if super().verify_request(request, client_address):
                    return True
                outer.surface.count(Outcome.MALFORMED, _source(client_address), "not an OSC message or bundle")
                return False

            def handle_error(self, request: Any, client_address: Any) -> None:
                outer.surface.count(Outcome.MALFORMED, _source(client_address), "error while handling the packet")

        self._server = Server((self.host, self.port), ControlDispatcher(strict_timing=False))
        self._server.timeout = 0.2  # handle_request returns after this, so the thread sees its stop
        self._thread.start()
        log.debug("OSC control on %s:%d (%s*), senders allowed: %s", *self.address, self.ctl_prefix, self.allow)
        return self

    def _serve(self, stop: threading.Event) -> None:
        server = self._server
        while not stop.is_set():
            server.handle_request()
            self.surface.log.flush()  # "N more suppressed" lines once their interval is over

    def describe(self) -> str:
        host, port = self.address
        reply = f"; query replies to port {self.query_port}" if self.query_port else ""
        return f"OSC control on {host}:{port}, senders allowed: {self.allow}{reply}{exposure(host)}"

    def status(self) -> dict[str, Any]:
        host, port = self.address
        return {"kind": "osc", "address": f"{host}:{port}", "allow": str(self.allow), "serving": self._thread.alive}

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop serving and close the socket; False when the thread did not end (the socket stays open)."""
        if not self._thread.stop(timeout):
            return False
        if self._server is not None:
            self._server.server_close()
            self._server = None
        return True

    def __enter__(self) -> OscControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- packet handling (server thread) ---------------------------------------------------------------
    def handle_packet(self, data: bytes, client: tuple[str, int], osc_packet: Any) -> None:
        source = _source(client)
        if client[0] not in self.allow:
            self.surface.count(Outcome.REFUSED, source, f"sender not in osc.allow ({self.allow})")
            return
        problem = packet_problem(data)
        if problem:
            self.surface.count(Outcome.MALFORMED, source, problem)
            return
        try:
            messages = [m.message for m in osc_packet.OscPacket(data).messages]
        except (osc_packet.ParseError, *_PARSE_ERRORS) as exc:
            self.surface.count(Outcome.MALFORMED, source, f"unparseable packet ({exc})")
            return
        for msg in messages:
            self.handle_message(msg.address, list(msg.params), client)

    def handle_message(self, address: str, args: list[Any], client: tuple[str, int]) -> None:
        source = _source(client)
        if not address.startswith(self.ctl_prefix):
            self.surface.count(Outcome.UNKNOWN, source, f"address {address!r} is not under {self.ctl_prefix}")
            return
        name = address[len(self.ctl_prefix) :]
        outcome, _ = self.surface.apply(name, tuple(args), source=source)
        if outcome is Outcome.QUERY:
            self.reply_state(client, args)

    def reply_state(self, client: tuple[str, int], args: list[Any]) -> None:
        host, port = client[0], client[1]
        if self.query_port is not None:
            port = self.query_port
        elif len(args) == 1 and isinstance(args[0], int) and not isinstance(args[0], bool) and 0 < args[0] < 65536:
            port = args[0]
        osc_types = require("pythonosc.parsing.osc_types", "OSC control")
        try:
            dgram = build_state_bundle(self.surface.state(), self.prefix)
            self._server.socket.sendto(dgram, (host, port))
            self.replies += 1
        except (OSError, osc_types.BuildError) as exc:
            self.surface.log.warning("reply", "cannot reply to %s:%d: %s", host, port, exc)


_BUNDLE = b"#bundle\x00"


def packet_problem(data: bytes, depth: int = 0) -> str | None:
    """Why a packet breaks OSC 1.0 framing (None if the framing is sound; the values are checked later).

    - an OSC packet's size is a multiple of 4; python-osc reads a truncated last float as if zero-padded,
      so a cut-off value would be applied: refused here;
    - a message whose type tags promise more data than it holds, or a type tag python-osc does not
      read (it would skip it with a root-logger warning and shift the arguments): refused here;
    - python-osc skips bundle elements it cannot identify with a root-logger warning per element, which a
      hostile sender turns into unbounded log output: refused here.
    """
    if len(data) % 4:
        return f"packet of {len(data)} bytes (OSC packets are a multiple of 4 bytes): truncated"
    if not data.startswith(_BUNDLE):
        return message_problem(data)
    if depth > 8:
        return "bundles nested too deep"
    index = 16  # "#bundle\0" + 8-byte timetag
    if len(data) < index:
        return "truncated bundle header"
    while index < len(data):
        if index + 4 > len(data):
            return "truncated bundle element size"
        (size,) = struct.unpack(">i", data[index : index + 4])
        index += 4
        element = data[index : index + size]
        if size <= 0 or len(element) != size:
            return f"bundle element of {size} bytes does not fit the packet"
        if element.startswith(_BUNDLE):
            nested = packet_problem(element, depth + 1)
        elif element.startswith(b"/"):
            nested = message_problem(element) if size % 4 == 0 else f"bundle element of {size} bytes: truncated"
        else:
            return "bundle element is neither a message nor a bundle"
        if nested:
            return nested
        index += size
    return None


# Bytes each argument type takes (OSC 1.0 and the extensions python-osc reads); s and b are sized apart.
_FIXED_SIZE = {"i": 4, "f": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8, "T": 0, "F": 0, "N": 0, "[": 0, "]": 0}


def _string_end(data: bytes, index: int) -> int | None:
    """Index after the padded, NUL-terminated OSC string at `index` (None when it is not terminated)."""
    nul = data.find(b"\x00", index)
    if nul < 0:
        return None
    return (nul + 4) & ~3


def message_problem(data: bytes) -> str | None:
    """Why one OSC message's framing is broken: its type tags promise data the message does not hold."""
    end = _string_end(data, 0)
    if end is None or end > len(data):
        return "address not terminated"
    if end == len(data):
        return None  # no type tag string: a message without arguments
    if data[end : end + 1] != b",":
        return "type tag string does not start with ','"
    tags_end = _string_end(data, end)
    if tags_end is None or tags_end > len(data):
        return "type tags not terminated"
    tags = data[end + 1 : data.index(b"\x00", end)]
    index = tags_end
    for code in tags:
        tag = chr(code)
        if tag in _FIXED_SIZE:
            index += _FIXED_SIZE[tag]
        elif tag == "s":
            after = _string_end(data, index)
            if after is None:
                return "a string argument is not terminated"
            index = after
        elif tag == "b":
            if index + 4 > len(data):
                return "a blob's size is missing"
            (size,) = struct.unpack(">i", data[index : index + 4])
            if size < 0:
                return f"a blob of {size} bytes"
            index += 4 + ((size + 3) & ~3)
        else:
            return f"unsupported type tag {tag!r}"
        if index > len(data):
            shown = tags.decode("ascii", "replace")
            return f"type tags {shown!r} need more data than the {len(data)}-byte message holds"
    return None


def _source(client: Any) -> str:
    try:
        return f"{client[0]}:{client[1]}"
    except (TypeError, IndexError):
        return str(client)


def send_control(host: str, port: int, name: str, *args: Any, prefix: str = "/syn") -> None:
    """Send one control message (a tiny client for scripts and tests)."""
    osc_message_builder = require("pythonosc.osc_message_builder", "OSC control")
    msg = osc_message_builder.OscMessageBuilder(address=f"{prefix}/ctl/{name}")
    for a in args:
        msg.add_arg(a)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(msg.build().dgram, (host, port))
