"""Record a show and play it back (`synesthesia run --record DIR`, `--source replay:DIR`).

A recording is `DIR/show.jsonl`, one JSON object per line, never audio:

    {"k": "header", "v": 1, "engine": "0.1.0", "bundle": NAME, "digest": ..., "started": ISO-8601, "prefix": "/syn"}
    {"k": "msg", "t": 1.234, "topic": "emotion"|"audio", "data": {...}, "osc": [[ADDRESS, [ARGS...]], ...]}
    {"k": "controls", "t": 2.5, "controls": {...}}        the operator's controls, when they change
    {"k": "source", "t": 9.1, "state": "lost"}            the source's state, when it changes

`t` is seconds since the recording started. `msg` lines are what the sender sent, as sent: the ZeroMQ JSON
(emotion states with probabilities, valence/arousal and the shared vector; audio features) and the OSC
messages, so a replay re-sends the same stream in the same order and the render loop walks the same states.

The recorder never blocks the show: lines go through a bounded queue (`QUEUE_LINES`; when full the newest
line is dropped and counted) to a writer thread that flushes at least every `FLUSH_S`, so a crash loses at
most that much. A directory that cannot be written is one line for the operator; the show goes on unrecorded.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.state import EmotionState, StateKind
from engine.audio.features import AudioFrame
from engine.audio.ringbuffer import RingBuffer
from engine.audio.source import Source, SourceState
from engine.console import say
from engine.errors import ConfigError
from engine.io.schema import OscMessage, Topic
from engine.threads import OwnedThread

log = logging.getLogger("synesthesia.replay")

FORMAT = 1
FILE = "show.jsonl"
QUEUE_LINES = 10_000  # ~5 minutes of audio features and states at the default rates
FLUSH_S = 0.5
RECORDED = frozenset({Topic.EMOTION, Topic.AUDIO})  # status and frames are not part of a recording


class Recorder:
    """Stage: `message(topic, data, osc)` (sender thread), `event(kind, **fields)` (any thread); `close()`."""

    def __init__(self, directory: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(directory) / FILE
        self.written = 0
        self.dropped = 0
        self.error: str | None = None
        self._t0 = time.monotonic()
        self._lines: deque[str] = deque()
        self._cond = threading.Condition()
        self._file = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - owned by the writer thread
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            say(f"cannot record to {self.path.parent} ({self.error}); the show goes on unrecorded")
            return
        self._put({"k": "header", "v": FORMAT, **header, "started": datetime.now(UTC).isoformat()})
        self._thread = OwnedThread(self._write, "recorder", wake=self._wake)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._file is not None and self.error is None

    def _put(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        with self._cond:
            if len(self._lines) >= QUEUE_LINES:
                self.dropped += 1  # the writer is behind (a stalled disk): the newest is dropped, counted
                return
            self._lines.append(line)
            self._cond.notify()

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 6)

    def message(self, topic: Topic, data: dict[str, Any], osc: Sequence[OscMessage]) -> None:
        """One sent message (called by the sender after building it)."""
        if not self.active or topic not in RECORDED:
            return
        self._put(
            {"k": "msg", "t": self._now(), "topic": topic.value, "data": data, "osc": [[a, list(v)] for a, v in osc]}
        )

    def event(self, kind: str, **fields: Any) -> None:
        if self.active:
            self._put({"k": kind, "t": self._now(), **fields})

    def control(self, name: str, args: Sequence[Any], outcome: Any, source: str, error: str | None) -> None:
        """One control message as it arrived (`ControlSurface.on_event`: any server's thread), with what it did:
        the lines say who moved what, beside the `controls` snapshots replay applies."""
        if self.active:
            line: dict[str, Any] = {"name": name, "args": [_plain(a) for a in args], "outcome": str(outcome.value)}
            self.event("control", **line, surface=source, **({"error": error} if error else {}))

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _write(self, stop: threading.Event) -> None:
        assert self._file is not None
        while True:
            with self._cond:
                if not self._lines and not stop.is_set():
                    self._cond.wait(FLUSH_S)
                batch = list(self._lines)
                self._lines.clear()
                # read with the queue drained: a stop asked for after this still gets one more pass, so lines
                # queued while the last batch was being written are not lost at close
                stopping = stop.is_set()
            try:
                if batch:
                    self._file.write("\n".join(batch) + "\n")
                    self.written += len(batch)
                self._file.flush()
            except OSError as exc:  # a full disk: say it once, stop recording, keep the show
                self.error = f"{type(exc).__name__}: {exc}"
                say(f"recording to {self.path} stopped ({self.error}); the show goes on unrecorded")
                return
            if stopping:
                return

    def close(self) -> None:
        if self._file is None:
            return
        self._thread.stop(5.0)
        try:
            self._file.close()
        except OSError as exc:
            log.warning("closing %s: %s", self.path, exc)
        self._file = None

    def status(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "dropped": self.dropped, "error": self.error}


def _plain(value: Any) -> Any:
    """A control argument as JSON keeps it: numbers, strings, bools and None as they are, anything else (and
    NaN/inf, which strict JSON has no words for) as its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return repr(value)[:200]


def read_recording(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, lines in time order). ConfigError for a missing, empty or newer-format recording; a damaged
    line in the middle is reported (counted in the log) and skipped."""
    path = Path(directory) / FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"audio.source: replay:{directory}: cannot read {path} ({exc.strerror or exc})") from exc
    header: dict[str, Any] | None = None
    lines: list[dict[str, Any]] = []
    bad = 0
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict) or not isinstance(obj.get("k"), str):
                raise ValueError("not a recording line")
            if obj["k"] != "header" and not math.isfinite(float(obj["t"])):
                raise ValueError("no time")
        except (ValueError, KeyError, TypeError):
            bad += 1
            log.warning("%s:%d: damaged line skipped", path, number)
            continue
        if obj["k"] == "header":
            header = obj
        else:
            lines.append(obj)
    if header is None:
        raise ConfigError(f"audio.source: replay:{directory}: {path} has no header line (not a recording)")
    if int(header.get("v", 0)) > FORMAT:
        raise ConfigError(f"audio.source: replay:{directory}: format {header.get('v')} is newer than this engine's")
    if bad:
        say(f"replay {path}: {bad} damaged line(s) skipped")
    lines.sort(key=lambda o: float(o["t"]))  # stable: equal times keep the order they were written in
    return header, lines


def state_from_json(data: dict[str, Any], captured_at: float) -> EmotionState | None:
    """The EmotionState an emotion message describes (None for a bare state message)."""
    if "probs" not in data:
        return None
    classes = tuple(data["probs"])
    return EmotionState(
        classes=classes,
        label=data.get("label"),
        probs=np.asarray([data["probs"][c] for c in classes], dtype=np.float32),
        confidence=float(data.get("confidence", 0.0)),
        valence=float(data.get("valence", 0.0)),
        arousal=float(data.get("arousal", 0.0)),
        embedding=np.asarray(data.get("embedding", []), dtype=np.float32),
        shared=np.asarray(data.get("shared", []), dtype=np.float32),
        state=StateKind(data.get("state", "listening")),
        t=float(data.get("audio_t", 0.0)),
        hop=int(data.get("hop", 0)),
        silent=bool(data.get("silent", False)),
        raw_label=data.get("raw_label"),
        rms_db=float(data.get("rms_db", -120.0)),
        captured_at=captured_at,
    )


def frame_from_json(data: dict[str, Any]) -> AudioFrame:
    """An AudioFrame from an audio message (the fields it carries; the rest at their defaults)."""
    names = AudioFrame.__dataclass_fields__
    return AudioFrame(
        **{"rms": 0.0, "onset": 0.0, "centroid": 0.0} | {k: float(v) for k, v in data.items() if k in names}
    )


class ReplaySource(Source):
    """`replay:DIR[?speed=S][&loop=1]`: re-emits a recording at its recorded times through `on_line`."""

    kind = "replay"

    def __init__(self, ring: RingBuffer, spec: str) -> None:
        directory, _, query = spec.partition("?")
        super().__init__(ring, f"replay:{spec}")
        self.speed, self.loop = 1.0, False
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            if key == "speed":
                try:
                    self.speed = float(value)
                except ValueError:
                    self.speed = float("nan")
                if not (math.isfinite(self.speed) and self.speed > 0):
                    raise ConfigError(f"audio.source: replay speed must be a positive number, got {value!r}")
            elif key == "loop":
                self.loop = value not in ("0", "false", "no")
            else:
                raise ConfigError(f"audio.source: unknown replay option {key!r} (speed, loop)")
        self.header, self.lines = read_recording(directory)
        self.on_line: Callable[[dict[str, Any]], None] = lambda _line: None
        self.played = 0
        self.loops = 0

    def _run(self, stop: threading.Event) -> None:
        self._set_state(SourceState.RUNNING)
        while not stop.is_set():
            start = time.monotonic()
            for line in self.lines:
                due = start + float(line["t"]) / self.speed
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
                self.on_line(line)
                self.played += 1
            if not self.loop:
                self._set_state(SourceState.ENDED)
                return
            self.loops += 1

    def status(self) -> dict[str, Any]:
        return {**super().status(), "played": self.played, "lines": len(self.lines), "loops": self.loops}
