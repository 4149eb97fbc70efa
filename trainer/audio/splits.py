"""Train/validation splits that say what they are.

`speaker_independent_split` is the default: whole speakers go to one side, so validation measures unseen
voices, which is what a gallery hears. `random_split` exists for comparison with the seed study and
labels itself "random (NOT speaker-independent)". `leave_corpus_out` trains on some corpora and tests on
another. Every `Split` carries its `rule`, which goes into the bundle manifest and reports.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.audio.corpora import AudioRecord
from trainer.audio.taxonomy import Taxonomy

RANDOM_RULE = "random (NOT speaker-independent)"
SPEAKER_RULE = "speaker-independent (whole speakers held out)"

LabelFn = Callable[[AudioRecord], Hashable]


def _default_label(record: AudioRecord) -> Hashable:
    return record.emotion


def _label_fn(label: LabelFn | Taxonomy) -> LabelFn:
    """A taxonomy stratifies on its classes; any callable on its result."""
    if isinstance(label, Taxonomy):
        taxonomy = label
        return lambda r: taxonomy.class_of(r.emotion)
    return label


@dataclass(frozen=True)
class Split:
    """Train and validation (or test) records and the rule that produced them."""

    train: list[AudioRecord]
    val: list[AudioRecord]
    rule: str
    seed: int | None = None

    def leaked_speakers(self) -> set[str]:
        """Known speakers on both sides (empty for a speaker-independent split)."""
        train = {r.speaker for r in self.train if r.speaker_known}
        return train & {r.speaker for r in self.val if r.speaker_known}

    def to_dict(self, label: LabelFn | Taxonomy = _default_label) -> dict[str, Any]:
        """Summary for a bundle manifest's `data` field."""
        label_of = _label_fn(label)

        def side(records: list[AudioRecord]) -> dict[str, Any]:
            return {
                "clips": len(records),
                "speakers": len({r.speaker for r in records}),
                "corpora": dict(sorted(Counter(r.corpus for r in records).items())),
                "classes": {str(k): v for k, v in sorted(Counter(label_of(r) for r in records).items(), key=str)},
            }

        return {
            "rule": self.rule,
            "seed": self.seed,
            "train": side(self.train),
            "val": side(self.val),
            "leaked_speakers": sorted(self.leaked_speakers()),
        }

    def describe(self, label: LabelFn | Taxonomy = _default_label) -> str:
        """A small table for logs and reports: sizes, speakers, per-class counts, leaks."""
        info = self.to_dict(label)
        lines = [f"split: {self.rule}" + (f" (seed {self.seed})" if self.seed is not None else "")]
        for name in ("train", "val"):
            side = info[name]
            corpora = ", ".join(f"{c} {n}" for c, n in side["corpora"].items())
            lines.append(f"  {name:5s} {side['clips']:6d} clips, {side['speakers']:4d} speakers ({corpora})")
        val_speakers = sorted({r.speaker for r in self.val if r.speaker_known})
        if 0 < len(val_speakers) <= 12:
            lines.append(f"  val speakers: {', '.join(val_speakers)}")
        classes = sorted(set(info["train"]["classes"]) | set(info["val"]["classes"]))
        lines.append(f"  {'class':12s} {'train':>6s} {'val':>6s}")
        train_counts, val_counts = info["train"]["classes"], info["val"]["classes"]
        for cls in classes:
            lines.append(f"  {cls:12s} {train_counts.get(cls, 0):6d} {val_counts.get(cls, 0):6d}")
        leaked = info["leaked_speakers"]
        lines.append(f"  speakers on both sides: {len(leaked)}" + (f" ({', '.join(leaked[:5])} ...)" if leaked else ""))
        return "\n".join(lines)


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")


class _Scorer:
    """Cost of a candidate validation set of speaker groups (lower is better).

    Missing a class in training costs most, then a class or corpus missing from validation, then the
    relative distance from the wanted size; 2.0 x relative size error makes a 50% oversize as bad as
    a class missing from validation.
    """

    def __init__(self, groups: Sequence[list[int]], labels: Sequence[Hashable], corpora: Sequence[str], target: float):
        self.group_labels = [Counter(labels[i] for i in g) for g in groups]
        self.group_corpora = [Counter(corpora[i] for i in g) for g in groups]
        self.group_sizes = [len(g) for g in groups]
        self.total_labels = Counter(labels)
        self.total_corpora = Counter(corpora)
        self.total = len(labels)
        self.target = target

    def cost(self, size: int, label_counts: Counter[Hashable], corpus_counts: Counter[str]) -> float:
        if size == 0 or size == self.total:
            return float("inf")
        miss_val = sum(1 for c in self.total_labels if label_counts[c] == 0)
        miss_train = sum(1 for c, n in self.total_labels.items() if label_counts[c] == n)
        corpus_cost = 0.0
        if len(self.total_corpora) > 1:
            corpus_cost = 0.5 * sum(1 for c in self.total_corpora if corpus_counts[c] == 0)
            corpus_cost += 1.0 * sum(1 for c, n in self.total_corpora.items() if corpus_counts[c] == n)
        return 3.0 * miss_train + 1.0 * miss_val + corpus_cost + 2.0 * abs(size - self.target) / self.target


