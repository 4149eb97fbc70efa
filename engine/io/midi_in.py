"""MIDI input: an rtmidi port (ALSA or JACK) feeding the `MidiHandler`, and `synesthesia midi list|learn`.

`MidiInput` owns one rtmidi client and one `OwnedThread` (`midi-in`). Messages arrive on rtmidi's own
callback thread, are parsed by mido and handed to the handler (engine/io/midi_map.py), which applies them
through the shared `ControlSurface`: nothing here ever waits on the render loop or the other way round.
The thread only supervises: it opens the port (a name substring, an index, the first input, or a
virtual input named `virtual_name`), notices when the port vanishes from the port list (a controller
unplugged, the sending program quit, the JACK server gone), says so in one operator line, and tries
again with a doubling backoff (`retry_min_s` .. `retry_max_s`) until the port is back, when it says so
again. It also lets the handler restore `speed` when the MIDI clock goes quiet. The show goes on
without MIDI meanwhile.

mido and python-rtmidi are the optional `midi` extra, imported only when MIDI is asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from engine.console import say
from engine.deps import require
from engine.io.control import ControlSurface
from engine.io.midi_map import MidiApi, MidiHandler, MidiSettings, learn_block
from engine.ratelog import RateLimitedLog
from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.midi")

CLIENT_NAME = "Synesthesia"
POLL_S = 0.25  # how often the supervisor looks at the port list and the clock
ALSA_SEQ = "/dev/snd/seq"


class MidiUnavailableError(RuntimeError):
    """The MIDI system (ALSA sequencer, JACK server) cannot be reached, or no port matches."""


def rtmidi_api(api: MidiApi) -> tuple[int, str]:
    """(rtmidi API constant, its name) for the configured API."""
    rtmidi = require("rtmidi", "MIDI input")
    if api is MidiApi.ALSA:
        return rtmidi.API_LINUX_ALSA, "alsa"
    if api is MidiApi.JACK:
        return rtmidi.API_UNIX_JACK, "jack"
    if sys.platform.startswith("linux"):
        # the ALSA sequencer needs /dev/snd/seq; without it (containers) JACK is the only way in
        return (rtmidi.API_LINUX_ALSA, "alsa") if os.path.exists(ALSA_SEQ) else (rtmidi.API_UNIX_JACK, "jack")
    return rtmidi.API_UNSPECIFIED, "default"


def open_client(api: MidiApi, name: str = CLIENT_NAME) -> tuple[Any, str]:
    """A new rtmidi.MidiIn on the API; MidiUnavailableError (one readable line) when the system is absent."""
    rtmidi = require("rtmidi", "MIDI input")
    require("mido", "MIDI input")
    from engine.audio.native_stderr import NativeStderr

    const, api_name = rtmidi_api(api)
    try:
        with NativeStderr(logger=log).capture(f"MIDI {api_name}"):  # JACK's "cannot connect" lines
            client = rtmidi.MidiIn(const, name)
    except rtmidi.RtMidiError as exc:
        hint = " (is a JACK server running?)" if api_name == "jack" else ""
        raise MidiUnavailableError(f"MIDI system {api_name} unavailable: {exc}{hint}") from exc
    return client, api_name


def select_port(names: Sequence[str], port: int | str | None) -> int:
    """Index of the wanted port in `names`; MidiUnavailableError naming what is there when none fits."""
    there = ", ".join(repr(n) for n in names) or "none"
    if isinstance(port, int):
        if 0 <= port < len(names):
            return port
        raise MidiUnavailableError(f"no MIDI input port {port} (ports: {there})")
    if port is None or port == "":
        if names:
            return 0
        raise MidiUnavailableError("no MIDI input port")
    for i, name in enumerate(names):
        if port.lower() in name.lower():
            return i
    raise MidiUnavailableError(f"no MIDI input port matching {port!r} (ports: {there})")


def list_ports(api: MidiApi = MidiApi.AUTO) -> tuple[list[str], str]:
    client, api_name = open_client(api, f"{CLIENT_NAME} list")
    try:
        return list(client.get_ports()), api_name
    finally:
        client.delete()


class MidiInput:
    """The MIDI stage's port side: open, watch, reopen; `start()` / `stop() -> bool` / `status()`."""

    def __init__(self, settings: MidiSettings, surface: ControlSurface, poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.handler = MidiHandler(settings, surface)
        self.poll_s = poll_s
        self.api_name = ""
        self.port_name: str | None = None  # the port open now
        self.state = "stopped"  # connecting | open | lost | stopped
        self.opens = 0
        self.outages = 0
        self.last_error: str | None = None
        self._client: Any = None
        self._mido: Any = None
        self._lock = threading.Lock()
        self._thread = OwnedThread(self._supervise, "midi-in")
        self._delay = settings.retry_min_s
        self._next_try = 0.0
        self._log = RateLimitedLog(log, 30.0)

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> MidiInput:
        """Import the extra (MissingDependencyError naming `synesthesia[midi]`), then supervise in a thread."""
        require("rtmidi", "MIDI input")
        self._mido = require("mido", "MIDI input")
        _const, self.api_name = rtmidi_api(self.settings.api)
        self.state = "connecting"
        self._delay = self.settings.retry_min_s
        self._attempt(time.monotonic())  # the first try here, so the startup line names the open port
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        stopped = self._thread.stop(timeout)
        self._close(delete=True)
        self.state = "stopped"
        return stopped

    @property
    def wanted(self) -> str:
        s = self.settings
        if s.virtual:
            return f"virtual input {s.virtual_name!r}"
        return "the first MIDI input" if s.port in (None, "") else f"MIDI input {s.port!r}"

    def describe(self) -> str:
        s = self.settings
        where = self.port_name if self.state == "open" else f"waiting for {self.wanted}"
        clock = f", clock -> speed at {s.reference_bpm:g} BPM" if s.clock else ""
        return f"MIDI in ({self.api_name}) on {where}: {len(s.map)} mappings{clock}"

    def status(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "kind": "midi",
                "api": self.api_name,
                "state": self.state,
                "port": self.port_name,
                "serving": self._thread.alive,
                "opens": self.opens,
                "outages": self.outages,
                "last_error": self.last_error,
            }
        out.update(self.handler.status())
        return out

    # --- the port --------------------------------------------------------------------------------------
    def _on_message(self, event: tuple[list[int], float], _data: object = None) -> None:
        """rtmidi's callback thread: parse and hand on; nothing raised here may reach the C side."""
        now = time.monotonic()
        try:
            msg = self._mido.Message.from_bytes(event[0])
        except (ValueError, TypeError, IndexError) as exc:
            self.handler.counters.errors += 1
            self._log.warning("midi parse", "MIDI message %r not understood: %s", event[0][:8], exc)
            return
        try:
            self.handler.handle(msg, now)
        except Exception as exc:  # a handler bug must not kill rtmidi's thread; counted, logged, survived
            self.handler.counters.errors += 1
            self._log.error("midi handler", "MIDI message %s failed: %s", msg, exc, exc_info=exc)

    def _open(self) -> str:
        s = self.settings
        if self._client is None:
            self._client, self.api_name = open_client(s.api)
            # sysex and active sensing are noise here; timing (clock) only when the clock is used
            self._client.ignore_types(sysex=True, timing=not s.clock, active_sense=True)
            self._client.set_callback(self._on_message)
        if s.virtual:
            self._client.open_virtual_port(s.virtual_name)
            return s.virtual_name
        names = self._client.get_ports()
        index = select_port(names, s.port)
        self._client.open_port(index, "in")
        return names[index]

    def _close(self, delete: bool = False) -> None:
        with self._lock:
            client, self.port_name = self._client, None
            if delete:
                self._client = None
        if client is None:
            return
        try:
            client.close_port()
            if delete:
                client.cancel_callback()
                client.delete()
        except Exception as exc:  # an rtmidi error while closing a dead port: it is closed either way
            log.debug("closing MIDI port: %s", exc)

    def _vanished(self) -> bool:
        if self.settings.virtual or self.port_name is None:
            return False
        try:
            return self.port_name not in self._client.get_ports()
        except Exception as exc:  # rtmidi error: the MIDI system itself went away
            log.debug("listing MIDI ports: %s", exc)
            return True

    def _attempt(self, now: float) -> None:
        """One try at opening the port; on failure one line per new problem and the next try backed off."""
        try:
            name = self._open()
        except Exception as exc:  # MidiUnavailableError, or rtmidi's own error types
            why = str(exc) or type(exc).__name__
            if self.last_error != why:  # one line per new problem, not one per retry
                say(f"MIDI: {why}; retrying (up to every {self.settings.retry_max_s:g} s), the show goes on")
            self.last_error = why
            if self._client is not None and not isinstance(exc, MidiUnavailableError):
                self._close(delete=True)  # a broken client: start afresh next time
            self._next_try = now + self._delay
            self._delay = min(self._delay * 2, self.settings.retry_max_s)
            return
        with self._lock:
            self.port_name, self.state = name, "open"
            self.opens += 1
        if self.last_error is not None:
            say(f"MIDI input {name!r} open")
        log.info("MIDI input %r open", name)
        self.last_error = None
        self._delay = self.settings.retry_min_s

    def _supervise(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            if self.state != "open" and now >= self._next_try:
                self._attempt(now)
            elif self.state == "open" and self._vanished():
                lost = self.port_name
                self._close(delete=True)
                with self._lock:
                    self.state = "lost"
                    self.outages += 1
                self.last_error = f"MIDI input {lost!r} vanished"
                say(f"{self.last_error}; retrying (up to every {self.settings.retry_max_s:g} s), the show goes on")
                self._next_try = now + self._delay
            self.handler.idle(now)
            stop.wait(self.poll_s)


# --- `synesthesia midi list | learn` ------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> MidiSettings:
    from engine.config import load_config

    cfg = load_config(getattr(args, "config", None))
    s = cfg.midi
    update: dict[str, Any] = {}
    if getattr(args, "api", None):
        update["api"] = MidiApi(args.api)
    if getattr(args, "port", None) is not None:
        update["port"] = int(args.port) if args.port.isdigit() else args.port
    if getattr(args, "virtual", False):
        update["virtual"] = True
    return s.model_copy(update=update)


def _list(args: argparse.Namespace) -> int:
    try:
        names, api_name = list_ports(_settings(args).api)
    except MidiUnavailableError as exc:
        say(str(exc))
        return 1
    if not names:
        say(f"no MIDI input ports ({api_name})")
        return 0
    for i, name in enumerate(names):
        print(f"{i:3d}  {name}")
    return 0


def _learn(args: argparse.Namespace) -> int:
    s = _settings(args)
    mido = require("mido", "MIDI input")
    got: queue.Queue[Any] = queue.Queue()

    def on_message(event: tuple[list[int], float], _data: object = None) -> None:
        try:
            got.put(mido.Message.from_bytes(event[0]))
        except (ValueError, TypeError, IndexError):
            return

    try:
        client, _api = open_client(s.api, f"{CLIENT_NAME} learn")
    except MidiUnavailableError as exc:
        say(str(exc))
        return 1
    try:
        client.ignore_types(sysex=True, timing=True, active_sense=True)
        client.set_callback(on_message)
        if s.virtual:
            client.open_virtual_port(s.virtual_name)
            name = s.virtual_name
        else:
            names = client.get_ports()
            try:
                index = select_port(names, s.port)
            except MidiUnavailableError as exc:
                say(str(exc))
                return 1
            client.open_port(index, "learn")
            name = names[index]
        say(f"learning from {name!r}: move a fader or press a pad (waiting {args.timeout:g} s)")
        deadline = time.monotonic() + args.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = got.get(timeout=left)
            except queue.Empty:
                break
            block = learn_block(msg, args.control)
            if block is not None:
                print(block, flush=True)
                return 0
        say(f"no CC or note arrived within {args.timeout:g} s")
        return 1
    finally:
        client.close_port()
        client.delete()


def run_midi(args: argparse.Namespace) -> int:
    match args.midi_command:
        case "list":
            return _list(args)
        case "learn":
            return _learn(args)
    raise AssertionError(args.midi_command)
