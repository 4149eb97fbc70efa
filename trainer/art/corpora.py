"""Loaders for art corpora: folder-per-label, CSV, WikiArt Emotions and D-ViSA layouts.

Every loader returns an `ArtRecords` list of `ArtRecord(path, label, valence, arousal, id)` with labels
in the project's taxonomy. Rows or files that cannot be used (unreadable image, missing file, emotion
outside the taxonomy, bad values) are skipped and reported — counted, with the first examples, in
`records.report` and one warning log line — never fatal: a public corpus always has a few bad files.

Emotion words from the corpora are mapped to the taxonomy by `emotion_map`:

- "default" (angry, happy, sad, neutral): anger -> angry; happiness, joy, amusement, excitement,
  contentment, love, optimism -> happy; sadness, pessimism, regret -> sad; neutral, calm -> neutral.
  Everything else (fear, disgust, awe, surprise, trust, shame, ...) is reported as unmapped.
- "seed3" (angry, happy, sad): as default without neutral, and fear -> sad, as in the seed papers.

Layouts (see docs/art.md for details and sources):

- folder: ``root/<emotion>/<image>``; the folder name is the emotion word.
- CSV: header ``path,label[,valence,arousal]`` (an ``id`` column is optional); paths relative to the
  CSV's folder; valence and arousal in [-1, 1], blank when unknown.
- WikiArt Emotions (Mohammad & Kiritchenko, LREC 2018): ``WikiArt-Emotions-All.tsv`` (or ``-Ag4``),
  tab-separated, one row per artwork with ``ID``, ``Image URL`` and one column per emotion and view,
  e.g. ``ImageOnly: anger`` holding the share of annotators who chose it. The label is the emotion with
  the most votes (ties between classes are reported as ambiguous). Images are not distributed with the
  annotations: download them yourself to ``<image_dir>/<ID>.jpg`` (any common extension, or the URL's
  file name).
- D-ViSA (Kim et al., ICCV Workshops 2023): ``D-ViSA.csv`` with columns ``artwork`` (image file name),
  ``final_emo`` (one of amusement, anger, awe, contentment, disgust, excitement, fear, sadness) and
  ``final_vad`` (a JSON-style list "[valence, arousal, dominance]" each in [0, 1]), images in a ``data``
  folder beside it. ``art_emo_vad_dataset.csv`` (per-annotator columns plus the same final ones) reads
  the same way. Valence and arousal are rescaled to [-1, 1].
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from engine.errors import SynesthesiaError
from trainer.art.painter import ART_VA, ArtItem

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArtLoadError",
    "ArtLoadReport",
    "ArtRecord",
    "ArtRecordDataset",
    "ArtRecords",
    "check_image",
    "emotion_map",
    "load_art_csv",
    "load_art_folder",
    "load_dvisa",
    "load_image",
    "load_wikiart_emotions",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

WIKIART_EMOTIONS: tuple[str, ...] = (
    "agreeableness",
    "anger",
    "anticipation",
    "arrogance",
    "disagreeableness",
    "disgust",
    "fear",
    "gratitude",
    "happiness",
    "humility",
    "love",
    "optimism",
    "pessimism",
    "regret",
    "sadness",
    "shame",
    "shyness",
    "surprise",
    "trust",
    "neutral",
)
WIKIART_VIEWS: tuple[str, ...] = ("ImageOnly", "Art (image+title)", "TitleOnly")


class ArtLoadError(SynesthesiaError):
    """An art corpus index or an image cannot be read; the message names the file."""

    exit_code = 2


# --------------------------------------------------------------------------------------------------
# Taxonomy

_DEFAULT_WORDS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "rage", "annoyance", "mad"),
    "happy": ("happy", "happiness", "joy", "amusement", "excitement", "contentment", "love", "optimism"),
    "sad": ("sad", "sadness", "sorrow", "grief", "pessimism", "regret"),
    "neutral": ("neutral", "calm"),
}


def emotion_map(taxonomy: str | Sequence[str] = "default") -> dict[str, str]:
    """Emotion word (lower case) -> class, for "default", "seed3" or an explicit subset of classes."""
    if isinstance(taxonomy, str):
        if taxonomy == "default":
            classes: tuple[str, ...] = ("angry", "happy", "sad", "neutral")
        elif taxonomy == "seed3":
            mapping = emotion_map(("angry", "happy", "sad"))
            mapping.update({"fear": "sad", "fearful": "sad"})  # as in the seed papers
            return mapping
        else:
            raise ValueError(f"unknown taxonomy {taxonomy!r}; use 'default', 'seed3' or a list of classes")
    else:
        classes = tuple(taxonomy)
    unknown = [c for c in classes if c not in _DEFAULT_WORDS]
    if unknown:
        raise ValueError(f"no emotion words known for classes {unknown}; known: {', '.join(_DEFAULT_WORDS)}")
    return {word: c for c in classes for word in _DEFAULT_WORDS[c]}


def _resolve_map(taxonomy: str | Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(taxonomy, Mapping):
        return {_norm_word(k): v for k, v in taxonomy.items()}
    return emotion_map(taxonomy)


def _norm_word(word: str) -> str:
    return word.strip().lower().replace("_", " ").replace("-", " ")


# --------------------------------------------------------------------------------------------------
# Records and reports


class ArtRecord(NamedTuple):
    """One artwork: image path, class label, valence/arousal in [-1, 1] when known, corpus id."""

    path: Path
    label: str
    valence: float | None
    arousal: float | None
    id: str


@dataclass
class ArtLoadReport:
    """What a loader skipped and why: (item, reason) pairs, in corpus order."""

    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, item: str | Path, reason: str) -> None:
        self.skipped.append((str(item), reason))

    @property
    def count(self) -> int:
        return len(self.skipped)

    def reasons(self) -> dict[str, int]:
        """Skipped items per reason kind (the text before the first colon)."""
        out: dict[str, int] = {}
        for _, reason in self.skipped:
            kind = reason.split(":", 1)[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def summary(self, examples: int = 5) -> str:
        if not self.skipped:
            return f"{self.source}: nothing skipped"
        first = "; ".join(f"{item} ({reason})" for item, reason in self.skipped[:examples])
        more = f"; and {self.count - examples} more" if self.count > examples else ""
        return f"{self.source}: skipped {self.count} item(s): {first}{more}"


class ArtRecords(list[ArtRecord]):
    """A list of records that also carries the loader's `report`."""

    def __init__(self, records: Iterable[ArtRecord] = (), report: ArtLoadReport | None = None) -> None:
        super().__init__(records)
        self.report = report if report is not None else ArtLoadReport("records")

    def label_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self:
            out[r.label] = out.get(r.label, 0) + 1
        return out


