"""Corpus loaders: parse labels and speakers from each corpus's own file naming into `AudioRecord`s.

Every loader returns a `LoadResult(records, report)`. Files that cannot be read, whose names do not
parse, whose label is unknown or contradicts their folder are skipped and counted in the `AudioLoadReport`
(with the first few examples); a bad file is never fatal. A missing root directory or a CSV without its
required columns is (ValueError / FileNotFoundError): nothing could be loaded from it.

`load_corpus("ravdess:/data/ravdess")` picks the loader from a spec; without a prefix the corpus is
detected from folder and file names. docs/data.md lists the naming rules.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from engine.audio.frontend import FrontEndConfig, trim_silence
from engine.audio.loading import load_audio
from engine.emotions import canonical_emotion, normalize_label
from trainer.audio.taxonomy import Taxonomy, va_target

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"})
MAX_EXAMPLES = 5

ISSUE_KINDS = (
    "unreadable",  # the header cannot be decoded, or the file holds no samples
    "unparseable",  # the name (or CSV row) does not follow the corpus's naming rule
    "unknown_label",  # the emotion code or folder is not in the vocabulary
    "mislabelled",  # the name contradicts its folder, or the code combination cannot exist in the corpus
    "duplicate",  # the same clip (speaker + name) seen twice, e.g. a nested copy of the corpus
    "missing_audio",  # an annotation or CSV row names a file that is not there
    "unannotated",  # continuous corpora: audio without an annotation row
)


@dataclass(frozen=True, slots=True)
class AudioRecord:
    """One clip. `speaker` is corpus-prefixed ("ravdess:01") and is the grouping key for splits.

    `emotion` is canonical, or None for continuous corpora. `valence`/`arousal` are in [-1, 1] and only
    set where the corpus rates them; `trainer.audio.taxonomy.va_target` supplies circumplex targets otherwise.
    `speaker_known` is False where the corpus does not say who speaks: each such clip is its own group.
    """

    path: Path
    emotion: str | None
    speaker: str
    corpus: str
    intensity: str | None = None
    valence: float | None = None
    arousal: float | None = None
    speaker_known: bool = True


@dataclass
class IssueLog:
    """How many files had one kind of problem, with the first few as examples."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


@dataclass
class AudioLoadReport:
    """What a loader found: counts per emotion, speaker and corpus, and every skipped file by kind."""

    source: str
    records: int = 0
    ignored: int = 0  # hidden or non-audio files, which are not problems
    filtered: int = 0  # valid clips left out on request (e.g. RAVDESS song when vocal="speech")
    per_emotion: Counter[str] = field(default_factory=Counter)
    per_speaker: Counter[str] = field(default_factory=Counter)
    per_corpus: Counter[str] = field(default_factory=Counter)
    issues: dict[str, IssueLog] = field(default_factory=dict)

    def add_issue(self, kind: str, path: Path | str, reason: str) -> None:
        if kind not in ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {kind!r}")
        self.issues.setdefault(kind, IssueLog()).add(f"{path}: {reason}")

    def count(self, record: AudioRecord) -> None:
        self.records += 1
        self.per_emotion[record.emotion or "(continuous)"] += 1
        self.per_speaker[record.speaker] += 1
        self.per_corpus[record.corpus] += 1

    @property
    def skipped(self) -> int:
        return sum(log.count for log in self.issues.values())

    @property
    def speakers(self) -> int:
        return len(self.per_speaker)

    @classmethod
    def combine(cls, reports: Iterable[AudioLoadReport]) -> AudioLoadReport:
        reports = list(reports)
        out = cls(source=" + ".join(r.source for r in reports))
        for r in reports:
            out.records += r.records
            out.ignored += r.ignored
            out.filtered += r.filtered
            out.per_emotion.update(r.per_emotion)
            out.per_speaker.update(r.per_speaker)
            out.per_corpus.update(r.per_corpus)
            for kind, log in r.issues.items():
                merged = out.issues.setdefault(kind, IssueLog())
                merged.count += log.count
                merged.examples.extend(log.examples[: MAX_EXAMPLES - len(merged.examples)])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "speakers": self.speakers,
            "ignored": self.ignored,
            "filtered": self.filtered,
            "per_corpus": dict(sorted(self.per_corpus.items())),
            "per_emotion": dict(sorted(self.per_emotion.items())),
            "issues": {k: {"count": v.count, "examples": v.examples} for k, v in self.issues.items()},
        }

    def summary(self) -> str:
        """A few human-readable lines for logs and reports."""
        emotions = ", ".join(f"{e} {n}" for e, n in sorted(self.per_emotion.items()))
        lines = [f"{self.source}: {self.records} clips, {self.speakers} speakers ({emotions})"]
        if self.filtered:
            lines.append(f"  filtered on request: {self.filtered}")
        for kind, log in self.issues.items():
            lines.append(f"  skipped {log.count} {kind}, e.g.:")
            lines.extend(f"    {example}" for example in log.examples)
        return "\n".join(lines)


