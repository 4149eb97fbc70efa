"""Latent walk: the generator's inputs (z, c), one pair per frame (docs/design.md §2, render loop).

- The condition c eases toward the room's shared-space vector along the unit sphere (slerp with
  alpha = 1 - exp(-dt / tau)), so it never jumps; `intensity` blends the target toward a neutral
  condition; an override replaces the target with a class centroid (or a valence/arousal point,
  interpolated between class centroids on the circumplex).
- z moves along a smooth closed-form path on the sphere of radius sqrt(Z): a sum of slow sinusoids
  with random vector coefficients, driven by an integrated phase, so changing the speed never jumps.
- Per-frame audio features make the image breathe between emotion updates: loudness speeds the walk,
  onsets push z briefly along a kick direction (smooth attack and release), a bright spectrum adds a
  faster shimmer component; a detected beat adds a gentler push along the same direction (half an onset's).
  Silence eases into a slow, calm idle motion toward the neutral condition.
- `/seed` re-draws the path's coefficients from the seed: same seed, same walk.

The walk also eases the valence/arousal the visuals show (for colour grading), with the same easing.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.controls import ControlState
from engine.emotions import CIRCUMPLEX

log = logging.getLogger("synesthesia.render")

MAX_DT_S = 0.1  # a longer gap (a stall, a restart) is walked as 0.1 s, so nothing jumps after it
MIN_TAU_S = 0.05  # smoothing 0 still eases over a few frames


class FeatureLike(Protocol):
    """Per-frame audio features from the ring's last ~50 ms."""

    rms: float  # linear RMS, full scale 1.0
    onset: float  # onset strength >= 0; ~1 is a clear attack
    centroid: float  # spectral centroid in Hz
    beat: float  # 1 at a detected beat, decaying to 0 (engine/audio/features.py)


@dataclass(frozen=True)
class AudioFeatures:
    """A plain FeatureLike (tests, synthetic sources)."""

    rms: float = 0.0
    onset: float = 0.0
    centroid: float = 0.0
    beat: float = 0.0


