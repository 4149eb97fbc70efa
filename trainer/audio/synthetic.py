"""A procedural emotional-audio corpus on top of `engine.audio.synth`, for tests and augmentation.

Items are generated lazily and deterministically from (corpus seed, class, index): the same corpus
arguments always give the same audio, labels and speakers. Every synthetic voice utters every class,
so speaker-independent splits (by `speaker`) behave as on an acted corpus such as RAVDESS.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio.synth import KINDS, Kind, resolve_va, synthesize
from engine.emotions import CIRCUMPLEX

CSV_COLUMNS = ("path", "label", "valence", "arousal", "speaker")
DEFAULT_CLASSES = ("angry", "happy", "sad", "neutral")


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything about an item except its audio (cheap: no synthesis)."""

    index: int
    label: str
    valence: float
    arousal: float
    speaker: str
    kind: Kind
    seed: int
    voice: int


@dataclass(frozen=True)
class SyntheticItem:
    """One generated clip with its labels."""

    audio: np.ndarray  # float32 mono at the corpus sample rate
    label: str
    valence: float
    arousal: float
    speaker: str
    kind: Kind


def _derive(*parts: int) -> int:
    """A stable 32-bit seed from integers (independent of Python's hash randomisation)."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class SyntheticCorpus:
    """`n_per_class` clips per class, ordered class by class; kinds alternate within a class.

    Within a class, item j is of kind `kinds[j % len(kinds)]` and spoken by voice
    `(j // len(kinds)) % n_voices`; speaker ids are `synth<seed>-<kind>-<voice>`. Valence and arousal are
    the class's `CIRCUMPLEX` anchor plus Gaussian jitter of `va_jitter` (clipped to [-1, 1], rounded to
    4 decimals so they round-trip through CSV exactly); the audio is synthesised at exactly those values.
    """

    def __init__(
        self,
        classes: Sequence[str],
        n_per_class: int,
        kinds: Sequence[Kind] = KINDS,
        duration_s: float = 3.0,
        seed: int = 0,
        *,
        n_voices: int = 8,
        va_jitter: float = 0.1,
        sample_rate: int = 22050,
    ) -> None:
        if not classes:
            raise ValueError("classes is empty")
        for name in classes:
            if name not in CIRCUMPLEX:
                raise ValueError(f"unknown class {name!r}; synthetic classes: {', '.join(CIRCUMPLEX)}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate classes in {list(classes)}")
        if n_per_class < 1 or n_voices < 1:
            raise ValueError("n_per_class and n_voices must be >= 1")
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
        if va_jitter < 0:
            raise ValueError("va_jitter must be >= 0")
        self.classes = tuple(classes)
        self.n_per_class = int(n_per_class)
        self.kinds: tuple[Kind, ...] = tuple(kinds)
        self.duration_s = float(duration_s)
        self.seed = int(seed)
        self.n_voices = int(n_voices)
        self.va_jitter = float(va_jitter)
        self.sample_rate = int(sample_rate)

    def __len__(self) -> int:
        return len(self.classes) * self.n_per_class

    def spec(self, index: int) -> SyntheticSpec:
        """Labels, speaker and seeds of item `index` without synthesising it."""
        i = self._check(index)
        c, j = divmod(i, self.n_per_class)
        label = self.classes[c]
        kind = self.kinds[j % len(self.kinds)]
        voice_index = (j // len(self.kinds)) % self.n_voices
        # Seeds derive from the class name, not its position, so adding a class leaves the others alone.
        seed = _derive(self.seed, zlib.crc32(label.encode()), j)
        rng = np.random.default_rng(seed)
        v0, a0 = resolve_va(label)
        v, a = (round(float(np.clip(x + self.va_jitter * rng.standard_normal(), -1.0, 1.0)), 4) for x in (v0, a0))
        return SyntheticSpec(
            index=i,
            label=label,
            valence=v,
            arousal=a,
            speaker=f"synth{self.seed}-{kind}-{voice_index:02d}",
            kind=kind,
            seed=seed,
            voice=_derive(self.seed, voice_index, KINDS.index(kind), 0x0BEE),
        )

    def __getitem__(self, index: int) -> SyntheticItem:
        s = self.spec(index)
        audio = synthesize(
            valence=s.valence,
            arousal=s.arousal,
            kind=s.kind,
            duration_s=self.duration_s,
            sample_rate=self.sample_rate,
            seed=s.seed,
            voice=s.voice,
        )
        return SyntheticItem(audio, s.label, s.valence, s.arousal, s.speaker, s.kind)

    def __iter__(self) -> Iterator[SyntheticItem]:
        return (self[i] for i in range(len(self)))

    @property
    def specs(self) -> list[SyntheticSpec]:
        return [self.spec(i) for i in range(len(self))]

    def _check(self, index: int) -> int:
        n = len(self)
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a corpus of {n}")
        return i


def write_corpus(
    directory: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    n_per_class: int = 50,
    *,
    kinds: Sequence[Kind] = KINDS,
    duration_s: float = 3.0,
    seed: int = 0,
    n_voices: int = 8,
    va_jitter: float = 0.1,
    sample_rate: int = 22050,
    csv_name: str = "labels.csv",
) -> Path:
    """Write a `SyntheticCorpus` as 16-bit wav files plus a CSV `path,label,valence,arousal,speaker`.

    Paths in the CSV are relative to the CSV's directory (`<label>/<speaker>_<index>.wav`). Returns the
    CSV path. Existing files of the same names are overwritten.
    """
    import soundfile as sf

    corpus = SyntheticCorpus(
        classes,
        n_per_class,
        kinds,
        duration_s,
        seed,
        n_voices=n_voices,
        va_jitter=va_jitter,
        sample_rate=sample_rate,
    )
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / csv_name
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for i in range(len(corpus)):
            item = corpus[i]
            rel = Path(item.label) / f"{item.speaker}_{i:05d}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(root / rel), item.audio, sample_rate, subtype="PCM_16")
            writer.writerow([rel.as_posix(), item.label, f"{item.valence:.4f}", f"{item.arousal:.4f}", item.speaker])
    return csv_path
