"""Label harmonisation: one canonical emotion vocabulary, taxonomies over it, and circumplex VA targets.

Every corpus loader turns its own codes into a *canonical* emotion (`CANONICAL_EMOTIONS`); a `Taxonomy`
then maps each canonical emotion to a training class or to None (dropped). The mappings are data
(`TAXONOMY_MAPPINGS`), overridable from a TOML/JSON file or a dict, so a venue or a study can change them
without touching code. docs/data.md explains each choice.

Categorical corpora get valence/arousal targets from `engine.emotions.CIRCUMPLEX` (the one
table the engine shares) with the arousal magnitude scaled by the acted intensity (`INTENSITY_AROUSAL`).
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from engine.emotions import CANONICAL_EMOTIONS, CIRCUMPLEX, canonical_emotion

# Acted intensity -> factor on the arousal magnitude (then clipped to [-1, 1]). RAVDESS: normal, strong;
# CREMA-D: low, medium, high (its "unspecified" level is None, factor 1).
INTENSITY_AROUSAL: dict[str, float] = {
    "low": 0.8,
    "normal": 0.9,
    "medium": 1.0,
    "high": 1.2,
    "strong": 1.2,
}

# The built-in taxonomies. Canonical emotions not listed are dropped (None).
TAXONOMY_MAPPINGS: dict[str, dict[str, str | None]] = {
    # calm and excited are the low/high-arousal neighbours of neutral and happy and are merged into
    # them; bored sits between neutral and sad, and fearful/disgust/surprised/frustrated/contempt have
    # no class here, so they are dropped rather than forced into a boundary they would blur.
    "default": {
        "angry": "angry",
        "happy": "happy",
        "excited": "happy",
        "sad": "sad",
        "neutral": "neutral",
        "calm": "neutral",
    },
    # The seed study's three classes: fear is folded into sad (both negative valence); nothing else kept.
    "seed3": {
        "angry": "angry",
        "happy": "happy",
        "sad": "sad",
        "fearful": "sad",
    },
}

TAXONOMY_CLASSES: dict[str, tuple[str, ...]] = {
    "default": ("angry", "happy", "sad", "neutral"),
    "seed3": ("angry", "happy", "sad"),
}


def intensity_factor(intensity: str | None) -> float:
    """Arousal scale for an acted intensity level (1.0 when unknown or unspecified)."""
    if intensity is None:
        return 1.0
    return INTENSITY_AROUSAL.get(intensity, 1.0)


def circumplex_va(emotion: str, intensity: str | None = None) -> tuple[float, float]:
    """(valence, arousal) of a canonical emotion, arousal magnitude scaled by intensity and clipped."""
    try:
        valence, arousal = CIRCUMPLEX[emotion]
    except KeyError:
        raise ValueError(f"{emotion!r} is not a canonical emotion ({', '.join(CANONICAL_EMOTIONS)})") from None
    arousal = max(-1.0, min(1.0, arousal * intensity_factor(intensity)))
    return valence, arousal


class _Labelled(Protocol):
    emotion: str | None
    intensity: str | None
    valence: float | None
    arousal: float | None


def va_target(record: _Labelled) -> tuple[float, float] | None:
    """A record's (valence, arousal): its own ratings when it has them, else the circumplex placement."""
    if record.valence is not None and record.arousal is not None:
        return record.valence, record.arousal
    if record.emotion in CIRCUMPLEX:
        return circumplex_va(record.emotion, record.intensity)
    return None


R = TypeVar("R", bound=_Labelled)