class LoadResult(NamedTuple):
    records: list[AudioRecord]
    report: AudioLoadReport


class _SkipError(Exception):
    """Raised by a parser: this file is skipped and reported under `kind`."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class _FilteredError(Exception):
    """Raised by a parser: a valid clip the caller asked to leave out."""


# -- file walking and checks ---------------------------------------------------------------------------


def _require_dir(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such corpus directory")
    return root


def _audio_files(root: Path, report: AudioLoadReport) -> Iterator[Path]:
    """Audio files under root in sorted order (deterministic records); hidden and other files are ignored."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            # "._x.wav" are macOS resource forks: audio extension, no audio
            if name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
                report.ignored += 1
                continue
            yield path


def unreadable_reason(path: Path) -> str | None:
    """Why the file cannot be used (header undecodable, no samples), or None. Reads the header only."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, ValueError, TypeError, OSError) as exc:  # LibsndfileError is a RuntimeError
        return f"cannot decode ({exc})".replace("\n", " ")
    if info.frames <= 0:
        return "holds no samples"
    return None


def _collect(
    root: Path,
    source: str,
    parse: Callable[[Path], AudioRecord],
    verify: bool,
    dedupe: bool,
    files: Iterable[Path] | None = None,
    report: AudioLoadReport | None = None,
) -> LoadResult:
    """Run `parse` over the audio files, skipping and reporting what fails."""
    report = report or AudioLoadReport(source=source)
    records: list[AudioRecord] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in files if files is not None else _audio_files(root, report):
        try:
            record = parse(path)
        except _SkipError as skip:
            report.add_issue(skip.kind, path, skip.reason)
            continue
        except _FilteredError:
            report.filtered += 1
            continue
        if dedupe:
            key = (record.speaker, path.stem.lower())
            if key in seen:
                report.add_issue("duplicate", path, f"same clip as {seen[key]}")
                continue
            seen[key] = path
        if verify and (reason := unreadable_reason(path)):
            report.add_issue("unreadable", path, reason)
            continue
        records.append(record)
        report.count(record)
    return LoadResult(records, report)


# -- RAVDESS -------------------------------------------------------------------------------------------

_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}
_RAVDESS_FOLDER_RE = re.compile(r"^actor_(\d+)$", re.IGNORECASE)

Vocal = Literal["speech", "song", "both"]


def _parse_ravdess_name(stem: str) -> tuple[str, str, str, str]:
    """`MM-VV-EE-II-SS-RR-AA` -> (actor, emotion, intensity, channel "speech"|"song"); raises _SkipError."""
    m = _RAVDESS_RE.match(stem)
    if not m:
        raise _SkipError("unparseable", "expected MM-VV-EE-II-SS-RR-AA")
    modality, channel, emo, level, statement, repetition, actor = m.groups()
    if modality not in ("01", "03"):  # 02 is video-only: an audio file cannot carry it
        raise _SkipError("mislabelled", f"modality {modality} is not an audio modality")
    if channel not in ("01", "02") or level not in _RAVDESS_INTENSITY or statement not in ("01", "02"):
        raise _SkipError("unparseable", "vocal channel, intensity and statement must be 01 or 02")
    if repetition not in ("01", "02") or not 1 <= int(actor) <= 24:
        raise _SkipError("unparseable", "repetition must be 01/02 and actor 01-24")
    if emo not in _RAVDESS_EMOTIONS:
        raise _SkipError("unknown_label", f"emotion code {emo}")
    emotion = _RAVDESS_EMOTIONS[emo]
    if emotion == "neutral" and level == "02":
        raise _SkipError("mislabelled", "RAVDESS has no strong-intensity neutral")
    kind = "speech" if channel == "01" else "song"
    if kind == "song" and emotion in ("disgust", "surprised"):
        raise _SkipError("mislabelled", f"RAVDESS song has no {emotion}")
    return actor, emotion, _RAVDESS_INTENSITY[level], kind


def load_ravdess(root: str | Path, *, vocal: Vocal = "both", verify: bool = True) -> LoadResult:
    """RAVDESS `Actor_XX/MM-VV-EE-II-SS-RR-AA.wav|flac`, speech and/or song. Speaker `ravdess:AA`."""
    root = _require_dir(root)

    def parse(path: Path) -> AudioRecord:
        actor, emotion, intensity, kind = _parse_ravdess_name(path.stem)
        folder = _RAVDESS_FOLDER_RE.match(path.parent.name)
        if folder and int(folder.group(1)) != int(actor):
            raise _SkipError("mislabelled", f"actor {actor} inside {path.parent.name}")
        if vocal != "both" and kind != vocal:
            raise _FilteredError
        return AudioRecord(path, emotion, f"ravdess:{actor}", "ravdess", intensity)

    return _collect(root, f"ravdess:{root}", parse, verify, dedupe=True)


# -- CREMA-D -------------------------------------------------------------------------------------------

_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$", re.IGNORECASE)
_CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMAD_LEVELS: dict[str, str | None] = {"LO": "low", "MD": "medium", "HI": "high", "XX": None}


def _parse_cremad_name(stem: str) -> tuple[str, str, str | None]:
    """`1001_DFA_ANG_XX` -> (speaker, emotion, intensity); raises _SkipError."""
    m = _CREMAD_RE.match(stem)
    if not m:
        raise _SkipError("unparseable", "expected SPEAKER_SENTENCE_EMOTION_LEVEL, e.g. 1001_DFA_ANG_XX")
    speaker, _sentence, emo, level = (g.upper() for g in m.groups())
    if level not in _CREMAD_LEVELS:
        raise _SkipError("unparseable", f"level {level} is not LO/MD/HI/XX")
    if emo not in _CREMAD_EMOTIONS:
        raise _SkipError("unknown_label", f"emotion code {emo}")
    return speaker, _CREMAD_EMOTIONS[emo], _CREMAD_LEVELS[level]


def load_cremad(root: str | Path, *, verify: bool = True) -> LoadResult:
    """CREMA-D `1001_DFA_ANG_XX.wav` (speaker_sentence_emotion_level). Speaker `cremad:1001`."""
    root = _require_dir(root)

    def parse(path: Path) -> AudioRecord:
        speaker, emotion, intensity = _parse_cremad_name(path.stem)
        return AudioRecord(path, emotion, f"cremad:{speaker}", "cremad", intensity)

    return _collect(root, f"cremad:{root}", parse, verify, dedupe=True)


# -- TESS ----------------------------------------------------------------------------------------------

_TESS_SPEAKERS = ("OAF", "YAF")


def _parse_tess_name(stem: str) -> tuple[str, str]:
    """`OAF_back_angry` / `YAF_dog_ps` / `OAF_base_pleasant_surprise` -> (speaker, emotion); raises _SkipError."""
    parts = stem.split("_")
    if len(parts) < 3 or parts[0].upper() not in _TESS_SPEAKERS:
        raise _SkipError("unparseable", "expected OAF_word_emotion or YAF_word_emotion")
    # the emotion is the last token, or the last two for "pleasant_surprise(d)"
    emotion = canonical_emotion("_".join(parts[-2:])) if len(parts) >= 4 else None
    emotion = emotion or canonical_emotion(parts[-1])
    if emotion is None:
        raise _SkipError("unknown_label", f"emotion {parts[-1]!r}")
    return parts[0].upper(), emotion


def load_tess(root: str | Path, *, verify: bool = True) -> LoadResult:
    """TESS `OAF_back_angry.wav` in folders like `OAF_angry`, `YAF_pleasant_surprised`. Speaker `tess:OAF`."""
    root = _require_dir(root)

    def parse(path: Path) -> AudioRecord:
        speaker, emotion = _parse_tess_name(path.stem)
        folder = path.parent.name.split("_", 1)
        if len(folder) == 2 and folder[0].upper() in _TESS_SPEAKERS:
            folder_emotion = canonical_emotion(folder[1])
            if folder[0].upper() != speaker or (folder_emotion is not None and folder_emotion != emotion):
                raise _SkipError("mislabelled", f"{speaker} {emotion} inside {path.parent.name}")
        return AudioRecord(path, emotion, f"tess:{speaker}", "tess")

    return _collect(root, f"tess:{root}", parse, verify, dedupe=True)


# -- SAVEE ---------------------------------------------------------------------------------------------

_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_RE = re.compile(r"^(?:([a-z]{2})_)?(sa|su|a|d|f|h|n)(\d{2})$", re.IGNORECASE)
_SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}


def _parse_savee_name(stem: str, folder: str | None = None) -> tuple[str, str]:
    """`DC_a01`, or `a01` inside a speaker folder -> (speaker, emotion); raises _SkipError."""
    m = _SAVEE_RE.match(stem)
    if not m:
        raise _SkipError("unparseable", "expected [DC|JE|JK|KL]_<a|d|f|h|n|sa|su><NN>")
    prefix, code, _number = m.groups()
    prefix = prefix.upper() if prefix else None
    folder = folder.upper() if folder and folder.upper() in _SAVEE_SPEAKERS else None
    if prefix is not None and prefix not in _SAVEE_SPEAKERS:
        raise _SkipError("unparseable", f"unknown SAVEE speaker {prefix}")
    if prefix and folder and prefix != folder:
        raise _SkipError("mislabelled", f"speaker {prefix} inside folder {folder}")
    speaker = prefix or folder
    if speaker is None:
        raise _SkipError("unparseable", "no speaker prefix and not inside a DC/JE/JK/KL folder")
    return speaker, _SAVEE_EMOTIONS[code.lower()]


def load_savee(root: str | Path, *, verify: bool = True) -> LoadResult:
    """SAVEE `DC_a01.wav`, or `DC/a01.wav`; codes a d f h n sa su. Speaker `savee:DC`."""
    root = _require_dir(root)

    def parse(path: Path) -> AudioRecord:
        speaker, emotion = _parse_savee_name(path.stem, path.parent.name)
        return AudioRecord(path, emotion, f"savee:{speaker}", "savee")

    return _collect(root, f"savee:{root}", parse, verify, dedupe=True)


# -- EmoDB ---------------------------------------------------------------------------------------------

_EMODB_RE = re.compile(r"^(\d{2})([a-z]\d{2})([a-z])([a-z])$", re.IGNORECASE)
_EMODB_EMOTIONS = {
    "W": "angry",  # Wut/Ärger
    "L": "bored",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}


def _parse_emodb_name(stem: str) -> tuple[str, str]:
    """`03a01Fa` (speaker 2 digits, text code, emotion letter, version) -> (speaker, emotion); raises _SkipError."""
    m = _EMODB_RE.match(stem)
    if not m:
        raise _SkipError("unparseable", "expected SSTTTEV, e.g. 03a01Fa")
    speaker, _text, letter, _version = m.groups()
    emotion = _EMODB_EMOTIONS.get(letter.upper())
    if emotion is None:
        raise _SkipError("unknown_label", f"emotion letter {letter}")
    return speaker, emotion


def load_emodb(root: str | Path, *, verify: bool = True) -> LoadResult:
    """EmoDB `03a01Fa.wav`: speaker 03, 6th character the emotion (W L E A F T N). Speaker `emodb:03`."""
    root = _require_dir(root)

    def parse(path: Path) -> AudioRecord:
        speaker, emotion = _parse_emodb_name(path.stem)
        return AudioRecord(path, emotion, f"emodb:{speaker}", "emodb")

    return _collect(root, f"emodb:{root}", parse, verify, dedupe=True)


# -- folder per label (generic, and the Kaggle "Audio Emotions" compilation) ---------------------------


def identify_clip(stem: str) -> tuple[str, str, str, str | None] | None:
    """Recognise a file name from a known corpus: (corpus, speaker, emotion, intensity), or None.

    Compilations copy clips from RAVDESS, CREMA-D, TESS, SAVEE and EmoDB; recovering the original
    speaker keeps splits speaker-independent, also against the original corpus loaded alongside.
    """
    try:
        actor, emotion, intensity, _kind = _parse_ravdess_name(stem)
        return "ravdess", actor, emotion, intensity
    except _SkipError:
        pass
    try:
        return ("cremad", *_parse_cremad_name(stem))
    except _SkipError:
        pass
    for corpus, parser in (("tess", _parse_tess_name), ("emodb", _parse_emodb_name)):
        try:
            speaker, emotion = parser(stem)
        except _SkipError:
            continue
        return corpus, speaker, emotion, None
    # SAVEE only with its speaker prefix: a bare "a01" says nothing about who speaks
    m = _SAVEE_RE.match(stem)
    if m and m.group(1) and m.group(1).upper() in _SAVEE_SPEAKERS:
        speaker, emotion = _parse_savee_name(stem)
        return "savee", speaker, emotion, None
    return None


def _unwrap(root: Path) -> Path:
    """Descend through lone wrapper folders ("Audio Emotions/Angry/...") that are not labels themselves."""
    for _ in range(3):
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        dirs = [p for p in entries if p.is_dir()]
        has_audio = any(p.suffix.lower() in AUDIO_EXTENSIONS for p in entries if p.is_file())
        if len(dirs) != 1 or has_audio or canonical_emotion(dirs[0].name) is not None:
            break
        root = dirs[0]
    return root


def load_folder(root: str | Path, *, corpus: str = "folder", verify: bool = True) -> LoadResult:
    """Folder per label: `root/<label>/[<speaker>/]clip.wav`.

    The label folder may use any spelling in `engine.emotions.EMOTION_ALIASES`. The speaker is taken
    from a recognised corpus file name (`ravdess:01`, ...), else from a sub-folder under the label
    (`<corpus>:<name>`), else it is unknown and the clip forms its own split group.
    """
    root = _unwrap(_require_dir(root))

    def parse(path: Path) -> AudioRecord:
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            raise _SkipError("unparseable", "not inside a label folder")
        emotion = canonical_emotion(rel.parts[0])
        if emotion is None:
            raise _SkipError("unknown_label", f"label folder {rel.parts[0]!r}")
        known = identify_clip(path.stem)
        if known is not None:
            source, speaker, named_emotion, intensity = known
            if named_emotion != emotion:
                raise _SkipError("mislabelled", f"{source} name says {named_emotion}, folder says {emotion}")
            return AudioRecord(path, emotion, f"{source}:{speaker}", corpus, intensity)
        if len(rel.parts) >= 3:
            return AudioRecord(path, emotion, f"{corpus}:{rel.parts[1]}", corpus)
        return AudioRecord(path, emotion, f"{corpus}:?{rel.as_posix()}", corpus, speaker_known=False)

    return _collect(root, f"{corpus}:{root}", parse, verify, dedupe=False)


def load_audio_emotions(root: str | Path, *, verify: bool = True) -> LoadResult:
    """The Kaggle "Audio Emotions" compilation: Angry/ Happy/ Sad/ Neutral/ Fearful/ Disgusted/ Suprised/."""
    return load_folder(root, corpus="audio_emotions", verify=verify)


# -- CSV -----------------------------------------------------------------------------------------------

_CSV_COLUMNS = {
    "path": ("path", "file", "filename", "filepath", "audio"),
    "label": ("label", "emotion", "class"),
    "valence": ("valence",),
    "arousal": ("arousal",),
    "speaker": ("speaker", "speaker_id", "actor"),
    "intensity": ("intensity",),
}


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets write a BOM
        reader = csv.DictReader(f, skipinitialspace=True)
        header = [(h or "").strip() for h in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)} for row in reader]
    return header, rows


def _rescale(value: float, low: float, high: float) -> float:
    return 2.0 * (value - low) / (high - low) - 1.0


def load_csv(
    csv_path: str | Path,
    *,
    audio_root: str | Path | None = None,
    va_range: tuple[float, float] = (-1.0, 1.0),
    corpus: str | None = None,
    verify: bool = True,
) -> LoadResult:
    """CSV with a header: `path,label[,valence,arousal][,speaker][,intensity]` (column names case-insensitive).

    Paths are relative to `audio_root` (default: the CSV's folder). `label` may be empty on rows with
    valence and arousal; those are rescaled from `va_range` to [-1, 1]. Without a speaker column every
    clip is its own split group.
    """
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no such CSV file")
    corpus = corpus or csv_path.stem
    base = Path(audio_root).expanduser() if audio_root is not None else csv_path.parent
    header, rows = _read_csv(csv_path)
    lower = {h.lower(): h for h in header}
    cols = {key: next((lower[a] for a in aliases if a in lower), None) for key, aliases in _CSV_COLUMNS.items()}
    if cols["path"] is None or (cols["label"] is None and (cols["valence"] is None or cols["arousal"] is None)):
        wanted = "`path` and `label` (or `valence` and `arousal`)"
        raise ValueError(f"{csv_path}: needs a header with {wanted}; got {header}")
    report = AudioLoadReport(source=f"csv:{csv_path}")
    records: list[AudioRecord] = []
    low, high = va_range
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path.name}:{line}"
        raw_path = row.get(cols["path"], "")
        if not raw_path:
            report.add_issue("unparseable", where, "empty path")
            continue
        path = Path(raw_path).expanduser()
        path = path if path.is_absolute() else base / path
        label = row.get(cols["label"], "") if cols["label"] else ""
        emotion = canonical_emotion(label) if label else None
        if label and emotion is None:
            report.add_issue("unknown_label", where, f"label {label!r}")
            continue
        valence = arousal = None
        v_text = row.get(cols["valence"], "") if cols["valence"] else ""
        a_text = row.get(cols["arousal"], "") if cols["arousal"] else ""
        if v_text or a_text:
            try:
                valence, arousal = _rescale(float(v_text), low, high), _rescale(float(a_text), low, high)
            except ValueError:
                report.add_issue("unparseable", where, f"valence/arousal {v_text!r}, {a_text!r} are not numbers")
                continue
            if not (-1.0 - 1e-6 <= valence <= 1.0 + 1e-6 and -1.0 - 1e-6 <= arousal <= 1.0 + 1e-6):
                report.add_issue("mislabelled", where, f"valence/arousal {v_text}, {a_text} outside {va_range}")
                continue
            valence, arousal = float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1))
        if emotion is None and valence is None:
            report.add_issue("unparseable", where, "neither a label nor valence/arousal")
            continue
        if not path.is_file():
            report.add_issue("missing_audio", where, f"{path} does not exist")
            continue
        if verify and (reason := unreadable_reason(path)):
            report.add_issue("unreadable", path, reason)
            continue
        speaker_name = row.get(cols["speaker"], "") if cols["speaker"] else ""
        intensity = (normalize_label(row.get(cols["intensity"], "")) or None) if cols["intensity"] else None
        record = AudioRecord(
            path,
            emotion,
            f"{corpus}:{speaker_name}" if speaker_name else f"{corpus}:?{raw_path}",
            corpus,
            intensity,
            valence,
            arousal,
            speaker_known=bool(speaker_name),
        )
        records.append(record)
        report.count(record)
    return LoadResult(records, report)


# -- continuous (DEAM, PMEmo) --------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuousFormat:
    """Column names and rating scale of a continuous corpus's static (per-song) annotation CSV."""

    corpus: str
    id_column: str
    valence_column: str
    arousal_column: str
    scale: tuple[float, float]


# DEAM: annotations/annotations averaged per song/static_annotations_averaged_songs_*.csv, ratings 1-9.
DEAM_FORMAT = ContinuousFormat("deam", "song_id", "valence_mean", "arousal_mean", (1.0, 9.0))
# PMEmo2019: annotations/static_annotations.csv, ratings already averaged to [0, 1].
PMEMO_FORMAT = ContinuousFormat("pmemo", "musicId", "Valence(mean)", "Arousal(mean)", (0.0, 1.0))


def _find_annotation_csvs(root: Path, fmt: ContinuousFormat) -> list[Path]:
    """CSV files under root whose header has the format's id, valence and arousal columns."""
    wanted = {fmt.id_column.lower(), fmt.valence_column.lower(), fmt.arousal_column.lower()}
    found = []
    for path in sorted(root.rglob("*.csv")):
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), [])
        except (OSError, UnicodeDecodeError):
            continue
        if wanted <= {h.strip().lower() for h in header}:
            found.append(path)
    return found


