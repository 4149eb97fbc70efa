"""MIDI control: the `[midi]` config section, the mapping of MIDI messages onto the `/syn/ctl/*` controls,
and the MIDI clock's tempo -> `speed` (docs/design.md §7, §8).

Everything here works on parsed mido-style messages (objects with `.type`, `.channel`, `.control`,
`.value`, `.note`, `.velocity`) and never imports mido or rtmidi: the port side is engine/io/midi_in.py.
Every mapped message is applied through the shared `ControlSurface` (source `midi`), so it is validated,
counted and logged exactly like an OSC or ZeroMQ control message.

Mappings (`[[midi.map]]`):

- `cc` on a numeric control (`intensity`, `speed`, `smoothing`, `seed`): the value 0..127 scales linearly
  to `min`..`max` (the defaults are the control's useful range; `min > max` reverses the fader).
- `cc` on a button-like target (`freeze`, `blackout`, `hud`, `override`): a value >= 64 is a press, below
  64 a release (a footswitch or a button sending 127/0); default mode `momentary`.
- `note` on a numeric control: with `value`, a press sets it (mode `trigger`; `momentary` puts back the
  previous value on release, `toggle` alternates); without `value`, the velocity scales to `min`..`max`.
- `note` on a flag (`freeze`, `blackout`, `hud`): default mode `toggle`; `momentary` is on while held,
  `trigger` sets `value` (default 1) on each press.
- `override`: `value` is a class name, `"none"` or `[valence, arousal]`; default mode `trigger`.

The channel filter (`channel`, 1..16) applies to every mapping unless a mapping names its own.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.io.control import ControlSurface, Outcome

SOURCE = "midi"
PRESS_THRESHOLD = 64  # a CC value at or above this is a pressed button
DEFAULT_VIRTUAL_NAME = "Synesthesia"


class _MidiSection(BaseModel):
    # the rules of engine/config.py's sections: strict, unknown keys refused, frozen, no NaN/inf
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class MidiApi(StrEnum):
    AUTO = "auto"  # Linux: ALSA when /dev/snd/seq exists, else JACK; elsewhere the platform's own
    ALSA = "alsa"
    JACK = "jack"


class MidiTarget(StrEnum):
    INTENSITY = "intensity"
    SPEED = "speed"
    SMOOTHING = "smoothing"
    SEED = "seed"
    FREEZE = "freeze"
    BLACKOUT = "blackout"
    HUD = "hud"
    OVERRIDE = "override"


class MidiMode(StrEnum):
    TOGGLE = "toggle"  # each press flips
    MOMENTARY = "momentary"  # on while held, back on release
    TRIGGER = "trigger"  # each press sets the value; releases do nothing


# numeric controls: (lowest, highest) the control takes (engine/controls.py), default min/max of a fader
NUMERIC_RANGE: dict[MidiTarget, tuple[float, float]] = {
    MidiTarget.INTENSITY: (0.0, 1.0),
    MidiTarget.SPEED: (0.0, 100.0),
    MidiTarget.SMOOTHING: (0.0, 600.0),
    MidiTarget.SEED: (0.0, 2**31 - 1),
}
NUMERIC_DEFAULT: dict[MidiTarget, tuple[float, float]] = {
    MidiTarget.INTENSITY: (0.0, 1.0),
    MidiTarget.SPEED: (0.0, 4.0),
    MidiTarget.SMOOTHING: (0.0, 10.0),
    MidiTarget.SEED: (0.0, 127.0),
}
FLAGS = frozenset({MidiTarget.FREEZE, MidiTarget.BLACKOUT, MidiTarget.HUD})


class MidiMapping(_MidiSection):
    """One `[[midi.map]]` entry: a CC or a note -> one control."""

    cc: int | None = Field(None, ge=0, le=127, description="controller number")
    note: int | None = Field(None, ge=0, le=127, description="note number (60 = middle C)")
    channel: int | None = Field(None, ge=1, le=16, description="only this channel (default: midi.channel)")
    control: MidiTarget = Field(strict=False)
    min: float | None = Field(None, description="numeric controls: the value at 0")
    max: float | None = Field(None, description="numeric controls: the value at 127")
    value: float | str | list[float] | None = Field(None, description="what a press sets")
    mode: MidiMode | None = Field(None, strict=False)

    @model_validator(mode="after")
    def _consistent(self) -> MidiMapping:
        if (self.cc is None) == (self.note is None):
            raise ValueError("give exactly one of cc or note")
        target = self.control
        numeric = target in NUMERIC_RANGE
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max scale numeric controls only, not {target.value}")
        if numeric:
            lo, hi = NUMERIC_RANGE[target]
            for key, v in (("min", self.min), ("max", self.max)):
                if v is not None and not lo <= v <= hi:
                    raise ValueError(f"{key} must be {lo:g}..{hi:g} for {target.value}, got {v:g}")
            if self.cc is not None and (self.value is not None or self.mode is not None):
                raise ValueError(f"a cc on {target.value} scales min..max; value and mode are for notes")
            if self.value is not None:
                if not isinstance(self.value, int | float):
                    raise ValueError(f"value must be a number for {target.value}, got {self.value!r}")
                if not lo <= self.value <= hi:
                    raise ValueError(f"value must be {lo:g}..{hi:g} for {target.value}, got {self.value:g}")
            elif self.mode is not None and self.mode is not MidiMode.TRIGGER:
                raise ValueError(f"mode {self.mode.value} needs a value to set")
        elif target in FLAGS:
            if self.value is not None and self.value not in (0, 1):
                raise ValueError(f"value must be 0 or 1 for {target.value}, got {self.value!r}")
            if self.value is not None and self.effective_mode is not MidiMode.TRIGGER:
                raise ValueError("value on a flag is for mode trigger")
        else:  # override
            if self.value is None:
                raise ValueError('override needs a value: a class name, "none" or [valence, arousal]')
            if isinstance(self.value, list):
                if len(self.value) != 2 or not all(-1 <= v <= 1 for v in self.value):
                    raise ValueError(f"override value [valence, arousal] takes two numbers -1..1, got {self.value}")
            elif not isinstance(self.value, str):
                raise ValueError(f'override value must be a class name, "none" or [valence, arousal], got {self.value}')
        if target is MidiTarget.SEED and self.value is not None and self.value != int(self.value):  # type: ignore[arg-type]
            raise ValueError(f"seed value must be an integer, got {self.value}")
        return self

    @property
    def effective_mode(self) -> MidiMode | None:
        """The mode in force (None: a continuous fader or velocity)."""
        if self.mode is not None:
            return self.mode
        if self.control in NUMERIC_RANGE:
            return MidiMode.TRIGGER if self.value is not None else None
        if self.control in FLAGS:
            return MidiMode.TOGGLE if self.note is not None else MidiMode.MOMENTARY
        return MidiMode.TRIGGER if self.note is not None else MidiMode.MOMENTARY

    @property
    def scale(self) -> tuple[float, float]:
        lo, hi = NUMERIC_DEFAULT[self.control]
        return (lo if self.min is None else self.min, hi if self.max is None else self.max)

    def describe(self) -> str:
        what = f"cc {self.cc}" if self.cc is not None else f"note {self.note}"
        return f"{what}{'' if self.channel is None else f' ch {self.channel}'} -> {self.control.value}"


class MidiSettings(_MidiSection):
    enabled: bool = False
    api: MidiApi = Field(MidiApi.AUTO, strict=False)
    port: int | str | None = Field(None, description="input port: index or name substring (None: the first)")
    virtual: bool = Field(False, description="open a virtual input port for other software to connect to")
    virtual_name: str = Field(DEFAULT_VIRTUAL_NAME, min_length=1, max_length=64)
    channel: int | None = Field(None, ge=1, le=16, description="only this channel (None: all)")
    map: list[MidiMapping] = Field(default_factory=list, max_length=512)
    clock: bool = Field(False, description="MIDI clock (24 ppqn) drives speed relative to reference_bpm")
    reference_bpm: float = Field(120.0, ge=20, le=400, description="the tempo at which speed stays as it is")
    clock_window: int = Field(48, ge=6, le=384, description="clock ticks averaged for the tempo (24 = a beat)")
    clock_timeout_s: float = Field(1.0, gt=0, le=60, description="no tick for this long: speed is restored")
    retry_min_s: float = Field(1.0, gt=0, le=600, description="first retry after a missing or vanished port")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="retries back off up to this")

    @model_validator(mode="after")
    def _unique(self) -> MidiSettings:
        if isinstance(self.port, int) and self.port < 0:
            raise ValueError(f"port index must be >= 0, got {self.port}")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        seen: dict[tuple[str, int, int | None], int] = {}
        for i, m in enumerate(self.map):
            key = ("cc", m.cc, m.channel) if m.cc is not None else ("note", m.note, m.channel)  # type: ignore[assignment]
            if key in seen:
                raise ValueError(f"map.{i} ({m.describe()}) repeats map.{seen[key]}")
            seen[key] = i  # type: ignore[index]
        return self


class MidiMessage(Protocol):
    type: str


class TempoClock:
    """Tempo from MIDI clock ticks (24 per quarter note): the mean tick interval over the last `window`
    ticks. A gap longer than `gap_s` starts the estimate afresh (the clock stopped and came back)."""

    PPQN = 24

    def __init__(self, window: int = 48, gap_s: float = 1.0) -> None:
        self.window = window
        self.gap_s = gap_s
        self._intervals: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self.last_tick: float | None = None
        self.ticks = 0

    def reset(self) -> None:
        self._intervals.clear()
        self._sum = 0.0
        self.last_tick = None

    def tick(self, now: float) -> float | None:
        """Count one tick at `now` (monotonic seconds); the tempo in BPM once enough ticks arrived."""
        self.ticks += 1
        if self.last_tick is not None:
            dt = now - self.last_tick
            if dt > self.gap_s or dt < 0:
                self.reset()
            else:
                if len(self._intervals) == self._intervals.maxlen:
                    self._sum -= self._intervals[0]
                self._intervals.append(dt)
                self._sum += dt
        self.last_tick = now
        return self.bpm

    @property
    def bpm(self) -> float | None:
        n = len(self._intervals)
        if n < min(self.window, self.PPQN // 2):
            return None
        mean = self._sum / n
        return None if mean <= 0 else 60.0 / (mean * self.PPQN)


@dataclass
class MidiCounters:
    received: int = 0
    mapped: int = 0  # messages that hit a mapping (applied or rejected by the surface)
    unmapped: int = 0  # notes/CCs no mapping takes
    filtered: int = 0  # on another channel
    clock_ticks: int = 0
    errors: int = 0


class MidiHandler:
    """The MIDI stage: messages -> controls through the ControlSurface, plus the clock's tempo -> speed.

    `handle` is called from the MIDI callback thread, `idle` from the input's own thread; one lock keeps
    the toggle/momentary memory and the clock consistent between them.
    """

    def __init__(self, settings: MidiSettings, surface: ControlSurface) -> None:
        self.settings = settings
        self.surface = surface
        self.counters = MidiCounters()
        self._lock = threading.Lock()
        self._cc: dict[tuple[int, int | None], MidiMapping] = {}
        self._notes: dict[tuple[int, int | None], MidiMapping] = {}
        for m in settings.map:
            if m.cc is not None:
                self._cc[(m.cc, m.channel)] = m
            else:
                self._notes[(m.note, m.channel)] = m  # type: ignore[index]
        self._pressed: set[int] = set()  # id() of mappings whose button is held (CC edges)
        self._previous: dict[int, Any] = {}  # id() of mapping -> value before a momentary/toggle press
        self.clock = TempoClock(settings.clock_window, gap_s=settings.clock_timeout_s)
        self.clock_running = True  # until a Stop: ticks drive speed; Start/Continue resume
        self._base_speed: float | None = None  # speed before the clock took over
        self._clock_speed: float | None = None  # the last speed the clock applied

    # --- lookup -----------------------------------------------------------------------------------
    def _find(self, table: dict[tuple[int, int | None], MidiMapping], number: int, channel: int) -> MidiMapping | None:
        """The mapping for `number` on `channel` (1..16): one naming this channel first, then the channel-less
        ones when the global filter lets the channel through; misses are counted as filtered or unmapped."""
        m = table.get((number, channel))
        if m is not None:
            return m
        if self.settings.channel is not None and channel != self.settings.channel:
            self.counters.filtered += 1
            return None
        m = table.get((number, None))
        if m is None:
            self.counters.unmapped += 1
        return m

    # --- the message path ---------------------------------------------------------------------------
    def handle(self, msg: Any, now: float) -> Outcome | None:
        """One parsed message; the surface's outcome when it touched a control, else None. Never raises."""
        with self._lock:
            self.counters.received += 1
            kind = msg.type
            if kind == "clock":
                return self._tick(now)
            if kind in ("start", "continue"):
                self.clock_running = True
                if kind == "start":
                    self.clock.reset()
                return None
            if kind == "stop":
                self.clock_running = False
                return self._restore_speed()
            if kind == "control_change":
                m = self._find(self._cc, msg.control, msg.channel + 1)
                return None if m is None else self._cc_event(m, msg.value)
            if kind in ("note_on", "note_off"):
                m = self._find(self._notes, msg.note, msg.channel + 1)
                if m is None:
                    return None
                pressed = kind == "note_on" and msg.velocity > 0
                return self._button(m, pressed, velocity=msg.velocity if pressed else None)
            return None  # aftertouch, pitch bend, program change, sysex...: not control messages here

    def _apply(self, name: str, *args: Any) -> Outcome:
        self.counters.mapped += 1
        outcome, _err = self.surface.apply(name, args, source=SOURCE)
        return outcome

    def _cc_event(self, m: MidiMapping, value: int) -> Outcome | None:
        if m.control in NUMERIC_RANGE:
            return self._apply(m.control.value, self._scaled(m, value))
        pressed = value >= PRESS_THRESHOLD
        held = id(m) in self._pressed
        if pressed == held:  # not an edge: a fader wobbling above (or below) the threshold
            return None
        if pressed:
            self._pressed.add(id(m))
        else:
            self._pressed.discard(id(m))
        return self._button(m, pressed, velocity=None)

    def _scaled(self, m: MidiMapping, value: int) -> float | int:
        lo, hi = m.scale
        v = lo + (hi - lo) * (value / 127.0)
        return round(v) if m.control is MidiTarget.SEED else v

    def _current(self, target: MidiTarget) -> Any:
        state = self.surface.controls.snapshot()
        if target is MidiTarget.OVERRIDE:
            o = state.override
            return "none" if o is None else (o.label if o.label is not None else [o.valence, o.arousal])
        return getattr(state, target.value)

    def _args(self, target: MidiTarget, value: Any) -> tuple[Any, ...]:
        if target is MidiTarget.OVERRIDE and isinstance(value, list):
            return tuple(value)
        if target in FLAGS:
            return (int(bool(value)),)
        if target is MidiTarget.SEED:
            return (int(value),)
        return (value,)

    def _button(self, m: MidiMapping, pressed: bool, velocity: int | None) -> Outcome | None:
        target, mode = m.control, m.effective_mode
        if mode is None:  # a note on a numeric control without a value: velocity -> min..max
            return self._apply(target.value, self._scaled(m, velocity)) if pressed and velocity else None
        on_value: Any = m.value if m.value is not None else 1
        key = id(m)
        match mode:
            case MidiMode.TRIGGER:
                return self._apply(target.value, *self._args(target, on_value)) if pressed else None
            case MidiMode.MOMENTARY:
                if pressed:
                    self._previous[key] = self._current(target) if target not in FLAGS else 0
                    return self._apply(target.value, *self._args(target, on_value))
                if key not in self._previous:
                    return None
                return self._apply(target.value, *self._args(target, self._previous.pop(key)))
            case MidiMode.TOGGLE:
                if not pressed:
                    return None
                current = self._current(target)
                if target in FLAGS:
                    return self._apply(target.value, int(not current))
                if _same(current, on_value):
                    back = self._previous.pop(key, "none" if target is MidiTarget.OVERRIDE else current)
                    return self._apply(target.value, *self._args(target, back))
                self._previous[key] = current
                return self._apply(target.value, *self._args(target, on_value))
        return None

    # --- clock --------------------------------------------------------------------------------------
    def _tick(self, now: float) -> Outcome | None:
        self.counters.clock_ticks += 1
        if not self.settings.clock:
            return None
        bpm = self.clock.tick(now)
        if bpm is None or not self.clock_running or self.clock.ticks % 6:
            return None  # re-evaluated every 16th note, not on every tick
        if self._base_speed is None:
            self._base_speed = float(self.surface.controls.snapshot().speed)
        speed = min(NUMERIC_RANGE[MidiTarget.SPEED][1], self._base_speed * bpm / self.settings.reference_bpm)
        if self._clock_speed is not None and abs(speed - self._clock_speed) <= 0.005 * max(self._clock_speed, 1e-6):
            return None
        self._clock_speed = speed
        return self._apply(MidiTarget.SPEED.value, speed)

    def _restore_speed(self) -> Outcome | None:
        self.clock.reset()
        base, self._base_speed, self._clock_speed = self._base_speed, None, None
        return None if base is None else self._apply(MidiTarget.SPEED.value, base)

    def idle(self, now: float) -> Outcome | None:
        """Called regularly off the callback: a clock that went quiet gives speed back."""
        with self._lock:
            last = self.clock.last_tick
            if self._base_speed is not None and last is not None and now - last > self.settings.clock_timeout_s:
                return self._restore_speed()
            return None

    @property
    def driving_speed(self) -> bool:
        return self._base_speed is not None

    def status(self) -> dict[str, Any]:
        with self._lock:
            bpm = self.clock.bpm
            return {
                "received": self.counters.received,
                "mapped": self.counters.mapped,
                "unmapped": self.counters.unmapped,
                "filtered": self.counters.filtered,
                "clock_ticks": self.counters.clock_ticks,
                "errors": self.counters.errors,
                "bpm": None if bpm is None else round(bpm, 2),
                "clock_driving_speed": self._base_speed is not None,
            }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(math.isclose(x, y, abs_tol=1e-9) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, abs_tol=1e-9)
    return False


def learn_block(msg: Any, control: str | None = None) -> str | None:
    """The `[[midi.map]]` TOML block for a learned CC or note (None for anything else)."""
    if msg.type == "control_change":
        head = f"cc = {msg.control}"
        target = MidiTarget(control) if control else MidiTarget.INTENSITY
    elif msg.type == "note_on" and msg.velocity > 0:
        head = f"note = {msg.note}"
        target = MidiTarget(control) if control else MidiTarget.FREEZE
    else:
        return None
    lines = ["[[midi.map]]", head, f"channel = {msg.channel + 1}", f'control = "{target.value}"']
    if not control:
        lines[-1] += "  # the target: intensity, speed, smoothing, seed, freeze, blackout, hud, override"
    if target in NUMERIC_RANGE and msg.type == "control_change":
        lo, hi = NUMERIC_DEFAULT[target]
        lines += [f"min = {lo:g}", f"max = {hi:g}"]
    elif target is MidiTarget.OVERRIDE:
        lines.append('value = "happy"  # a class name, "none" or [valence, arousal]')
    elif target in FLAGS and msg.type == "note_on":
        lines.append('mode = "toggle"  # toggle | momentary | trigger')
    return "\n".join(lines)