def normalise(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > eps else v


def _perpendicular(a: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to unit vector a (deterministic)."""
    e = np.zeros_like(a)
    e[int(np.argmin(np.abs(a)))] = 1.0
    p = e - float(a @ e) * a
    return p / np.linalg.norm(p)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Geodesic interpolation between unit vectors a and b (t in [0, 1]); the result has unit norm."""
    dot = float(np.clip(a @ b, -1.0, 1.0))
    theta = math.acos(dot)
    if theta < 1e-5:
        return normalise(a + t * (b - a))
    if math.pi - theta < 1e-4:  # antipodal: every great circle is shortest; take a fixed one
        p = _perpendicular(a)
        ang = t * math.pi
        return math.cos(ang) * a + math.sin(ang) * p
    s = math.sin(theta)
    return (math.sin((1.0 - t) * theta) / s) * a + (math.sin(t * theta) / s) * b


def _label_vector(label: str, dim: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(label.encode("utf-8")))
    return normalise(rng.standard_normal(dim))


class ConditionSpace:
    """Class centroids in the shared space and the conditions derived from them.

    The centroid of a class is the normalised mean of the art index vectors with that label. Without an
    art index (or for a class absent from it) a fixed pseudo-random unit vector per label stands in,
    and a warning says so.
    """

    def __init__(
        self,
        classes: Sequence[str],
        dim: int,
        vectors: np.ndarray | None = None,
        labels: Sequence[str] | np.ndarray | None = None,
        va_anchors: Mapping[str, tuple[float, float]] | None = None,
        kernel_width: float = 0.45,
    ) -> None:
        self.classes = list(classes)
        self.dim = int(dim)
        self.kernel_width = kernel_width
        anchors = dict(CIRCUMPLEX)  # labels outside it are placed on the circle by their order
        anchors.update(va_anchors or {})
        self.va: dict[str, tuple[float, float]] = {}
        unknown = [c for c in self.classes if c not in anchors]
        for c in self.classes:
            if c in anchors:
                self.va[c] = anchors[c]
            else:  # spread unknown labels around the circle at radius 0.7
                ang = 2.0 * math.pi * unknown.index(c) / max(1, len(unknown))
                self.va[c] = (0.7 * math.cos(ang), 0.7 * math.sin(ang))
        self.centroids: dict[str, np.ndarray] = {}
        missing = []
        labels_arr = np.asarray(labels).astype(str) if labels is not None else None
        for c in self.classes:
            vec = None
            if vectors is not None and labels_arr is not None:
                rows = vectors[labels_arr == c]
                if len(rows):
                    vec = normalise(rows.astype(np.float64).mean(axis=0))
                    if float(np.linalg.norm(vec)) < 0.5:
                        vec = None
            if vec is None:
                missing.append(c)
                vec = _label_vector(c, self.dim)
            self.centroids[c] = vec
        if missing:
            log.warning("art index has no vectors for %s; using fixed stand-in conditions", ", ".join(missing))
        self._matrix = np.stack([self.centroids[c] for c in self.classes])  # [K, S]
        self._anchor_va = np.array([self.va[c] for c in self.classes], dtype=np.float64)  # [K, 2]
        if "neutral" in self.centroids:
            self.neutral = self.centroids["neutral"]
            self.neutral_va = self.va["neutral"]
        else:
            mean = self._matrix.mean(axis=0)
            self.neutral = normalise(mean) if float(np.linalg.norm(mean)) > 1e-6 else self._matrix[0]
            self.neutral_va = (0.0, 0.0)

    @classmethod
    def from_bundle(cls, bundle) -> ConditionSpace:  # engine.models.bundle.Bundle
        index = bundle.art_index()
        extra = bundle.manifest.model_extra or {}
        anchors = extra.get("class_va") if isinstance(extra.get("class_va"), dict) else None
        vectors = labels = None
        if index is not None and "vectors" in index and "labels" in index:
            vectors, labels = index["vectors"], index["labels"]
        return cls(bundle.classes, bundle.manifest.shared_dim, vectors, labels, anchors)

    def weights(self, valence: float, arousal: float) -> np.ndarray:
        """Gaussian kernel weights of the class anchors for a VA point (continuous in VA)."""
        d2 = ((self._anchor_va - np.array([valence, arousal])) ** 2).sum(axis=1)
        w = np.exp(-d2 / (2.0 * self.kernel_width**2))
        total = float(w.sum())
        if total < 1e-9:  # far from every anchor: the nearest one
            w = np.zeros_like(w)
            w[int(np.argmin(d2))] = 1.0
            return w
        return w / total

    def from_va(self, valence: float, arousal: float) -> np.ndarray:
        """The condition for a VA point: kernel-weighted blend of the class centroids, on the sphere."""
        w = self.weights(valence, arousal)
        mix = w @ self._matrix
        if float(np.linalg.norm(mix)) < 1e-6:
            return self._matrix[int(np.argmax(w))].copy()
        return normalise(mix)

    def centroid(self, label: str) -> np.ndarray:
        return self.centroids[label]


def _ease(dt: float, tau: float) -> float:
    return 1.0 - math.exp(-dt / tau) if tau > 0 else 1.0


@dataclass
class WalkTuning:
    """Shapes of the motion; defaults were chosen by eye at 60 fps."""

    base_rate: float = 1.0  # phase units per second at speed 1
    freqs_hz: tuple[float, ...] = (0.047, 0.073, 0.119, 0.191)
    amps: tuple[float, ...] = (1.0, 0.7, 0.5, 0.35)
    shimmer_hz: float = 0.43  # the fast component a bright spectrum brings in
    shimmer_amp: float = 0.35
    kick_amp: float = 0.45  # onset push along the kick direction (relative to |z| = 1)
    beat_kick: float = 0.5  # a beat pulses like an onset of this strength (subtle: the onset usually leads)
    kick_attack_s: float = 0.04
    kick_release_s: float = 0.35
    loud_attack_s: float = 0.05
    loud_release_s: float = 0.5
    bright_tau_s: float = 0.3
    idle_tau_s: float = 1.5
    idle_speed: float = 0.35  # speed multiplier in silence (calm attract motion)
    quiet_db: float = -55.0  # below this the room counts as quiet for the idle blend
    loud_range_db: tuple[float, float] = (-60.0, -10.0)
    centroid_range_hz: tuple[float, float] = (250.0, 8000.0)


class LatentWalk:
    """Stage: `__call__(dt, target_shared, features, controls, target_va=None) -> (z, c)`; `reset(seed)`.

    `target_shared` is the room's shared-space vector, or None when there is none (silence, no analysis
    yet): then the walk eases into its idle motion toward the neutral condition. Returned arrays are
    float32 views owned by the walk, valid until the next call.
    """

    def __init__(
        self,
        space: ConditionSpace,
        z_dim: int,
        condition_tau_s: float = 1.0,
        seed: int = 0,
        tuning: WalkTuning | None = None,
    ) -> None:
        self.space = space
        self.z_dim = int(z_dim)
        self.condition_tau_s = float(condition_tau_s)
        self.tuning = tuning or WalkTuning()
        self._z = np.zeros(self.z_dim, dtype=np.float32)
        self._c = np.zeros(space.dim, dtype=np.float32)
        self.reset(seed)

    # -- state ------------------------------------------------------------------------------------------
    def reset(self, seed: int = 0, seed_generation: int = 0) -> None:
        """Start over: a fresh path from `seed`, the condition at neutral, every envelope at rest.

        `seed_generation` is the Controls' count of `/seed` messages already reflected in `seed`.
        """
        self.condition = self.space.neutral.astype(np.float64).copy()
        self.valence, self.arousal = self.space.neutral_va
        self.loudness = 0.0
        self.brightness = 0.0
        self.pulse = 0.0
        self.idle = 1.0
        self.time_s = 0.0
        self._seed_generation = seed_generation
        self.jump(seed)

    def jump(self, seed: int) -> None:
        """Re-draw the z path from `seed` (a jump to a new region); the condition carries on."""
        t = self.tuning
        rng = np.random.default_rng(int(seed))
        k = len(t.freqs_hz) + 1  # + the shimmer component
        self.seed = int(seed)
        self._cos = rng.standard_normal((k, self.z_dim))
        self._sin = rng.standard_normal((k, self.z_dim))
        self._kick = normalise(rng.standard_normal(self.z_dim))
        self._omega = 2.0 * math.pi * np.array([*t.freqs_hz, t.shimmer_hz])
        self._amp = np.array([*t.amps, 0.0])
        self.phase = float(rng.uniform(0.0, 1000.0))  # where on the path this seed starts

    # -- per frame --------------------------------------------------------------------------------------
    def __call__(
        self,
        dt: float,
        target_shared: np.ndarray | None,
        features: FeatureLike | None,
        controls: ControlState,
        target_va: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        dt = min(max(0.0, float(dt)), MAX_DT_S)
        self.time_s += dt
        if controls.seed_generation != self._seed_generation:
            self._seed_generation = controls.seed_generation
            self.jump(controls.seed)
        self._audio(dt, features, silent=target_shared is None and controls.override is None)
        self._condition(dt, target_shared, target_va, controls)
        self._path(dt, controls.speed)
        return self._z, self._c

    def _audio(self, dt: float, f: FeatureLike | None, silent: bool) -> None:
        t = self.tuning
        if f is None:
            loud = bright = onset = 0.0
            db = -120.0
        else:
            db = 20.0 * math.log10(max(float(f.rms), 1e-6))
            lo, hi = t.loud_range_db
            loud = min(1.0, max(0.0, (db - lo) / (hi - lo)))
            onset = min(1.0, max(0.0, float(f.onset), t.beat_kick * float(getattr(f, "beat", 0.0))))
            c_lo, c_hi = t.centroid_range_hz
            cen = float(f.centroid)
            bright = 0.0 if cen <= c_lo else min(1.0, math.log(cen / c_lo) / math.log(c_hi / c_lo))
            if not math.isfinite(loud + onset + bright):
                loud = bright = onset = 0.0
        tau = t.loud_attack_s if loud > self.loudness else t.loud_release_s
        self.loudness += (loud - self.loudness) * _ease(dt, tau)
        self.brightness += (bright - self.brightness) * _ease(dt, t.bright_tau_s)
        if onset > self.pulse:
            self.pulse += (onset - self.pulse) * _ease(dt, t.kick_attack_s)
        else:
            self.pulse *= math.exp(-dt / t.kick_release_s)
        idle_target = 1.0 if (silent or db < t.quiet_db) else 0.0
        self.idle += (idle_target - self.idle) * _ease(dt, t.idle_tau_s)

    def target_condition(
        self, target_shared: np.ndarray | None, target_va: tuple[float, float] | None, controls: ControlState
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """The unit condition and VA the walk eases toward, before easing."""
        space = self.space
        o = controls.override
        if o is not None and o.label is not None and o.label in space.centroids:
            target, va = space.centroid(o.label), space.va[o.label]
        elif o is not None and o.valence is not None and o.arousal is not None:
            target, va = space.from_va(o.valence, o.arousal), (o.valence, o.arousal)
        elif target_shared is not None and float(np.linalg.norm(target_shared)) > 1e-6:
            target = normalise(np.asarray(target_shared, dtype=np.float64).reshape(-1))
            va = target_va if target_va is not None else space.neutral_va
        else:
            target, va = space.neutral, space.neutral_va
        k = float(controls.intensity)
        if k < 1.0:
            target = slerp(space.neutral, target, k)
            nv, na = space.neutral_va
            va = (nv + k * (va[0] - nv), na + k * (va[1] - na))
        return target, va

    def _condition(
        self,
        dt: float,
        target_shared: np.ndarray | None,
        target_va: tuple[float, float] | None,
        controls: ControlState,
    ) -> None:
        target, (tv, ta) = self.target_condition(target_shared, target_va, controls)
        tau = controls.smoothing if controls.smoothing is not None else self.condition_tau_s
        alpha = _ease(dt, max(MIN_TAU_S, tau))
        self.condition = slerp(self.condition, target, alpha)
        self.valence += (tv - self.valence) * alpha
        self.arousal += (ta - self.arousal) * alpha
        self._c[:] = self.condition

    def _path(self, dt: float, speed: float) -> None:
        t = self.tuning
        active = 0.5 + 1.5 * self.loudness
        mult = active + (t.idle_speed - active) * self.idle
        self.phase += dt * t.base_rate * float(speed) * mult
        self._amp[-1] = t.shimmer_amp * self.brightness * (1.0 - self.idle)
        ang = self._omega * self.phase
        u = (self._amp * np.cos(ang)) @ self._cos + (self._amp * np.sin(ang)) @ self._sin
        u = normalise(u)
        kick = t.kick_amp * self.pulse * (1.0 - self.idle)
        z = normalise(u + kick * self._kick) * math.sqrt(self.z_dim)
        self._z[:] = z