def _song_key(text: str) -> str:
    # "0012" and "12" name the same song
    text = text.strip()
    return str(int(text)) if text.isdigit() else text


def load_continuous(
    root: str | Path,
    fmt: ContinuousFormat,
    *,
    annotations: str | Path | Iterable[str | Path] | None = None,
    verify: bool = True,
) -> LoadResult:
    """Audio folder + static annotation CSV(s): song id -> mean valence/arousal, rescaled to [-1, 1].

    Audio files are matched by file stem = song id. The song is the split group (speaker `deam:<id>`),
    since the corpora name no artists. Without `annotations`, every CSV under root with the format's
    columns is read (DEAM ships two, for songs 1-2000 and 2000-2058).
    """
    root = _require_dir(root)
    if annotations is None:
        csv_paths = _find_annotation_csvs(root, fmt)
    elif isinstance(annotations, str | Path):
        csv_paths = [Path(annotations)]
    else:
        csv_paths = [Path(a) for a in annotations]
    if not csv_paths:
        raise ValueError(
            f"{root}: no annotation CSV with columns {fmt.id_column}, {fmt.valence_column}, {fmt.arousal_column}"
        )
    report = AudioLoadReport(source=f"{fmt.corpus}:{root}")
    ratings: dict[str, tuple[float, float]] = {}
    low, high = fmt.scale
    for csv_path in csv_paths:
        header, rows = _read_csv(csv_path)
        lower = {h.lower(): h for h in header}
        names = (fmt.id_column, fmt.valence_column, fmt.arousal_column)
        try:
            id_col, v_col, a_col = (lower[c.lower()] for c in names)
        except KeyError:
            raise ValueError(f"{csv_path}: expected columns {', '.join(names)}") from None
        for line, row in enumerate(rows, start=2):
            try:
                key = _song_key(row[id_col])
                valence, arousal = _rescale(float(row[v_col]), low, high), _rescale(float(row[a_col]), low, high)
            except (KeyError, ValueError):
                report.add_issue("unparseable", f"{csv_path.name}:{line}", "id or rating missing or not a number")
                continue
            if not (-1.0 - 1e-6 <= valence <= 1.0 + 1e-6 and -1.0 - 1e-6 <= arousal <= 1.0 + 1e-6):
                report.add_issue("mislabelled", f"{csv_path.name}:{line}", f"ratings outside {fmt.scale}")
                continue
            ratings[key] = (float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1)))
    matched: set[str] = set()

    def parse(path: Path) -> AudioRecord:
        key = _song_key(path.stem)
        if key not in ratings:
            raise _SkipError("unannotated", f"no {fmt.corpus} annotation for song {path.stem}")
        matched.add(key)
        valence, arousal = ratings[key]
        return AudioRecord(path, None, f"{fmt.corpus}:{key}", fmt.corpus, None, valence, arousal)

    result = _collect(root, report.source, parse, verify, dedupe=True, report=report)
    for key in sorted(set(ratings) - matched, key=lambda k: (len(k), k)):
        report.add_issue("missing_audio", key, f"annotated song {key} has no audio file")
    return result


