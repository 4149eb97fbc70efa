"""Outgoing message schema (docs/design.md §7): OSC addresses under a configurable prefix, JSON envelopes.

OSC carries one scalar per address (a TouchDesigner OSC In CHOP gets one channel per value); vectors and
lists go as one message with many arguments. Every JSON message (ZeroMQ) is flat: the envelope
`{"v": 1, "topic", "t" (unix seconds), "seq" (per topic, gaps mean drops)}` plus the topic's fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.analysis.state import EmotionState
    from engine.audio.features import AudioFrame

SCHEMA_VERSION = 1

OscMessage = tuple[str, tuple[Any, ...]]


class Topic(StrEnum):
    EMOTION = "emotion"
    AUDIO = "audio"
    STATUS = "status"
    FRAME = "frame"  # opt-in, published by the render loop


class OscAddresses:
    """Every outgoing address, built once from the prefix (e.g. `/syn`)."""

    def __init__(self, prefix: str = "/syn") -> None:
        p = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.prefix = p
        self.label = f"{p}/emotion/label"
        self.confidence = f"{p}/emotion/confidence"
        self.valence = f"{p}/valence"
        self.arousal = f"{p}/arousal"
        self.embedding = f"{p}/embedding"
        self.state = f"{p}/state"
        self.nearest = f"{p}/nearest"
        self.rms = f"{p}/audio/rms"
        self.onset = f"{p}/audio/onset"
        self.centroid = f"{p}/audio/centroid"
        self.low = f"{p}/audio/low"
        self.mid = f"{p}/audio/mid"
        self.high = f"{p}/audio/high"
        self.flux = f"{p}/audio/flux"
        self.beat = f"{p}/audio/beat"
        self.tempo = f"{p}/audio/tempo"
        self.heartbeat = f"{p}/heartbeat"
        self.fps = f"{p}/status/fps"
        self.latency_ms = f"{p}/status/latency_ms"
        self.source = f"{p}/status/source"

    def emotion(self, name: str) -> str:
        return f"{self.prefix}/emotion/{name}"

    def ctl(self, name: str) -> str:
        return f"{self.prefix}/ctl/{name}"


def envelope(topic: Topic, seq: int, t: float, data: dict[str, Any]) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "topic": topic.value, "t": round(t, 6), "seq": seq, **data}


def _r(x: float, nd: int = 6) -> float:
    """Round for the wire; NaN/inf become 0.0 (JSON has no NaN and a receiver would choke on it)."""
    x = float(x)
    return round(x, nd) if math.isfinite(x) else 0.0


def emotion_osc(a: OscAddresses, s: EmotionState, nearest: Sequence[str] | None) -> list[OscMessage]:
    msgs: list[OscMessage] = [(a.emotion(c), (_r(p),)) for c, p in zip(s.classes, s.probs, strict=True)]
    msgs += [
        (a.label, (s.label or "none",)),
        (a.confidence, (_r(s.confidence),)),
        (a.valence, (_r(s.valence),)),
        (a.arousal, (_r(s.arousal),)),
        (a.embedding, tuple(_r(x) for x in s.shared)),
        (a.state, (s.state.value,)),
    ]
    if nearest:
        msgs.append((a.nearest, tuple(nearest)))
    return msgs


def emotion_json(s: EmotionState, nearest: Sequence[str] | None) -> dict[str, Any]:
    return {
        "label": s.label,
        "probs": {c: _r(p) for c, p in zip(s.classes, s.probs, strict=True)},
        "confidence": _r(s.confidence),
        "valence": _r(s.valence),
        "arousal": _r(s.arousal),
        "state": s.state.value,
        "silent": s.silent,
        "raw_label": s.raw_label,
        "rms_db": _r(s.rms_db, 2),
        "audio_t": _r(s.t, 4),
        "hop": s.hop,
        "shared": [_r(x) for x in s.shared],  # what OSC sends as /embedding
        "embedding": [_r(x) for x in s.embedding],  # the encoder's own embedding
        "nearest": list(nearest or []),
    }


def state_osc(a: OscAddresses, s: EmotionState) -> list[OscMessage]:
    return [(a.state, (s.state.value,))]


def bare_state_json(state: str) -> dict[str, Any]:
    """An emotion message before the first window: the state alone (e.g. `lost` before anything was heard)."""
    return {"state": state}


def bare_state_osc(a: OscAddresses, state: str) -> list[OscMessage]:
    return [(a.state, (state,))]


AUDIO_KEYS = ("rms", "onset", "centroid", "low", "mid", "high", "flux", "beat", "tempo")  # OSC and JSON alike
_AUDIO_DIGITS = {"centroid": 2, "tempo": 2}


def audio_osc(a: OscAddresses, f: AudioFrame) -> list[OscMessage]:
    return [(getattr(a, k), (_r(getattr(f, k), _AUDIO_DIGITS.get(k, 6)),)) for k in AUDIO_KEYS]


def audio_json(f: AudioFrame) -> dict[str, Any]:
    return {k: _r(getattr(f, k), _AUDIO_DIGITS.get(k, 6)) for k in AUDIO_KEYS}


def status_osc(
    a: OscAddresses, heartbeat: int, fps: float, latency_ms: float, source: str | None = None
) -> list[OscMessage]:
    msgs: list[OscMessage] = [(a.heartbeat, (int(heartbeat),)), (a.fps, (_r(fps, 3),))]
    msgs.append((a.latency_ms, (_r(latency_ms, 3),)))
    if source is not None:
        msgs.append((a.source, (source,)))
    return msgs
