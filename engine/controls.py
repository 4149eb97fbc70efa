"""Operator controls (docs/design.md §7, `/syn/ctl/*`), shared by the control servers, analysis and render.

Writers (OSC server thread, ZMQ control thread) call `apply`; readers (analysis thread, render loop) take
a `snapshot()` once per hop or frame, so a change lands between frames, never inside one.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Any


class ControlError(ValueError):
    """A control message with an unknown name or an invalid value (counted and logged, never fatal)."""


@dataclass(frozen=True)
class Override:
    """A forced emotion: a class label, or a valence/arousal point."""

    label: str | None = None
    valence: float | None = None
    arousal: float | None = None


@dataclass(frozen=True)
class ControlState:
    intensity: float = 1.0
    speed: float = 1.0
    smoothing: float | None = None  # seconds; None: the configured attack/release
    freeze: bool = False
    blackout: bool = False
    override: Override | None = None
    seed: int = 0
    seed_generation: int = 0  # bumps on every /seed, so the render loop sees repeated seeds as jumps
    hud: bool = False


def _number(name: str, args: tuple[Any, ...], what: str = "one number") -> float:
    """The single finite numeric argument as a float; bools, NaN, inf and huge ints are refused."""
    if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], int | float):
        raise ControlError(f"{name} takes {what}, got {_short(args)}")
    try:
        v = float(args[0])
    except OverflowError:  # an int too large for a float
        raise ControlError(f"{name} must be a finite number, got an integer of {len(str(args[0]))} digits") from None
    if not math.isfinite(v):
        raise ControlError(f"{name} must be a finite number, got {v}")
    return v


def _short(args: tuple[Any, ...], limit: int = 80) -> str:
    """repr(args) cut to `limit` characters: a reply or log line must not echo a 60 KB payload."""
    text = repr(args)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _float(name: str, args: tuple[Any, ...], lo: float, hi: float | None = None) -> float:
    v = _number(name, args)
    if v < lo or (hi is not None and v > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ControlError(f"{name} must be {bound}, got {v}")
    return v


def _flag(name: str, args: tuple[Any, ...]) -> bool:
    if len(args) != 1 or isinstance(args[0], str) or args[0] not in (0, 1, True, False, 0.0, 1.0):
        raise ControlError(f"{name} takes 0 or 1, got {_short(args)}")
    return bool(args[0])


class Controls:
    """Thread-safe holder of the current ControlState."""

    NAMES = ("intensity", "speed", "smoothing", "freeze", "blackout", "override", "seed", "hud", "query")

    def __init__(self, classes: list[str], initial: ControlState | None = None) -> None:
        self._classes = list(classes)
        self._lock = threading.Lock()
        self._state = initial or ControlState()
        self.applied = 0
        self.rejected = 0

    def snapshot(self) -> ControlState:
        with self._lock:
            return self._state

    def _parse(self, name: str, args: tuple[Any, ...], state: ControlState) -> ControlState:
        match name:
            case "intensity":
                return replace(state, intensity=_float(name, args, 0.0, 1.0))
            case "speed":
                return replace(state, speed=_float(name, args, 0.0, 100.0))
            case "smoothing":
                return replace(state, smoothing=_float(name, args, 0.0, 600.0))
            case "freeze":
                return replace(state, freeze=_flag(name, args))
            case "blackout":
                return replace(state, blackout=_flag(name, args))
            case "hud":
                return replace(state, hud=_flag(name, args))
            case "seed":
                v = _number(name, args, "one integer")
                if v != int(v) or not 0 <= v < 2**31:
                    raise ControlError(f"seed must be an integer 0..2^31-1, got {_short(args)}")
                return replace(state, seed=int(v), seed_generation=state.seed_generation + 1)
            case "override":
                return replace(state, override=self._override(args))
        raise ControlError(f"unknown control {name!r}")

    def _override(self, args: tuple[Any, ...]) -> Override | None:
        if len(args) == 1 and isinstance(args[0], str):
            label = args[0].strip().lower()
            if label in ("none", "off", ""):
                return None
            if label not in self._classes:
                raise ControlError(f"override label must be one of {self._classes} or none, got {_short(args)}")
            return Override(label=label)
        if len(args) == 2:
            v = _float("override valence", args[:1], -1.0, 1.0)
            a = _float("override arousal", args[1:], -1.0, 1.0)
            return Override(valence=v, arousal=a)
        raise ControlError(f"override takes a class name, none, or valence and arousal; got {_short(args)}")

    def apply(self, name: str, *args: Any) -> ControlState:
        """Validate and apply one control; raises ControlError (and counts it) when invalid."""
        with self._lock:
            try:
                self._state = self._parse(name, tuple(args), self._state)
            except ControlError:
                self.rejected += 1
                raise
            self.applied += 1
            return self._state

    def as_dict(self) -> dict[str, Any]:
        s = self.snapshot()
        o = s.override
        return {
            "intensity": s.intensity,
            "speed": s.speed,
            "smoothing": s.smoothing,
            "freeze": s.freeze,
            "blackout": s.blackout,
            "seed": s.seed,
            "hud": s.hud,
            "override": None if o is None else (o.label or [o.valence, o.arousal]),
            "applied": self.applied,
            "rejected": self.rejected,
        }