def speaker_independent_split(
    records: Sequence[AudioRecord],
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    label: LabelFn | Taxonomy = _default_label,
    trials: int | None = None,
) -> Split:
    """Hold out whole speakers for validation, about `val_fraction` of the clips.

    Stratified by choice of speakers: the search prefers sets where every class (by `label`, e.g. a
    taxonomy class) and every corpus appears in validation and stays in training, then the size closest
    to the target. With few speakers the share is whatever whole speakers give (2 speakers -> 50%).
    Clips of unknown speaker are their own groups; the rule says how many there were.
    Deterministic per seed. Raises ValueError with fewer than two speaker groups.
    """
    _check_fraction(val_fraction)
    records = list(records)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_speaker[r.speaker].append(i)
    names = sorted(by_speaker)
    if len(names) < 2:
        raise ValueError(
            f"a speaker-independent split needs at least two speakers, got {names}; use random_split and say so"
        )
    groups = [by_speaker[n] for n in names]
    label = _label_fn(label)
    scorer = _Scorer(groups, [label(r) for r in records], [r.corpus for r in records], val_fraction * len(records))
    rng = np.random.default_rng(seed)
    # many small groups need few restarts; few large groups benefit from many
    trials = trials or int(np.clip(20000 // len(groups), 4, 64))
    best_cost, best_set = float("inf"), [0]
    for _ in range(trials):
        chosen: list[int] = []
        size = 0
        labels_in: Counter[Hashable] = Counter()
        corpora_in: Counter[str] = Counter()
        cost = scorer.cost(size, labels_in, corpora_in)
        for g in rng.permutation(len(groups)):
            cand_labels = labels_in + scorer.group_labels[g]
            cand_corpora = corpora_in + scorer.group_corpora[g]
            cand_cost = scorer.cost(size + scorer.group_sizes[g], cand_labels, cand_corpora)
            if cand_cost < cost:
                chosen.append(int(g))
                size, labels_in, corpora_in, cost = size + scorer.group_sizes[g], cand_labels, cand_corpora, cand_cost
        if cost < best_cost:
            best_cost, best_set = cost, chosen
    val_groups = set(best_set)
    val_idx = sorted(i for g in val_groups for i in groups[g])
    val_set = set(val_idx)
    train = [r for i, r in enumerate(records) if i not in val_set]
    val = [records[i] for i in val_idx]
    unknown = sum(1 for r in records if not r.speaker_known)
    rule = SPEAKER_RULE
    if unknown:
        rule += f"; {unknown} clips of unknown speaker split per clip"
    return Split(train, val, rule, seed)


def random_split(
    records: Sequence[AudioRecord],
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    label: LabelFn | Taxonomy = _default_label,
    stratify: bool = True,
) -> Split:
    """Random clips for validation, stratified by `label`: speakers leak; the rule says so."""
    _check_fraction(val_fraction)
    records = list(records)
    rng = np.random.default_rng(seed)
    label = _label_fn(label)
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        strata[label(r) if stratify else None].append(i)
    val_idx: set[int] = set()
    for key in sorted(strata, key=str):
        members = strata[key]
        n_val = round(val_fraction * len(members))
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)  # every class on both sides when it can be
        val_idx.update(int(i) for i in rng.permutation(members)[:n_val])
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return Split(train, val, RANDOM_RULE, seed)


def leave_corpus_out(
    records: Sequence[AudioRecord], test_corpus: str, train_corpora: Iterable[str] | None = None
) -> Split:
    """Cross-corpus: train on `train_corpora` (default: all others), test on `test_corpus`.

    Training clips whose speaker also appears in the test corpus (a compilation holding copies of the
    test corpus) are dropped, and the rule says how many.
    """
    records = list(records)
    corpora = sorted({r.corpus for r in records})
    if test_corpus not in corpora:
        raise ValueError(f"no records of corpus {test_corpus!r}; have {corpora}")
    wanted = set(train_corpora) if train_corpora is not None else set(corpora) - {test_corpus}
    missing = wanted - set(corpora)
    if missing or not wanted or test_corpus in wanted:
        raise ValueError(f"train corpora {sorted(wanted)} must be non-empty, present ({corpora}) and exclude the test")
    test = [r for r in records if r.corpus == test_corpus]
    test_speakers = {r.speaker for r in test if r.speaker_known}
    candidates = [r for r in records if r.corpus in wanted]
    train = [r for r in candidates if r.speaker not in test_speakers]
    rule = f"cross-corpus: train on {'+'.join(sorted(wanted))}, test on {test_corpus}"
    if len(train) < len(candidates):
        rule += f"; {len(candidates) - len(train)} training clips of test speakers dropped"
    return Split(train, test, rule, None)


def make_split(
    records: Sequence[AudioRecord],
    rule: str = "speaker",
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    label: LabelFn | Taxonomy = _default_label,
) -> Split:
    """Split by a rule name: `speaker` (default), `random`, or `corpus:<name>` (leave that corpus out)."""
    if rule == "speaker":
        return speaker_independent_split(records, val_fraction, seed, label=label)
    if rule == "random":
        return random_split(records, val_fraction, seed, label=label)
    if rule.startswith("corpus:"):
        return leave_corpus_out(records, rule.split(":", 1)[1])
    raise ValueError(f"unknown split rule {rule!r}: use speaker, random or corpus:<name>")
