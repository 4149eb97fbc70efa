"""Label harmonisation: built-in taxonomies, overrides from dicts and files, circumplex VA targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.emotions import CANONICAL_EMOTIONS, CIRCUMPLEX, canonical_emotion
from trainer.audio import taxonomy as tx
from trainer.audio.corpora import AudioRecord
from trainer.audio.taxonomy import Taxonomy, circumplex_va, get_taxonomy


def _record(emotion: str | None, intensity: str | None = None, va: tuple[float, float] | None = None) -> AudioRecord:
    valence, arousal = va if va else (None, None)
    return AudioRecord(Path("x.wav"), emotion, "c:1", "c", intensity, valence, arousal)


def test_aliases_resolve_corpus_spellings() -> None:
    assert canonical_emotion("Suprised") == "surprised"  # the Kaggle compilation's folder
    assert canonical_emotion("pleasant surprise") == "surprised"
    assert canonical_emotion("pleasant_surprised") == "surprised"  # TESS folder YAF_pleasant_surprised
    assert canonical_emotion("ANGER") == "angry"
    assert canonical_emotion("Disgusted") == "disgust"
    assert canonical_emotion("fear") == "fearful"
    assert canonical_emotion("boredom") == "bored"
    assert canonical_emotion("elated") is None
    assert canonical_emotion(None) is None


def test_default_taxonomy_merges_calm_into_neutral_and_drops_the_rest() -> None:
    tax = get_taxonomy("default")
    assert tax.classes == ("angry", "happy", "sad", "neutral")
    assert tax.class_of("calm") == "neutral"
    assert tax.class_of("excited") == "happy"
    for dropped in ("bored", "fearful", "disgust", "surprised", "contempt", "frustrated"):
        assert tax.class_of(dropped) is None
    assert set(tax.mapping) == set(CANONICAL_EMOTIONS)
    assert tax.index_of("sad") == 2
    assert tax.class_of(None) is None


def test_seed3_folds_fear_into_sad() -> None:
    tax = get_taxonomy("seed3")
    assert tax.classes == ("angry", "happy", "sad")
    assert tax.class_of("fearful") == "sad"
    assert tax.class_of("neutral") is None
    assert tax.class_of("calm") is None
    records = [_record(e) for e in ("angry", "fearful", "sad", "neutral", "happy")]
    kept, labels = tax.apply(records)
    assert [r.emotion for r in kept] == ["angry", "fearful", "sad", "happy"]
    assert labels == [0, 2, 2, 1]
    assert tax.counts(records) == {"angry": 1, "happy": 1, "sad": 2, "(dropped)": 1}


def test_from_mapping_accepts_aliases_and_a_base() -> None:
    tax = Taxonomy.from_mapping({"boredom": "neutral", "calm": None}, name="mine", base="default")
    assert tax.classes == ("angry", "happy", "sad", "neutral")
    assert tax.class_of("bored") == "neutral"
    assert tax.class_of("calm") is None
    assert tax.class_of("angry") == "angry"  # kept from the base
    binary = Taxonomy.from_mapping({"angry": "negative", "sad": "negative", "happy": "positive", "calm": "positive"})
    assert binary.classes == ("negative", "positive")
    assert binary.class_of("neutral") is None


@pytest.mark.parametrize(
    ("mapping", "classes", "message"),
    [
        ({"elated": "happy"}, None, "elated"),
        ({"angry": "angry", "happy": "happy"}, ("angry", "sad"), "happy"),
        ({"angry": "angry", "happy": "happy"}, ("angry", "happy", "sad"), "no emotion maps"),
        ({"angry": "angry"}, None, "at least two"),
        ({"angry": 3, "happy": "happy"}, None, "mapping.angry"),
    ],
)
def test_from_mapping_rejects_bad_input_naming_it(mapping: dict, classes: tuple | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Taxonomy.from_mapping(mapping, classes=classes)


def test_taxonomy_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "venue.toml"
    toml.write_text(
        'name = "venue"\nbase = "default"\nclasses = ["angry", "happy", "sad", "neutral"]\n'
        '[mapping]\nfearful = "sad"\ncalm = false\nbored = ""\n'
    )
    tax = get_taxonomy(toml)
    assert tax.name == "venue"
    assert tax.class_of("fearful") == "sad"
    assert tax.class_of("calm") is None
    assert tax.class_of("neutral") == "neutral"
    js = tmp_path / "three.json"
    js.write_text('{"mapping": {"angry": "angry", "happy": "happy", "sad": "sad", "calm": null}}')
    tax = Taxonomy.from_file(js)
    assert tax.name == "three" and tax.classes == ("angry", "happy", "sad")
    assert tax.to_dict()["mapping"]["calm"] is None
    bad = tmp_path / "bad.toml"
    bad.write_text('mapping = {angry = "angry"}\ncolour = "red"\n')
    with pytest.raises(ValueError, match="colour"):
        Taxonomy.from_file(bad)
    with pytest.raises(ValueError, match="unknown taxonomy"):
        get_taxonomy("nonsense")


def test_circumplex_places_every_emotion_in_its_quadrant() -> None:
    assert set(CIRCUMPLEX) == set(CANONICAL_EMOTIONS)
    for valence, arousal in CIRCUMPLEX.values():
        assert -1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0
    assert CIRCUMPLEX["neutral"] == (0.0, 0.0)
    assert CIRCUMPLEX["happy"][0] > 0 and CIRCUMPLEX["happy"][1] > 0
    assert CIRCUMPLEX["angry"][0] < 0 and CIRCUMPLEX["angry"][1] > 0
    assert CIRCUMPLEX["sad"][0] < 0 and CIRCUMPLEX["sad"][1] < 0
    assert CIRCUMPLEX["calm"][0] > 0 and CIRCUMPLEX["calm"][1] < 0
    assert CIRCUMPLEX["angry"][1] > CIRCUMPLEX["neutral"][1] > CIRCUMPLEX["bored"][1]


def test_intensity_scales_arousal_magnitude_and_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    v, a = CIRCUMPLEX["angry"]
    assert circumplex_va("angry", "strong") == pytest.approx((v, a * 1.2))
    assert circumplex_va("angry", "normal") == pytest.approx((v, a * 0.9))
    assert circumplex_va("angry") == pytest.approx((v, a))
    assert circumplex_va("calm", "strong")[1] == pytest.approx(CIRCUMPLEX["calm"][1] * 1.2)  # further from 0
    monkeypatch.setattr(tx, "CIRCUMPLEX", {**tx.CIRCUMPLEX, "excited": (0.7, 0.9)})  # a placement that would pass 1
    assert circumplex_va("excited", "strong") == (0.7, 1.0)
    with pytest.raises(ValueError, match="canonical"):
        circumplex_va("elated")


def test_va_target_prefers_rated_values() -> None:
    assert tx.va_target(_record("happy", va=(0.1, -0.2))) == (0.1, -0.2)
    assert tx.va_target(_record("sad", "strong")) == circumplex_va("sad", "strong")
    assert tx.va_target(_record(None)) is None