def load_deam(root: str | Path, *, annotations: str | Path | None = None, verify: bool = True) -> LoadResult:
    """DEAM: `song_id, valence_mean, arousal_mean` on 1-9, audio `<song_id>.mp3`."""
    return load_continuous(root, DEAM_FORMAT, annotations=annotations, verify=verify)


def load_pmemo(root: str | Path, *, annotations: str | Path | None = None, verify: bool = True) -> LoadResult:
    """PMEmo: `musicId, Arousal(mean), Valence(mean)` on [0, 1], audio `<musicId>.mp3`."""
    return load_continuous(root, PMEMO_FORMAT, annotations=annotations, verify=verify)


# -- specs and detection -------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., LoadResult]] = {
    "ravdess": load_ravdess,
    "cremad": load_cremad,
    "tess": load_tess,
    "savee": load_savee,
    "emodb": load_emodb,
    "audio_emotions": load_audio_emotions,
    "folder": load_folder,
    "csv": load_csv,
    "deam": load_deam,
    "pmemo": load_pmemo,
}
_LOADER_ALIASES = {
    "crema-d": "cremad",
    "crema": "cremad",
    "kaggle": "audio_emotions",
    "audio-emotions": "audio_emotions",
}

_NAME_PARSERS: list[tuple[str, Callable[[str], object]]] = [
    ("ravdess", _parse_ravdess_name),
    ("cremad", _parse_cremad_name),
    ("emodb", _parse_emodb_name),
    ("tess", _parse_tess_name),
    ("savee", _parse_savee_name),
]