def _finish(records: list[ArtRecord], report: ArtLoadReport) -> ArtRecords:
    if report.skipped:
        log.warning(report.summary())
    return ArtRecords(records, report)


# --------------------------------------------------------------------------------------------------
# Images

# Errors PIL raises for files it cannot identify, truncated or corrupt data, and decompression bombs.
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def check_image(path: str | Path, *, decode: bool = False) -> str | None:
    """None if `path` is a readable image, else a short reason.

    The default checks the header and structure without decoding pixels (fast; catches wrong or
    corrupt files and most truncations); decode=True decodes fully, which also catches truncated JPEGs.
    """
    path = Path(path)
    if not path.is_file():
        return "missing: no such file"
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            else:
                im.verify()
    except _IMAGE_ERRORS as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"
    return None


_CHECKS = ("none", "verify", "decode")


def _checker(check: str) -> Callable[[Path], str | None]:
    if check not in _CHECKS:
        raise ValueError(f"unknown check {check!r}; choose from {', '.join(_CHECKS)}")
    if check == "none":
        return lambda path: None if path.is_file() else "missing: no such file"
    return partial(check_image, decode=check == "decode")


def load_image(path: str | Path, size: int = 128, *, crop: bool = True) -> np.ndarray:
    """Read an image as RGB uint8 [size, size, 3]: EXIF-rotated, centre-cropped to a square, resized.

    With crop=False the whole image is squashed to the square instead. Raises ArtLoadError naming the
    file when it cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Transparent areas over white, as a viewer shows them, instead of whatever colour
                # the hidden pixels happen to hold.
                rgba = im.convert("RGBA")
                im = Image.new("RGB", rgba.size, (255, 255, 255))
                im.paste(rgba, mask=rgba.getchannel("A"))
            else:
                im = im.convert("RGB")
            if crop:
                im = ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS)
            else:
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8).copy()
    except _IMAGE_ERRORS as exc:
        raise ArtLoadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


class ArtRecordDataset:
    """Records as a dataset of ArtItem, images loaded on access at `size`.

    Unknown valence/arousal are NaN, or the label's ART_VA anchor with fill_va=True (a coarse stand-in
    for training that needs a VA target for every item).
    """

    def __init__(self, records: Sequence[ArtRecord], size: int = 128, *, fill_va: bool = False) -> None:
        self.records = list(records)
        self.size = int(size)
        self.fill_va = fill_va

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ArtItem:
        r = self.records[index]
        anchor = ART_VA.get(r.label, (float("nan"), float("nan"))) if self.fill_va else (float("nan"),) * 2
        v = r.valence if r.valence is not None else anchor[0]
        a = r.arousal if r.arousal is not None else anchor[1]
        return ArtItem(image=load_image(r.path, self.size), label=r.label, valence=v, arousal=a, id=r.id)


# --------------------------------------------------------------------------------------------------
# Loaders


def _read_table(path: Path, delimiter: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise ArtLoadError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtLoadError(f"{path}: cannot read ({exc})") from exc
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    fields = [f.strip() for f in (reader.fieldnames or [])]
    rows = [
        {(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()} for row in reader
    ]
    return fields, rows


def _va(value: str, what: str) -> float | None:
    """Parse an optional VA value in [-1, 1]; blank -> None; raises ValueError with a reason."""
    if value == "":
        return None
    x = float(value)
    if not -1.0 <= x <= 1.0:
        raise ValueError(f"bad {what}: {value} outside [-1, 1]")
    return x


def _classes_in(mapping: Mapping[str, str]) -> str:
    return ", ".join(sorted(set(mapping.values())))


def load_art_folder(
    root: str | Path,
    *,
    taxonomy: str | Sequence[str] | Mapping[str, str] = "default",
    check: str = "verify",
) -> ArtRecords:
    """Images under ``root/<emotion>/`` (nested folders allowed); the first folder level is the label.

    check: "verify" (default) reads each image's header and structure, fast, to report unreadable
    files now rather than mid-training; "decode" decodes every image fully (slow, thorough); "none"
    only checks that the file exists. All loaders take the same option.
    """
    root = Path(root)
    if not root.is_dir():
        raise ArtLoadError(f"{root}: no such folder")
    mapping = _resolve_map(taxonomy)
    image_problem = _checker(check)
    report = ArtLoadReport(f"art folder {root}")
    records: list[ArtRecord] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = mapping.get(_norm_word(folder.name))
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        for f in files:
            rel = f.relative_to(root)
            if label is None:
                report.skip(rel, f"unmapped: folder {folder.name!r} is not one of {_classes_in(mapping)}")
            elif f.suffix.lower() not in IMAGE_EXTENSIONS:
                report.skip(rel, f"not an image: extension {f.suffix or '(none)'}")
            elif (reason := image_problem(f)) is not None:
                report.skip(rel, reason)
            else:
                records.append(ArtRecord(f, label, None, None, rel.with_suffix("").as_posix()))
    for f in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        report.skip(f.name, "unlabelled: file outside any label folder")
    return _finish(records, report)


def load_art_csv(
    csv_path: str | Path,
    *,
    image_root: str | Path | None = None,
    taxonomy: str | Sequence[str] | Mapping[str, str] = "default",
    check: str = "verify",
) -> ArtRecords:
    """A CSV with header ``path,label[,valence,arousal][,id]``; relative paths resolve against
    image_root (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    fields, rows = _read_table(csv_path, ",")
    missing = [c for c in ("path", "label") if c not in fields]
    if missing:
        raise ArtLoadError(f"{csv_path}: missing column(s) {', '.join(missing)} (header: {','.join(fields)})")
    base = Path(image_root) if image_root is not None else csv_path.parent
    mapping = _resolve_map(taxonomy)
    image_problem = _checker(check)
    report = ArtLoadReport(f"art CSV {csv_path}")
    records: list[ArtRecord] = []
    for line, row in enumerate(rows, start=2):
        where = f"line {line}"
        if not row.get("path"):
            report.skip(where, "bad row: empty path")
            continue
        path = Path(row["path"])
        path = path if path.is_absolute() else base / path
        label = mapping.get(_norm_word(row.get("label", "")))
        if label is None:
            report.skip(where, f"unmapped: label {row.get('label', '')!r} is not one of {_classes_in(mapping)}")
            continue
        try:
            v, a = _va(row.get("valence", ""), "valence"), _va(row.get("arousal", ""), "arousal")
        except ValueError as exc:
            report.skip(where, f"bad value: {exc}")
            continue
        if (reason := image_problem(path)) is not None:
            report.skip(f"{where} {row['path']}", reason)
            continue
        records.append(ArtRecord(path, label, v, a, row.get("id") or Path(row["path"]).with_suffix("").as_posix()))
    return _finish(records, report)


def _find_image(image_dir: Path, stem: str, url: str = "") -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        for candidate in (image_dir / f"{stem}{ext}", image_dir / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    if url:
        candidate = image_dir / url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        if candidate.is_file():
            return candidate
    return None


def load_wikiart_emotions(
    tsv_path: str | Path,
    image_dir: str | Path,
    *,
    view: str = "ImageOnly",
    taxonomy: str | Sequence[str] | Mapping[str, str] = "default",
    min_votes: float = 0.0,
    check: str = "verify",
) -> ArtRecords:
    """WikiArt Emotions annotations (``WikiArt-Emotions-All.tsv`` or ``-Ag4.tsv``) + downloaded images.

    view: which annotation to use — "ImageOnly" (default: the emotion the picture alone evokes, which is
    what a generated image can carry), "Art (image+title)" or "TitleOnly". The label is the emotion with
    the most votes over all twenty; an item is skipped when that emotion is outside the taxonomy,
    when two classes tie for the top, or when the top share is not above min_votes.
    """
    if view not in WIKIART_VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(WIKIART_VIEWS)}")
    tsv_path, image_dir = Path(tsv_path), Path(image_dir)
    fields, rows = _read_table(tsv_path, "\t")
    columns = {e: f"{view}: {e}" for e in WIKIART_EMOTIONS if f"{view}: {e}" in fields}
    if "ID" not in fields or not columns:
        raise ArtLoadError(f"{tsv_path}: not a WikiArt Emotions table (needs ID and '{view}: <emotion>' columns)")
    mapping = _resolve_map(taxonomy)
    image_problem = _checker(check)
    report = ArtLoadReport(f"WikiArt Emotions {tsv_path.name}")
    records: list[ArtRecord] = []
    for row in rows:
        item = row.get("ID", "") or "(no ID)"
        try:
            votes = {e: float(row.get(col) or 0.0) for e, col in columns.items()}
        except ValueError as exc:
            report.skip(item, f"bad value: {exc}")
            continue
        top = max(votes.values())
        if top <= min_votes:
            report.skip(item, f"no agreement: top vote {top:g} <= {min_votes:g}")
            continue
        winners = [e for e, x in votes.items() if x == top]
        classes = {mapping.get(e) for e in winners}
        if len(classes) > 1:
            report.skip(item, f"ambiguous: tie between {', '.join(winners)}")
            continue
        label = classes.pop()
        if label is None:
            report.skip(item, f"unmapped: top emotion {'/'.join(winners)} is not one of {_classes_in(mapping)}")
            continue
        path = _find_image(image_dir, item, row.get("Image URL", ""))
        if path is None:
            report.skip(item, f"missing: no image {item}.* in {image_dir}")
            continue
        if (reason := image_problem(path)) is not None:
            report.skip(item, reason)
            continue
        records.append(ArtRecord(path, label, None, None, item))
    return _finish(records, report)


def load_dvisa(
    csv_path: str | Path,
    image_dir: str | Path | None = None,
    *,
    taxonomy: str | Sequence[str] | Mapping[str, str] = "default",
    check: str = "verify",
) -> ArtRecords:
    """D-ViSA (``D-ViSA.csv`` or ``art_emo_vad_dataset.csv``), images in image_dir (default: ``data``
    beside the CSV). final_emo is the label, final_vad's first two values the valence and arousal."""
    csv_path = Path(csv_path)
    image_dir = Path(image_dir) if image_dir is not None else csv_path.parent / "data"
    fields, rows = _read_table(csv_path, ",")
    missing = [c for c in ("artwork", "final_emo", "final_vad") if c not in fields]
    if missing:
        raise ArtLoadError(f"{csv_path}: not a D-ViSA table, missing column(s) {', '.join(missing)}")
    mapping = _resolve_map(taxonomy)
    image_problem = _checker(check)
    report = ArtLoadReport(f"D-ViSA {csv_path.name}")
    records: list[ArtRecord] = []
    for row in rows:
        name = row["artwork"]
        item = Path(name).stem or "(no artwork)"
        label = mapping.get(_norm_word(row["final_emo"]))
        if label is None:
            report.skip(item, f"unmapped: emotion {row['final_emo']!r} is not one of {_classes_in(mapping)}")
            continue
        try:
            vad = json.loads(row["final_vad"])
            v01, a01 = float(vad[0]), float(vad[1])
            if not (0.0 <= v01 <= 1.0 and 0.0 <= a01 <= 1.0):
                raise ValueError("valence or arousal outside [0, 1]")
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            report.skip(item, f"bad value: final_vad {row['final_vad']!r} ({exc})")
            continue
        path = image_dir / name
        if (reason := image_problem(path)) is not None:
            report.skip(item, reason)
            continue
        records.append(ArtRecord(path, label, 2.0 * v01 - 1.0, 2.0 * a01 - 1.0, item))
    return _finish(records, report)