@dataclass(frozen=True)
class Taxonomy:
    """Training classes and the map canonical emotion -> class (None = dropped)."""

    name: str
    classes: tuple[str, ...]
    mapping: Mapping[str, str | None] = field(hash=False)

    def class_of(self, emotion: str | None) -> str | None:
        """Canonical emotion -> class name, None when the taxonomy drops it (or there is no emotion)."""
        return None if emotion is None else self.mapping.get(emotion)

    def index_of(self, emotion: str | None) -> int | None:
        cls = self.class_of(emotion)
        return None if cls is None else self.classes.index(cls)

    @property
    def dropped(self) -> tuple[str, ...]:
        return tuple(e for e in CANONICAL_EMOTIONS if self.mapping.get(e) is None)

    def apply(self, records: Iterable[R]) -> tuple[list[R], list[int]]:
        """Keep the records the taxonomy maps to a class; return them with their class indices."""
        kept: list[R] = []
        labels: list[int] = []
        for record in records:
            index = self.index_of(record.emotion)
            if index is not None:
                kept.append(record)
                labels.append(index)
        return kept, labels

    def counts(self, records: Iterable[_Labelled]) -> dict[str, int]:
        """Records per class (every class listed, zeros included) plus `(dropped)`."""
        tally = Counter(self.class_of(r.emotion) or "(dropped)" for r in records)
        out = {cls: tally.get(cls, 0) for cls in self.classes}
        out["(dropped)"] = tally.get("(dropped)", 0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """For a bundle manifest or a report: name, classes, the full mapping (dropped as null)."""
        return {"name": self.name, "classes": list(self.classes), "mapping": {e: self.mapping[e] for e in self.mapping}}

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, str | bool | None],
        name: str = "custom",
        classes: Sequence[str] | None = None,
        base: str | Taxonomy | None = None,
    ) -> Taxonomy:
        """Build a taxonomy from {emotion: class}. Keys may be aliases ("anger", "fear").

        A value of None, False or "" drops the emotion. With `base`, emotions not in `mapping` keep the
        base's mapping; without, they are dropped. `classes` fixes the class order (default: the base's
        order for shared classes, then first appearance). Raises ValueError naming the bad key or value.
        """
        base_tax = get_taxonomy(base) if isinstance(base, str) else base
        full: dict[str, str | None] = {e: None for e in CANONICAL_EMOTIONS}
        if base_tax is not None:
            full.update(base_tax.mapping)
        for key, value in mapping.items():
            emotion = canonical_emotion(str(key))
            if emotion is None:
                raise ValueError(f"taxonomy {name!r}: mapping key {key!r} is not a known emotion")
            if value is None or value is False or value == "":
                full[emotion] = None
            elif isinstance(value, str):
                full[emotion] = value.strip()
            else:
                raise ValueError(f"taxonomy {name!r}: mapping.{key} must be a class name or false, got {value!r}")
        used = [v for v in full.values() if v is not None]
        if classes is None:
            # the base's order, then the order classes first appear in `mapping`
            order = [c for c in (base_tax.classes if base_tax else ()) if c in used]
            given = [v.strip() for v in mapping.values() if isinstance(v, str) and v.strip() in used]
            classes = order + [c for c in dict.fromkeys(given + used) if c not in order]
        classes = tuple(classes)
        if len(set(classes)) != len(classes):
            raise ValueError(f"taxonomy {name!r}: classes repeat a name: {list(classes)}")
        for emotion, value in full.items():
            if value is not None and value not in classes:
                raise ValueError(f"taxonomy {name!r}: mapping.{emotion} -> {value!r} is not one of classes {classes}")
        empty = [c for c in classes if c not in used]
        if empty:
            raise ValueError(f"taxonomy {name!r}: no emotion maps to class(es) {empty}")
        if len(classes) < 2:
            raise ValueError(f"taxonomy {name!r}: needs at least two classes, got {list(classes)}")
        return cls(name=name, classes=classes, mapping=full)

    @classmethod
    def from_file(cls, path: str | Path) -> Taxonomy:
        """Read a taxonomy from TOML or JSON: `name`, optional `base`, optional `classes`, `mapping` table."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
            raise ValueError(f"{path}: cannot read taxonomy ({exc})") from exc
        unknown = set(data) - {"name", "base", "classes", "mapping"}
        if unknown:
            raise ValueError(f"{path}: unknown taxonomy key(s) {sorted(unknown)}")
        if not isinstance(data.get("mapping", {}), dict):
            raise ValueError(f"{path}: `mapping` must be a table of emotion = class")
        return cls.from_mapping(
            data.get("mapping", {}),
            name=str(data.get("name", path.stem)),
            classes=data.get("classes"),
            base=data.get("base"),
        )


def get_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in taxonomy by name (`default`, `seed3`) or one read from a .toml/.json file."""
    key = str(name_or_path)
    if key in TAXONOMY_MAPPINGS:
        return Taxonomy.from_mapping(TAXONOMY_MAPPINGS[key], name=key, classes=TAXONOMY_CLASSES[key])
    path = Path(name_or_path)
    if path.suffix.lower() in (".toml", ".json"):
        return Taxonomy.from_file(path)
    raise ValueError(f"unknown taxonomy {key!r}: use one of {sorted(TAXONOMY_MAPPINGS)} or a .toml/.json file")
