"""The emotion vocabulary and its place on the circumplex: one table for the engine and the trainer.

`CIRCUMPLEX` places each canonical emotion at (valence, arousal) in [-1, 1], approximately after Russell
(1980, J. Pers. Soc. Psychol. 39:1161) and Posner et al. (2005); the figures fix each category's quadrant
and rough distance from neutral, not exact coordinates. It is what the trainer gives categorical corpora
as valence/arousal targets, what the procedural art and audio corpora are drawn around, what an override
by label means and where the colour grade puts each class. Change it here and nowhere else.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Final

CANONICAL_EMOTIONS: Final[tuple[str, ...]] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "bored",
    "excited",
    "frustrated",
    "contempt",
)

# (valence, arousal) per canonical emotion. "disgust" and "contempt" are not in Russell's set; they are
# placed as negative, mildly aroused states.
CIRCUMPLEX: Final = MappingProxyType(
    {
        "neutral": (0.0, 0.0),
        "calm": (0.4, -0.6),
        "happy": (0.8, 0.5),
        "excited": (0.7, 0.8),
        "surprised": (0.3, 0.8),
        "sad": (-0.7, -0.5),
        "bored": (-0.4, -0.7),
        "angry": (-0.6, 0.8),
        "frustrated": (-0.6, 0.4),
        "fearful": (-0.7, 0.6),
        "disgust": (-0.7, 0.3),
        "contempt": (-0.5, 0.2),
    }
)

# Spellings seen in corpus codes, folder names, CSVs and on the command line -> canonical name. Keys are
# normalised (`normalize_label`) before lookup.
EMOTION_ALIASES: Final = MappingProxyType(
    {
        **{name: name for name in CANONICAL_EMOTIONS},
        "neu": "neutral",
        "relaxed": "calm",
        "happiness": "happy",
        "joy": "happy",
        "hap": "happy",
        "sadness": "sad",
        "sorrow": "sad",
        "anger": "angry",
        "ang": "angry",
        "fear": "fearful",
        "afraid": "fearful",
        "scared": "fearful",
        "fea": "fearful",
        "disgusted": "disgust",
        "dis": "disgust",
        "surprise": "surprised",
        "suprised": "surprised",  # the Kaggle "Audio Emotions" compilation's folder name
        "suprise": "surprised",
        "sur": "surprised",
        "ps": "surprised",  # TESS "pleasant surprise"
        "pleasant_surprise": "surprised",
        "pleasant_surprised": "surprised",
        "boredom": "bored",
        "excitement": "excited",
        "exc": "excited",
        "frustration": "frustrated",
        "fru": "frustrated",
        "contemptuous": "contempt",
    }
)


def normalize_label(label: str) -> str:
    """Lower case, trimmed, spaces and hyphens as underscores."""
    return "_".join(label.strip().lower().replace("-", " ").split())


def canonical_emotion(label: str | None) -> str | None:
    """Corpus label or alias -> canonical emotion, or None when it is not in the vocabulary."""
    if label is None:
        return None
    return EMOTION_ALIASES.get(normalize_label(label))


def emotion_va(label: str) -> tuple[float, float]:
    """(valence, arousal) of an emotion name or alias; ValueError names the known emotions."""
    name = canonical_emotion(label)
    if name is None:
        raise ValueError(f"unknown emotion {label!r}; known: {', '.join(CANONICAL_EMOTIONS)}")
    return CIRCUMPLEX[name]


def nearest_emotion(valence: float, arousal: float, candidates: tuple[str, ...] | list[str]) -> str | None:
    """The candidate (a known emotion name) closest to (valence, arousal) on the circumplex, or None."""
    known = [c for c in candidates if canonical_emotion(c) is not None]
    if not known:
        return None
    return min(known, key=lambda c: math.dist(emotion_va(c), (valence, arousal)))
