"""The room's emotion over time: raw window predictions -> smoothed, stable `EmotionState`.

`EmotionTracker` is a stage (`__call__(prediction, t)`, `reset()`):
- smoothing: exponential, with separate time constants for rising and falling values (attack, release);
  alpha = 1 - exp(-dt / tau) from the audio clock, so the result does not depend on the hop;
- label hysteresis: a challenger must lead the current label by `hysteresis_margin` (smoothed probability)
  for `hysteresis_hops` consecutive hops before the label switches, so the label does not flicker;
- silence: silent windows are not classified and move nothing; after `silence_hops` of them in a row the
  state is `silent` (the label stays what it was);
- operator controls (engine.controls): a smoothing time overrides both constants; an override forces a
  label or a valence/arousal point (state `override`, tracking continues underneath); freeze holds every
  value (state `frozen`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from engine.config import AnalysisSettings
from engine.controls import Controls, ControlState, Override
from engine.emotions import canonical_emotion, emotion_va, nearest_emotion

if TYPE_CHECKING:  # predict pulls in torch; the tracker itself only needs numpy
    from engine.analysis.predict import Prediction, WindowPrediction


class StateKind(Enum):
    LISTENING = "listening"
    SILENT = "silent"
    FROZEN = "frozen"
    OVERRIDE = "override"
    LOST = "lost"  # the audio source is lost or stalled: set by the Engine (engine/app.py), never by the tracker


@dataclass(frozen=True)
class EmotionState:
    """What the room feels now (arrays are read-only; share them freely between threads)."""

    classes: tuple[str, ...]
    label: str | None  # after hysteresis; None until the first non-silent window
    probs: np.ndarray  # [C] smoothed class probabilities (sum 1)
    confidence: float  # smoothed probability of `label`
    valence: float  # smoothed, [-1, 1]
    arousal: float  # smoothed, [-1, 1]
    embedding: np.ndarray  # [E] encoder embedding (smoothed, L2-normalised; zeros before the first window)
    shared: np.ndarray  # [S] shared audio–art vector (smoothed, L2-normalised; zeros before the first window)
    state: StateKind
    t: float  # audio time of the window's end, seconds since the stream started
    hop: int  # windows seen
    silent: bool = False  # this window was silent
    raw_label: str | None = None  # this window's own argmax (None when silent)
    rms_db: float = -120.0  # this window's level
    window_end: int = 0  # absolute sample index of the window's end (set by the live loop)
    captured_at: float = 0.0  # time.monotonic() when that sample was captured (set by the live loop)

    def prob(self, name: str) -> float:
        return float(self.probs[self.classes.index(name)])

    @classmethod
    def placed(
        cls,
        classes: tuple[str, ...],
        shared: np.ndarray,
        valence: float,
        arousal: float,
        captured_at: float = 0.0,
        label: str | None = None,
        silent: bool = False,
    ) -> EmotionState:
        """A state put where a caller wants it (benchmarks, tests): uniform probabilities, no embedding."""
        probs = np.full(len(classes), 1.0 / len(classes))
        if label in classes:
            probs = np.eye(len(classes))[classes.index(label)]
        return cls(
            classes=tuple(classes),
            label=label,
            probs=_frozen(probs),
            confidence=float(probs.max()),
            valence=float(valence),
            arousal=float(arousal),
            embedding=_frozen(np.zeros(0)),
            shared=_frozen(np.asarray(shared, dtype=np.float64)),
            state=StateKind.SILENT if silent else StateKind.LISTENING,
            t=0.0,
            hop=0,
            silent=silent,
            captured_at=captured_at,
        )


def smoothing_alpha(dt: float, tau: float) -> float:
    """Share of the distance to the target covered in `dt` seconds with time constant `tau` (0: jump)."""
    if tau <= 0:
        return 1.0
    return 1.0 - math.exp(-max(dt, 0.0) / tau)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float32)
    a.setflags(write=False)
    return a


class EmotionTracker:
    """Stage: raw per-window predictions in, EmotionState out. One instance per analysis thread."""

    def __init__(
        self,
        classes: list[str] | tuple[str, ...],
        settings: AnalysisSettings | None = None,
        controls: Controls | None = None,
        anchors: dict[str, np.ndarray] | None = None,
    ) -> None:
        """`anchors`: shared-space vector per class (e.g. art-index centroids) shown while a label is forced."""
        self.classes = tuple(classes)
        self.settings = settings or AnalysisSettings()
        self.controls = controls
        self.anchors = dict(anchors or {})
        self.reset()

    def reset(self) -> None:
        c = len(self.classes)
        self._probs = np.full(c, 1.0 / c)
        self._va = np.zeros(2)
        self._embedding: np.ndarray | None = None
        self._shared: np.ndarray | None = None
        self._label: str | None = None
        self._challenger: int | None = None
        self._lead_hops = 0
        self._silent_run = 0
        self._t: float | None = None
        self._hops = 0
        self._last: EmotionState | None = None

    # -- smoothing and hysteresis -----------------------------------------------------------------------

    def _taus(self, ctl: ControlState) -> tuple[float, float]:
        if ctl.smoothing is not None:
            return ctl.smoothing, ctl.smoothing
        return self.settings.attack_s, self.settings.release_s

    def _smooth(self, p: WindowPrediction, dt: float, ctl: ControlState) -> None:
        va = np.array([p.valence, p.arousal])
        if self._embedding is None:  # first classified window: start from it
            self._probs = p.probs.astype(np.float64)
            self._va = va
            self._embedding = _unit(p.embedding.astype(np.float64))
            self._shared = _unit(p.shared.astype(np.float64))
            return
        attack, release = self._taus(ctl)
        up, down = smoothing_alpha(dt, attack), smoothing_alpha(dt, release)
        for cur, target in ((self._probs, p.probs), (self._va, va)):
            cur += np.where(target > cur, up, down) * (target - cur)
        self._probs /= max(self._probs.sum(), 1e-12)
        # vectors have no rising or falling; they follow at the attack rate and stay on the unit sphere
        self._embedding = _unit(self._embedding + up * (p.embedding - self._embedding))
        self._shared = _unit(self._shared + up * (p.shared - self._shared))

    def _hysteresis(self) -> None:
        best = int(np.argmax(self._probs))
        if self._label is None:
            self._label = self.classes[best]
            return
        current = self.classes.index(self._label)
        if best == current or self._probs[best] - self._probs[current] < self.settings.hysteresis_margin:
            self._challenger, self._lead_hops = None, 0
            return
        if best != self._challenger:
            self._challenger, self._lead_hops = best, 0
        self._lead_hops += 1
        if self._lead_hops >= self.settings.hysteresis_hops:
            self._label = self.classes[best]
            self._challenger, self._lead_hops = None, 0

    # -- output -----------------------------------------------------------------------------------------

    def _state(self, p: WindowPrediction, t: float, kind: StateKind) -> EmotionState:
        label, probs = self._label, self._probs
        return EmotionState(
            classes=self.classes,
            label=label,
            probs=_frozen(probs),
            confidence=float(probs[self.classes.index(label)] if label else probs.max()),
            valence=float(np.clip(self._va[0], -1, 1)),
            arousal=float(np.clip(self._va[1], -1, 1)),
            embedding=_frozen(self._embedding if self._embedding is not None else np.zeros_like(p.embedding)),
            shared=_frozen(self._shared if self._shared is not None else np.zeros_like(p.shared)),
            state=kind,
            t=t,
            hop=self._hops,
            silent=p.silent,
            raw_label=None if p.silent else self.classes[int(np.argmax(p.probs))],
            rms_db=p.rms_db,
        )

    def _forced(self, state: EmotionState, o: Override) -> EmotionState:
        if o.label is not None:
            label = o.label
            v, a = emotion_va(label) if canonical_emotion(label) else (state.valence, state.arousal)
        else:
            v, a = float(o.valence), float(o.arousal)
            label = nearest_emotion(v, a, self.classes) or state.label
        probs = np.zeros(len(self.classes))
        if label in self.classes:
            probs[self.classes.index(label)] = 1.0
        shared = self.anchors.get(label) if label else None
        return replace(
            state,
            label=label,
            probs=_frozen(probs),
            confidence=1.0,
            valence=v,
            arousal=a,
            shared=state.shared if shared is None else _frozen(_unit(np.asarray(shared, dtype=np.float64))),
            state=StateKind.OVERRIDE,
        )

    def __call__(self, prediction: WindowPrediction | Prediction, t: float) -> EmotionState:
        """Fold in one window (a WindowPrediction, or row 0 of a Prediction) ending at audio time `t` (s)."""
        p = prediction.row(0) if hasattr(prediction, "row") else prediction
        ctl = self.controls.snapshot() if self.controls is not None else ControlState()
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        self._hops += 1
        if ctl.freeze and self._last is not None:
            self._last = replace(
                self._last, state=StateKind.FROZEN, t=t, hop=self._hops, silent=p.silent, rms_db=p.rms_db
            )
            return self._last
        if p.silent:
            self._silent_run += 1
        else:
            self._silent_run = 0
            self._smooth(p, dt, ctl)
            self._hysteresis()
        kind = StateKind.SILENT if self._silent_run >= self.settings.silence_hops else StateKind.LISTENING
        state = self._state(p, t, kind)
        if ctl.override is not None:
            state = self._forced(state, ctl.override)
        self._last = state
        return state
