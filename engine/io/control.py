"""What the OSC and ZeroMQ control servers share (docs/design.md §7, control table).

`ControlSurface` applies one named control to the thread-safe `Controls`, counts every outcome
(applied, rejected value, unknown name, malformed packet), logs problems rate-limited, and builds the
full current state for `query`: the controls, their counters, and whatever the app's status provider
adds (render and analysis status, the current emotion).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from engine.controls import ControlError, Controls
from engine.ratelog import RateLimitedLog

log = logging.getLogger("synesthesia.control")

QUERY = "query"

StatusProvider = Callable[[], Mapping[str, Any]]


class Outcome(StrEnum):
    APPLIED = "applied"
    QUERY = "query"
    REJECTED = "rejected"  # known control, invalid value or type
    UNKNOWN = "unknown"  # no such control / address
    MALFORMED = "malformed"  # not a parseable message at all
    ERROR = "error"  # an unforeseen failure while handling a request (a bug), answered and survived
    REFUSED = "refused"  # a sender outside the allow-list: not applied, no state in the answer


_PROBLEMS = frozenset({Outcome.REJECTED, Outcome.UNKNOWN, Outcome.MALFORMED, Outcome.ERROR, Outcome.REFUSED})


@dataclass
class ControlCounters:
    received: int = 0
    applied: int = 0
    queries: int = 0
    rejected: int = 0
    unknown: int = 0
    malformed: int = 0
    errors: int = 0
    refused: int = 0


class ControlSurface:
    """Thread-safe entry point for control messages from any server."""

    def __init__(self, controls: Controls, status: StatusProvider | None = None, log_interval_s: float = 5.0) -> None:
        self.controls = controls
        self.status = status
        self.counters = ControlCounters()
        self._lock = threading.Lock()
        self.log = RateLimitedLog(log, log_interval_s)
        # called after every control message but queries, from the receiving server's thread:
        # (name, args, outcome, source, error); must not block (the recorder queues a line)
        self.on_event: Callable[[str, tuple[Any, ...] | list[Any], Outcome, str, str | None], None] | None = None

    def count(self, outcome: Outcome, source: str = "", detail: str = "") -> None:
        with self._lock:
            self.counters.received += 1
            match outcome:
                case Outcome.APPLIED:
                    self.counters.applied += 1
                case Outcome.QUERY:
                    self.counters.queries += 1
                case Outcome.REJECTED:
                    self.counters.rejected += 1
                case Outcome.UNKNOWN:
                    self.counters.unknown += 1
                case Outcome.MALFORMED:
                    self.counters.malformed += 1
                case Outcome.ERROR:
                    self.counters.errors += 1
                case Outcome.REFUSED:
                    self.counters.refused += 1
        if outcome in _PROBLEMS:
            # keyed by the kind of problem alone: a new source port per packet must not buy a line each
            self.log.warning(f"control {outcome.value}", "control %s from %s: %s", outcome.value, source, detail)

    def apply(self, name: str, args: tuple[Any, ...] | list[Any], source: str = "") -> tuple[Outcome, str | None]:
        """Apply control `name`; returns (outcome, error message or None). Never raises for bad input."""
        if name == QUERY:
            self.count(Outcome.QUERY, source)
            return Outcome.QUERY, None
        outcome, err = self._apply(name, args, source)
        if self.on_event is not None:
            try:
                self.on_event(name, args, outcome, source, err)
            except Exception as exc:  # an observer's bug must not turn an applied control into an error
                self.log.warning("observer", "control observer failed: %s", exc)
        return outcome, err

    def _apply(self, name: str, args: tuple[Any, ...] | list[Any], source: str) -> tuple[Outcome, str | None]:
        if name not in Controls.NAMES:
            err = f"unknown control {name!r}"
            self.count(Outcome.UNKNOWN, source, err)
            return Outcome.UNKNOWN, err
        try:
            self.controls.apply(name, *args)
        except ControlError as exc:
            self.count(Outcome.REJECTED, source, str(exc))
            return Outcome.REJECTED, str(exc)
        self.count(Outcome.APPLIED, source)
        return Outcome.APPLIED, None

    def state(self) -> dict[str, Any]:
        """The full current state: {"ctl": controls, "control": counters, ...status provider's sections}."""
        ctl = self.controls.as_dict()
        ctl.pop("applied", None)
        ctl.pop("rejected", None)
        with self._lock:
            counters = asdict(self.counters)
        out: dict[str, Any] = {"ctl": ctl, "control": counters}
        if self.status is not None:
            try:
                extra = dict(self.status())
            except Exception as exc:  # a status provider bug must not break query replies
                self.log.warning("status", "status provider failed: %s", exc)
                extra = {}
            for key, value in extra.items():
                out.setdefault(key, value)
        return out


def osc_scalar(value: Any) -> Any | None:
    """A value as OSC carries it for TouchDesigner: bools as ints, None dropped, numbers as int/float."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    return str(value)


def flatten_state(state: Mapping[str, Any], prefix: str) -> list[tuple[str, list[Any]]]:
    """Nested state -> [(address, args)]: one scalar per address, number lists as one message.

    Control values use the same addresses as the controls themselves (`<prefix>/ctl/<name>`), so an
    OSC In CHOP that reads them mirrors what an OSC Out CHOP sends. An override becomes
    `<prefix>/ctl/override` (class, `va` or `none`) plus `.../override/valence` and `.../arousal`;
    smoothing `-1` means "the configured value".
    """
    out: list[tuple[str, list[Any]]] = []

    def walk(node: Mapping[str, Any], path: str) -> None:
        for key, value in node.items():
            addr = f"{path}/{key}"
            if isinstance(value, Mapping):
                walk(value, addr)
            elif isinstance(value, list | tuple):
                if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                    out.append((addr, [float(v) for v in value]))
            else:
                scalar = osc_scalar(value)
                if scalar is not None:
                    out.append((addr, [scalar]))

    state = dict(state)
    ctl = dict(state.pop("ctl", {}))
    override = ctl.pop("override", None)
    if ctl.get("smoothing") is None:
        ctl["smoothing"] = -1.0
    ctl_msgs: dict[str, Any] = dict(ctl)
    if isinstance(override, list | tuple):
        ctl_msgs["override"] = "va"
        ctl_msgs["override/valence"], ctl_msgs["override/arousal"] = float(override[0]), float(override[1])
    else:
        ctl_msgs["override"] = override or "none"
        ctl_msgs["override/valence"] = ctl_msgs["override/arousal"] = 0.0
    for key, value in ctl_msgs.items():
        scalar = osc_scalar(value)
        if scalar is not None:
            out.append((f"{prefix}/ctl/{key}", [scalar]))
    walk(state, prefix)
    return out
