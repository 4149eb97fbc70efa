"""Art corpus loaders: each layout round-trips from tiny fixtures; bad files are reported, not fatal."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.art.corpora import (
    WIKIART_EMOTIONS,
    ArtLoadError,
    ArtRecord,
    ArtRecordDataset,
    check_image,
    emotion_map,
    load_art_csv,
    load_art_folder,
    load_dvisa,
    load_image,
    load_wikiart_emotions,
)
from trainer.art.painter import ART_VA

RED, GREEN, BLUE, GREY = (220, 20, 20), (20, 200, 40), (30, 40, 210), (128, 128, 128)


def _img(path: Path, colour: tuple[int, int, int] = RED, size: tuple[int, int] = (12, 8), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path)
    return path


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all")
    return path


def _truncated(path: Path) -> Path:
    """A noisy image (so it compresses poorly) cut in half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# --------------------------------------------------------------------------------------------------
# Images


def test_load_image_round_trips_colour_and_size(tmp_path: Path) -> None:
    img = load_image(_img(tmp_path / "r.png", RED, (30, 20)), size=16)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert np.abs(img.reshape(-1, 3).mean(0) - RED).max() < 2
    jpg = load_image(_img(tmp_path / "b.jpg", BLUE), size=8)
    assert np.abs(jpg.reshape(-1, 3).mean(0) - BLUE).max() < 12  # JPEG is lossy
    for mode in ("L", "P", "RGBA", "CMYK"):
        ext = "jpg" if mode == "CMYK" else "png"
        out = load_image(_img(tmp_path / f"m_{mode}.{ext}", GREY, mode=mode), size=8)
        assert out.shape == (8, 8, 3) and abs(float(out.mean()) - 128) < 12, mode


def test_load_image_crops_to_the_centre_or_squashes(tmp_path: Path) -> None:
    # Left third red, the rest blue: a centre square crop of a 3:1 image sees only blue.
    im = Image.new("RGB", (90, 30), BLUE)
    im.paste(Image.new("RGB", (30, 30), RED), (0, 0))
    im.save(tmp_path / "wide.png")
    cropped = load_image(tmp_path / "wide.png", size=12)
    squashed = load_image(tmp_path / "wide.png", size=12, crop=False)
    assert cropped[..., 0].max() < 60  # no red
    assert squashed[:, :3, 0].mean() > 180  # red on the left


def test_transparent_areas_load_as_white(tmp_path: Path) -> None:
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", size=4).min() == 255


def test_unreadable_images_raise_and_are_detected(tmp_path: Path) -> None:
    bad = _corrupt(tmp_path / "bad.jpg")
    with pytest.raises(ArtLoadError, match=r"bad\.jpg"):
        load_image(bad)
    assert check_image(bad).startswith("unreadable")
    assert check_image(tmp_path / "absent.png").startswith("missing")
    assert check_image(_img(tmp_path / "ok.png")) is None
    assert check_image(_truncated(tmp_path / "trunc.png")).startswith("unreadable")
    # A truncated JPEG passes the structure check; only a full decode finds it.
    jpg = _truncated(tmp_path / "trunc.jpg")
    assert check_image(jpg, decode=True).startswith("unreadable")
    with pytest.raises(ArtLoadError, match="truncated"):
        load_image(jpg)


def test_check_levels_in_loaders(tmp_path: Path) -> None:
    _img(tmp_path / "happy" / "ok.png")
    _truncated(tmp_path / "happy" / "cut.jpg")
    _corrupt(tmp_path / "happy" / "junk.png")
    assert sorted(r.id for r in load_art_folder(tmp_path, check="none")) == ["happy/cut", "happy/junk", "happy/ok"]
    assert sorted(r.id for r in load_art_folder(tmp_path)) == ["happy/cut", "happy/ok"]
    decoded = load_art_folder(tmp_path, check="decode")
    assert [r.id for r in decoded] == ["happy/ok"] and decoded.report.count == 2
    with pytest.raises(ValueError, match="check"):
        load_art_folder(tmp_path, check="thorough")


