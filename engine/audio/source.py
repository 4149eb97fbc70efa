"""The `Source` interface every audio source implements, and its `SourceState`.

A source writes mono float32 audio at the ring's rate into the engine's RingBuffer from a thread it owns:
`start()`, `stop()`, `state`, `status()`, `reset()`. The kinds live in engine/audio/sources.py (file,
synth, `open_source`) and engine/audio/mic.py (the microphone).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any

from engine.audio.ringbuffer import RingBuffer
from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.audio")


class SourceState(Enum):
    STOPPED = "stopped"
    STARTING = "starting"  # started, no audio yet
    RUNNING = "running"
    STALLED = "stalled"  # open, but no audio arrived for `stall_s`
    LOST = "lost"  # the device is gone; reopening every `reconnect_s`
    ENDED = "ended"  # a file that does not loop has been played to its end


class Source(ABC):
    """Writes mono float32 audio at the ring's rate into `ring` from a thread it owns."""

    kind = "source"

    def __init__(self, ring: RingBuffer, name: str) -> None:
        self.ring = ring
        self.name = name
        self._state = SourceState.STOPPED
        self._thread = OwnedThread(self._guarded_run, f"source-{self.kind}")
        self.errors = 0
        self.last_error: str | None = None

    @property
    def state(self) -> SourceState:
        return self._state

    def _set_state(self, state: SourceState) -> None:
        if state is not self._state:
            log.info("source %s: %s -> %s", self.name, self._state.value, state.value)
            if state is SourceState.RUNNING:
                self.last_error = None  # the current problem only; `errors` (and a mic's `outages`) keep count
            self._state = state

    def start(self) -> None:
        """Start the thread (a no-op while it runs)."""
        if self._thread.alive:
            return
        self._set_state(SourceState.STARTING)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop the thread and release the device; False when the thread did not end (nothing is released
        under it then, and `start()` refuses until it has ended)."""
        if not self._thread.stop(timeout):
            return False
        self._close()
        self._set_state(SourceState.STOPPED)
        return True

    def _guarded_run(self, stop: threading.Event) -> None:
        try:
            self._run(stop)
        except Exception as exc:  # a crashed source must show in status, not vanish
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("source %s failed", self.name)
            self._set_state(SourceState.LOST)

    @abstractmethod
    def _run(self, stop: threading.Event) -> None:
        """The thread's work until `stop` is set (or the content ends)."""

    def _close(self) -> None:  # noqa: B027 - optional hook: most sources hold nothing to release
        """Release what the thread opened (after it has stopped)."""

    def reset(self) -> None:
        """Back to the beginning of the content and counters (call while stopped)."""
        self.errors = 0
        self.last_error = None

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "state": self._state.value,
            "errors": self.errors,
            "last_error": self.last_error,
        }