def detect_corpus(path: str | Path, sample: int = 200) -> str | None:
    """Guess the loader for a path from folder names, then from up to `sample` file names; None if unsure."""
    path = Path(path).expanduser()
    if path.is_file():
        return "csv" if path.suffix.lower() == ".csv" else None
    if not path.is_dir():
        return None
    path = _unwrap(path)
    subdirs = [p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    lowered = {d.lower() for d in subdirs}
    if any(_RAVDESS_FOLDER_RE.match(d) for d in subdirs):
        return "ravdess"
    if "suprised" in lowered or {"disgusted", "fearful"} <= lowered:
        return "audio_emotions"
    if subdirs and set(d.upper() for d in subdirs) <= set(_SAVEE_SPEAKERS):
        return "savee"
    if subdirs and all(d.split("_", 1)[0].upper() in _TESS_SPEAKERS for d in subdirs):
        return "tess"
    for corpus, fmt in (("deam", DEAM_FORMAT), ("pmemo", PMEMO_FORMAT)):
        if _find_annotation_csvs(path, fmt):
            return corpus
    if subdirs and sum(canonical_emotion(d) is not None for d in subdirs) >= max(2, len(subdirs) // 2 + 1):
        return "folder"
    votes: Counter[str] = Counter()
    scratch = AudioLoadReport(source="detect")
    for i, file in enumerate(_audio_files(path, scratch)):
        if i >= sample:
            break
        for corpus, parser in _NAME_PARSERS:
            try:
                parser(file.stem)
            except _SkipError:
                continue
            votes[corpus] += 1
            break
    if votes:
        corpus, n = votes.most_common(1)[0]
        if n >= 0.8 * sum(votes.values()):
            return corpus
    return None


def parse_spec(spec: str) -> tuple[str, Path]:
    """`kind:path` -> (loader name, path); a spec without a known prefix is detected from the path."""
    kind, sep, rest = spec.partition(":")
    kind_norm = _LOADER_ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if sep and kind_norm in LOADERS:
        return kind_norm, Path(rest).expanduser()
    path = Path(spec).expanduser()
    detected = detect_corpus(path)
    if detected is None:
        hint = "no such path" if not path.exists() else "corpus not recognised"
        raise ValueError(f"{spec}: {hint}; write it as <kind>:<path> with kind one of {', '.join(LOADERS)}")
    return detected, path


def load_corpus(spec: str, **options: Any) -> LoadResult:
    """Load one corpus from a spec like `ravdess:/data/ravdess`, `csv:/data/labels.csv` or a bare path.

    `options` go to the loader (e.g. `verify=False`, `vocal="speech"` for RAVDESS).
    """
    kind, path = parse_spec(spec)
    return LOADERS[kind](path, **options)


def load_corpora(specs: Iterable[str], **options: Any) -> LoadResult:
    """Load several corpora and combine their records and reports."""
    results = [load_corpus(spec, **options) for spec in specs]
    records = [r for result in results for r in result.records]
    return LoadResult(records, AudioLoadReport.combine(result.report for result in results))


# -- clips for training --------------------------------------------------------------------------------


class ClipDataset:
    """Records -> fixed-length waveforms with class index and VA target, for a torch DataLoader.

    Each item: `audio` float32 [window samples] (loaded at the front end's rate, silence-trimmed, cropped
    or padded; augmented in training), `label` (class index, -1 for a record without class), `va`
    float32 [2] and `has_va`. Categorical records the taxonomy drops are left out; continuous records
    (no emotion, rated valence/arousal) stay with label -1. Training crops
    and augmentation draw from a generator seeded by (seed, epoch, index), so any worker layout gives the
    same batches; call `set_epoch` each epoch.
    """

    def __init__(
        self,
        records: Iterable[AudioRecord],
        taxonomy: Taxonomy,
        *,
        config: Any = None,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        train: bool = False,
        seed: int = 0,
        trim: bool = True,
    ) -> None:
        self.config = config or FrontEndConfig()
        self.taxonomy = taxonomy
        self.augment = augment
        self.train = train
        self.seed = seed
        self.trim = trim
        self.epoch = 0
        self.records: list[AudioRecord] = []
        self.labels: list[int] = []
        self.targets: list[tuple[float, float] | None] = []
        for record in records:
            index = taxonomy.index_of(record.emotion)
            target = va_target(record)
            if index is None and record.emotion is not None:
                continue  # a categorical clip the taxonomy drops
            if index is None and target is None:
                continue
            self.records.append(record)
            self.labels.append(-1 if index is None else index)
            self.targets.append(target)

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Decoded, trimmed clip cut to the window: random crop/offset with `rng`, else centred crop."""

        cfg = self.config
        audio = load_audio(self.records[index].path, cfg.sample_rate)
        if self.trim:
            audio = trim_silence(audio, cfg)
        n = cfg.n_samples
        if audio.size > n:
            start = int(rng.integers(0, audio.size - n + 1)) if rng is not None else (audio.size - n) // 2
            return np.ascontiguousarray(audio[start : start + n])
        out = np.zeros(n, dtype=np.float32)
        # training places short clips anywhere in the window; evaluation pads at the end like the engine
        start = int(rng.integers(0, n - audio.size + 1)) if rng is not None else 0
        out[start : start + audio.size] = audio
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        audio = self.load(index, rng)
        if rng is not None and self.augment is not None:
            audio = np.asarray(self.augment(audio, rng), dtype=np.float32)
        target = self.targets[index]
        return {
            "audio": audio,
            "label": self.labels[index],
            "va": np.asarray(target if target is not None else (0.0, 0.0), dtype=np.float32),
            "has_va": target is not None,
            "index": index,
        }


__all__ = [
    "AUDIO_EXTENSIONS",
    "DEAM_FORMAT",
    "ISSUE_KINDS",
    "LOADERS",
    "PMEMO_FORMAT",
    "AudioLoadReport",
    "AudioRecord",
    "ClipDataset",
    "ContinuousFormat",
    "IssueLog",
    "LoadResult",
    "detect_corpus",
    "identify_clip",
    "load_audio_emotions",
    "load_continuous",
    "load_corpora",
    "load_corpus",
    "load_cremad",
    "load_csv",
    "load_deam",
    "load_emodb",
    "load_folder",
    "load_pmemo",
    "load_ravdess",
    "load_savee",
    "load_tess",
    "parse_spec",
    "unreadable_reason",
]