# --------------------------------------------------------------------------------------------------
# Taxonomy


def test_emotion_maps() -> None:
    default = emotion_map()
    assert default["anger"] == "angry" and default["contentment"] == "happy" and default["neutral"] == "neutral"
    assert "fear" not in default and "disgust" not in default and "awe" not in default
    seed3 = emotion_map("seed3")
    assert seed3["fear"] == "sad" and "neutral" not in seed3 and set(seed3.values()) == {"angry", "happy", "sad"}
    assert set(emotion_map(["happy", "sad"]).values()) == {"happy", "sad"}
    with pytest.raises(ValueError):
        emotion_map("plutchik")
    with pytest.raises(ValueError):
        emotion_map(["happy", "bored"])


# --------------------------------------------------------------------------------------------------
# Folder per label


def test_folder_layout_round_trips_and_reports(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "art"
    _img(root / "happy" / "sun.png", (250, 210, 40))
    _img(root / "Anger" / "fire.jpg", RED)  # corpus wording and case map to the taxonomy
    _img(root / "sad" / "rain.png", BLUE)
    _img(root / "neutral" / "series" / "stone.webp", GREY)  # nested
    _img(root / "fear" / "night.png", (10, 10, 10))  # outside the default taxonomy
    (root / "happy" / "notes.txt").write_text("not an image")
    _corrupt(root / "sad" / "broken.jpg")
    _img(root / "stray.png")
    (root / ".cache").mkdir()
    with caplog.at_level(logging.WARNING, logger="trainer.art.corpora"):
        records = load_art_folder(root)
    got = {(r.id, r.label) for r in records}
    assert got == {
        ("happy/sun", "happy"),
        ("Anger/fire", "angry"),
        ("sad/rain", "sad"),
        ("neutral/series/stone", "neutral"),
    }
    assert all(
        isinstance(r, ArtRecord) and r.valence is None and r.arousal is None and r.path.is_file() for r in records
    )
    assert records.label_counts() == {"angry": 1, "happy": 1, "neutral": 1, "sad": 1}
    report = records.report
    assert report.count == 4
    assert report.reasons() == {"unmapped": 1, "not an image": 1, "unreadable": 1, "unlabelled": 1}
    assert "broken.jpg" in report.summary() and "skipped 4" in report.summary()
    assert "skipped 4" in caplog.text
    # seed3 maps the fear folder to sad and drops neutral.
    seed3 = load_art_folder(root, taxonomy="seed3")
    assert {r.id: r.label for r in seed3}["fear/night"] == "sad"
    assert "neutral" not in seed3.label_counts()
    with pytest.raises(ArtLoadError):
        load_art_folder(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------------
# CSV


def test_csv_layout_round_trips_and_reports(tmp_path: Path) -> None:
    _img(tmp_path / "imgs" / "a.png", RED)
    _img(tmp_path / "imgs" / "b.png", BLUE)
    absolute = _img(tmp_path / "elsewhere" / "c.png", GREY)
    _corrupt(tmp_path / "imgs" / "bad.png")
    _img(tmp_path / "imgs" / "d.png")
    (tmp_path / "art.csv").write_text(
        "path,label,valence,arousal\n"
        "imgs/a.png,angry,-0.7,0.8\n"
        "imgs/b.png,sadness,,\n"
        f"{absolute},neutral,0.0,-0.1\n"
        "imgs/bad.png,happy,0.5,0.5\n"
        "imgs/missing.png,happy,0.5,0.5\n"
        "imgs/d.png,surprise,0.2,0.9\n"
        "imgs/d.png,happy,1.5,0.2\n"
        "imgs/d.png,happy,abc,0.2\n"
    )
    records = load_art_csv(tmp_path / "art.csv")
    assert [(r.id, r.label, r.valence, r.arousal) for r in records] == [
        ("imgs/a", "angry", -0.7, 0.8),
        ("imgs/b", "sad", None, None),
        (absolute.with_suffix("").as_posix(), "neutral", 0.0, -0.1),
    ]
    assert records[0].path == tmp_path / "imgs" / "a.png"
    assert records.report.reasons() == {"unreadable": 1, "missing": 1, "unmapped": 1, "bad value": 2}
    assert "line 5" in records.report.summary()


def test_csv_without_va_columns_with_ids_and_image_root(tmp_path: Path) -> None:
    _img(tmp_path / "pics" / "x.png", GREEN)
    (tmp_path / "index.csv").write_text("id,path,label\nart-1,x.png,happy\n")
    records = load_art_csv(tmp_path / "index.csv", image_root=tmp_path / "pics")
    assert records == [ArtRecord(tmp_path / "pics" / "x.png", "happy", None, None, "art-1")]
    assert records.report.count == 0
    (tmp_path / "wrong.csv").write_text("file,emotion\nx.png,happy\n")
    with pytest.raises(ArtLoadError, match="path, label"):
        load_art_csv(tmp_path / "wrong.csv")
    with pytest.raises(ArtLoadError, match="no such file"):
        load_art_csv(tmp_path / "absent.csv")


# --------------------------------------------------------------------------------------------------
# WikiArt Emotions

_WIKIART_META = (
    "ID",
    "Style",
    "Category",
    "Artist",
    "Title",
    "Year",
    "Image URL",
    "Painting Info URL",
    "Artist Info URL",
    "Is painting",
    "Face/body",
    "Ave. art rating",
)


def _wikiart_tsv(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write a table with the dataset's real header: metadata, then 20 emotions for each of three views."""
    views = ("Art (image+title)", "ImageOnly", "TitleOnly")
    header = [*_WIKIART_META, *(f"{v}: {e}" for v in views for e in WIKIART_EMOTIONS)]
    lines = ["\t".join(header)]
    for row in rows:
        lines.append("\t".join(str(row.get(col, 0)) for col in header))
    path.write_text("\n".join(lines) + "\n")
    return path


def _wikiart_row(item: str, votes: dict[str, float], view: str = "ImageOnly", **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "ID": item,
        "Style": "Modern Art",
        "Category": "Abstract Art",
        "Artist": "Someone",
        "Title": "Untitled",
        "Year": "1950",
        "Image URL": f"https://uploads.wikiart.org/images/someone/{item}-untitled.jpg",
        "Is painting": "yes",
        "Face/body": "none",
        "Ave. art rating": "1.2",
    }
    row.update({f"{view}: {e}": x for e, x in votes.items()})
    row.update(extra)
    return row


def test_wikiart_emotions_layout_majority_vote_and_reports(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for item, colour in (("58c6237dedc2c9c7dc0de1ae", RED), ("58c6237dedc2c9c7dc0de1af", (250, 210, 40))):
        _img(images / f"{item}.jpg", colour)
    _img(images / "58c62a.png", BLUE)
    _img(images / "58c62b.jpg")
    _img(images / "58c62c.jpg")
    _img(images / "58c62g-untitled.jpg", GREY)  # found through the URL's file name
    _corrupt(images / "58c62h.jpg")
    rows = [
        _wikiart_row("58c6237dedc2c9c7dc0de1ae", {"anger": 0.5, "fear": 0.3, "sadness": 0.2}),
        _wikiart_row(
            "58c6237dedc2c9c7dc0de1af", {"happiness": 0.6, "love": 0.3}, **{"Art (image+title): sadness": 0.9}
        ),
        _wikiart_row("58c62a", {"pessimism": 0.4, "happiness": 0.1}),  # pessimism -> sad
        _wikiart_row("58c62b", {"fear": 0.7, "sadness": 0.2}),  # unmapped top emotion
        _wikiart_row("58c62c", {"sadness": 0.4, "happiness": 0.4}),  # ambiguous
        _wikiart_row("58c62d", {"happiness": 0.5}),  # no image downloaded
        _wikiart_row("58c62e", {}),  # no votes
        _wikiart_row("58c62f", {"love": 0.5, "happiness": 0.5}),  # tie inside one class: fine, but no image
        _wikiart_row("58c62g", {"neutral": 0.6}),
        _wikiart_row("58c62h", {"happiness": 0.6}),  # corrupt image
    ]
    tsv = _wikiart_tsv(tmp_path / "WikiArt-Emotions-All.tsv", rows)
    records = load_wikiart_emotions(tsv, images)
    assert {r.id: r.label for r in records} == {
        "58c6237dedc2c9c7dc0de1ae": "angry",
        "58c6237dedc2c9c7dc0de1af": "happy",
        "58c62a": "sad",
        "58c62g": "neutral",
    }
    assert {r.id: r.path.name for r in records}["58c62g"] == "58c62g-untitled.jpg"
    assert all(r.valence is None and r.arousal is None for r in records)
    reasons = dict(records.report.skipped)
    assert reasons["58c62b"].startswith("unmapped") and reasons["58c62c"].startswith("ambiguous")
    assert reasons["58c62d"].startswith("missing") and reasons["58c62f"].startswith("missing")
    assert reasons["58c62e"].startswith("no agreement") and reasons["58c62h"].startswith("unreadable")
    # Another view reads other columns; seed3 maps fear to sad.
    by_title = load_wikiart_emotions(tsv, images, view="Art (image+title)")
    assert {r.id: r.label for r in by_title} == {"58c6237dedc2c9c7dc0de1af": "sad"}
    assert {r.id: r.label for r in load_wikiart_emotions(tsv, images, taxonomy="seed3")}["58c62b"] == "sad"
    assert "58c62a" not in {r.id for r in load_wikiart_emotions(tsv, images, min_votes=0.45)}
    with pytest.raises(ValueError):
        load_wikiart_emotions(tsv, images, view="Picture")


def test_wikiart_agreement_file_with_binary_labels(tmp_path: Path) -> None:
    _img(tmp_path / "img" / "a1.jpg")
    _img(tmp_path / "img" / "a2.jpg")
    rows = [_wikiart_row("a1", {"happiness": 1, "optimism": 1}), _wikiart_row("a2", {"anger": 1, "happiness": 1})]
    records = load_wikiart_emotions(_wikiart_tsv(tmp_path / "WikiArt-Emotions-Ag4.tsv", rows), tmp_path / "img")
    assert [(r.id, r.label) for r in records] == [("a1", "happy")]
    assert records.report.skipped[0][0] == "a2" and records.report.skipped[0][1].startswith("ambiguous")
    (tmp_path / "other.tsv").write_text("name\tscore\nx\t1\n")
    with pytest.raises(ArtLoadError, match="WikiArt"):
        load_wikiart_emotions(tmp_path / "other.tsv", tmp_path)


# --------------------------------------------------------------------------------------------------
# D-ViSA


def test_dvisa_layout_round_trips_and_reports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _img(data / "aaron-siskind_acolman-1-1955.jpg", GREY)
    _img(data / "alma-woodsey-thomas_red-abstraction-1960.jpg", RED)
    _img(data / "alice-baber_lord-of-the-rainbow-1976.jpg", (250, 210, 40))
    _img(data / "arshile-gorky_soft-night.jpg", BLUE)
    _img(data / "betty-parsons_untitled(1).jpg")
    _corrupt(data / "basil-beattie_city-1986.jpg")
    (tmp_path / "D-ViSA.csv").write_text(
        "artwork,final_emo,final_vad\n"
        'aaron-siskind_acolman-1-1955.jpg,sadness,"[0.25, 0.05, 0.4]"\n'
        'alma-woodsey-thomas_red-abstraction-1960.jpg,anger,"[0.35, 0.9, 0.8500000000000001]"\n'
        'alice-baber_lord-of-the-rainbow-1976.jpg,contentment,"[0.7, 0.25, 0.3]"\n'
        'arshile-gorky_soft-night.jpg,fear,"[0.2, 0.5, 0.45]"\n'
        'betty-parsons_untitled(1).jpg,awe,"[0.45, 0.6, 0.55]"\n'
        'basil-beattie_city-1986.jpg,excitement,"[0.5, 0.6, 0.5]"\n'
        'betty-parsons_untitled(1).jpg,amusement,"[0.45]"\n'
        'betty-parsons_untitled(1).jpg,amusement,"[1.45, 0.2, 0.1]"\n'
        'missing_image.jpg,amusement,"[0.8, 0.6, 0.5]"\n'
    )
    records = load_dvisa(tmp_path / "D-ViSA.csv")
    got = {r.id: (r.label, round(r.valence, 6), round(r.arousal, 6)) for r in records}
    assert got == {
        "aaron-siskind_acolman-1-1955": ("sad", -0.5, -0.9),
        "alma-woodsey-thomas_red-abstraction-1960": ("angry", -0.3, 0.8),
        "alice-baber_lord-of-the-rainbow-1976": ("happy", 0.4, -0.5),
    }
    assert records[0].path == data / "aaron-siskind_acolman-1-1955.jpg"
    assert records.report.reasons() == {"unmapped": 2, "unreadable": 1, "bad value": 2, "missing": 1}
    assert {r.id: r.label for r in load_dvisa(tmp_path / "D-ViSA.csv", taxonomy="seed3")}[
        "arshile-gorky_soft-night"
    ] == "sad"


def test_dvisa_full_annotation_file(tmp_path: Path) -> None:
    _img(tmp_path / "imgs" / "ad-reinhardt_yellow-painting-1949.jpg", (250, 210, 40))
    (tmp_path / "art_emo_vad_dataset.csv").write_text(
        ",artwork,emo1,emo2,emo3,vad1,vad2,vad3,final_emo,final_vad\n"
        "0,ad-reinhardt_yellow-painting-1949.jpg,['excitement'],['amusement'],\"['excitement', 'sadness']\","
        '"[0.9, 0.8, 0.5]","[0.7, 0.3, 0.2]","[0.5, 0.7, 0.7]",amusement,"[0.7, 0.3, 0.2]"\n'
    )
    records = load_dvisa(tmp_path / "art_emo_vad_dataset.csv", tmp_path / "imgs")
    assert len(records) == 1 and records[0].label == "happy"
    assert records[0].valence == pytest.approx(0.4) and records[0].arousal == pytest.approx(-0.4)
    (tmp_path / "x.csv").write_text("artwork,emotion\na.jpg,anger\n")
    with pytest.raises(ArtLoadError, match="D-ViSA"):
        load_dvisa(tmp_path / "x.csv")


# --------------------------------------------------------------------------------------------------
# Records as a dataset


def test_record_dataset_loads_items(tmp_path: Path) -> None:
    records = [
        ArtRecord(_img(tmp_path / "a.png", RED), "angry", -0.6, 0.7, "a"),
        ArtRecord(_img(tmp_path / "b.png", BLUE), "sad", None, None, "b"),
    ]
    ds = ArtRecordDataset(records, size=16)
    assert len(ds) == 2
    item = ds[0]
    assert item.image.shape == (16, 16, 3) and item.label == "angry" and item.valence == -0.6 and item.id == "a"
    assert math.isnan(ds[1].valence) and math.isnan(ds[1].arousal)
    filled = ArtRecordDataset(records, size=16, fill_va=True)[1]
    assert (filled.valence, filled.arousal) == ART_VA["sad"]
