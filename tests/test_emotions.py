"""The one emotion table: every part that places an emotion on the circumplex reads engine.emotions."""

from __future__ import annotations

import pytest

from engine import emotions
from engine.audio.synth import resolve_va
from engine.emotions import CIRCUMPLEX, canonical_emotion, emotion_va, nearest_emotion


def test_aliases_and_unknown_names() -> None:
    assert canonical_emotion(" Anger ") == "angry"
    assert canonical_emotion("pleasant-surprise") == "surprised"
    assert canonical_emotion("elated") is None
    assert emotion_va("sadness") == CIRCUMPLEX["sad"]
    with pytest.raises(ValueError, match="known: neutral"):
        emotion_va("elated")


def test_nearest_emotion_ignores_unknown_candidates() -> None:
    assert nearest_emotion(-0.6, 0.7, ["happy", "angry", "sad", "mystery"]) == "angry"
    assert nearest_emotion(0.0, 0.0, ["mystery"]) is None


def test_table_is_read_only_and_shared() -> None:
    with pytest.raises(TypeError):
        CIRCUMPLEX["angry"] = (0.0, 0.0)  # type: ignore[index]
    from trainer.art import painter as artgen
    from trainer.audio import taxonomy

    assert taxonomy.CIRCUMPLEX is emotions.CIRCUMPLEX
    assert all(artgen.ART_VA[c] == CIRCUMPLEX[c] for c in artgen.ART_VA)
    assert resolve_va("angry") == CIRCUMPLEX["angry"]  # the synthesiser speaks from the same table
