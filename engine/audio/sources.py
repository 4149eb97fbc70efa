"""Audio sources that fill the engine's RingBuffer (mono float32, 22050 Hz) from their own thread.

- `MicSource`: a PortAudio input stream opened at the device's own rate; the callback only copies into a
  native-rate ring; a pump thread resamples (soxr, streaming) into the engine ring and watches the stream:
  an error/finished callback or no data for `stall_s` means the device is gone, and it is reopened every
  `reconnect_s` until it returns.
- `FileSource`: a decoded file, paced in real time (optionally looping) or free-running (as fast as the
  window reader consumes it, so no window is skipped).
- `SynthSource`: procedural emotional audio (`synth:<class>[:speech|music]`) for demos, paced in real time.

Every source has the same small interface (`engine.audio.source.Source`): `start()`, `stop()`, `state`,
`status()`, `reset()`. `open_source(spec)` picks the kind.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio.mic import MicSource
from engine.audio.ringbuffer import RingBuffer
from engine.audio.source import Source, SourceState
from engine.errors import ConfigError

log = logging.getLogger("synesthesia.audio")

SAMPLE_RATE = 22050


class PacedSource(Source):
    """Produces blocks from `_produce(n)`; in real time (clocked) or free-running (throttled by the reader)."""

    def __init__(self, ring: RingBuffer, name: str, block: int, realtime: bool = True, ahead: int | None = None):
        super().__init__(ring, name)
        self.block = max(1, int(block))
        self.realtime = realtime
        self.ahead = max(self.block, int(ahead or self.block))
        self.resyncs = 0

    @abstractmethod
    def _produce(self, n: int) -> np.ndarray | None:
        """The next n samples (fewer at the end of a file); None when there are no more."""

    def _run(self, stop: threading.Event) -> None:
        period = self.block / self.ring.sample_rate
        next_t = time.monotonic()
        self._set_state(SourceState.RUNNING)
        while not stop.is_set():
            if self.realtime:
                wait = next_t - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
                if time.monotonic() - next_t > 1.0:  # starved of CPU for a second: resync, do not burst
                    next_t = time.monotonic()
                    self.resyncs += 1
            elif not self.ring.wait_room(self.ahead, timeout=0.1):
                continue
            x = self._produce(self.block)
            if x is None:
                self._set_state(SourceState.ENDED)
                return
            self.ring.write(x)
            next_t += x.shape[0] / self.ring.sample_rate if x.shape[0] else period


class FileSource(PacedSource):
    kind = "file"

    def __init__(
        self,
        ring: RingBuffer,
        path: str | Path,
        block: int,
        realtime: bool = True,
        loop: bool = True,
        ahead: int | None = None,
    ) -> None:
        from engine.audio.loading import load_audio

        super().__init__(ring, str(path), block, realtime, ahead)
        self.audio = load_audio(path, ring.sample_rate)
        self.loop = loop
        self._pos = 0
        self.loops = 0

    def _produce(self, n: int) -> np.ndarray | None:
        if self._pos >= self.audio.shape[0]:
            if not self.loop:
                return None
            self._pos = 0
            self.loops += 1
        x = self.audio[self._pos : self._pos + n]
        self._pos += x.shape[0]
        return x

    def reset(self) -> None:
        super().reset()
        self._pos = 0
        self.loops = 0

    def status(self) -> dict[str, Any]:
        return {**super().status(), "position_s": round(self._pos / self.ring.sample_rate, 3), "loops": self.loops}


class SynthSource(PacedSource):
    """Procedural demo audio from engine.audio.synth (`SynthStream`), always real time."""

    kind = "synth"

    def __init__(self, ring: RingBuffer, spec: str, block: int, seed: int = 0) -> None:
        from engine.audio.synth import SynthStream, SynthTour

        emotion, _, kind = spec.partition(":")
        super().__init__(ring, f"synth:{spec}", block, realtime=True)
        kind = kind or "speech"
        if kind not in ("speech", "music"):
            raise ValueError(f"the synth kind must be speech or music, got {kind!r}")
        self.stream: SynthStream | SynthTour
        if emotion == "tour":
            self.stream = SynthTour(kind=kind, sample_rate=ring.sample_rate, seed=seed)
        else:
            self.stream = SynthStream(emotion or "neutral", kind=kind, sample_rate=ring.sample_rate, seed=seed)

    def _produce(self, n: int) -> np.ndarray:
        return self.stream.read(n)

    def status(self) -> dict[str, Any]:
        from engine.audio.synth import SynthTour

        out = super().status()
        if isinstance(self.stream, SynthTour):
            out["tour_emotion"] = self.stream.emotion  # what the demo voice is playing now
        return out

    def reset(self) -> None:
        super().reset()
        self.stream.reset()


def mic_available() -> str | None:
    """None when PortAudio works and lists at least one input; otherwise why not (one line)."""
    from engine.audio.devices import NoInputDeviceError, find_input
    from engine.errors import MissingDependencyError

    try:
        find_input(None)
    except MissingDependencyError:
        return "PortAudio is not available"
    except NoInputDeviceError:
        return "no audio input device found"
    return None


def open_source(
    spec: str,
    ring: RingBuffer,
    *,
    block_ms: float = 20.0,
    hop: int | None = None,
    realtime: bool = True,
    loop: bool = True,
    reconnect_s: float = 2.0,
    stall_s: float = 2.0,
) -> Source:
    """A source for `mic`, `mic:NAME_OR_INDEX`, `file:PATH` or `synth:CLASS|tour[:speech|music]` (not started)."""
    kind, _, value = spec.partition(":")
    block = max(1, round(ring.sample_rate * block_ms / 1000.0))
    if kind == "replay":
        from engine.replay import ReplaySource

        return ReplaySource(ring, value)
    if kind == "mic":
        device: str | int | None = int(value) if value.isdigit() else (value or None)
        return MicSource(ring, device, block_ms=block_ms, reconnect_s=reconnect_s, stall_s=stall_s)
    if kind == "file":
        return FileSource(ring, value, block, realtime=realtime, loop=loop, ahead=hop)
    if kind == "synth":
        try:
            return SynthSource(ring, value or "neutral", block)
        except ValueError as exc:
            raise ConfigError(f"audio.source: {spec!r}: {exc}") from exc
    raise ConfigError(f"audio.source: unknown source {spec!r}; use mic, mic:NAME, file:PATH or synth:CLASS[:music]")
