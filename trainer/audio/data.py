"""The audio run's data stages and batches: corpus specs -> records -> speaker-independent split -> cached
features (`ClipBank`) and mel statistics (`RunData`), the inner split that chooses the epoch, and the
training batches (cached features or waveform augmentation + the front end) per DDP rank.

Side effects: reads corpora, fills the feature cache (trainer.audio.features)."""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import engine.audio.synth as synth_module
from engine.audio.frontend import FrontEnd, FrontEndConfig
from engine.errors import ConfigError
from trainer.audio import splits
from trainer.audio.augment import AugmentConfig, Augmenter, SpecAugmentConfig, spec_augment
from trainer.audio.config import SYNTHETIC, AudioAugment, Balance, SplitKind, TrainConfig
from trainer.audio.corpora import AudioLoadReport, AudioRecord, load_corpus
from trainer.audio.features import ClipBank, ClipSource, FeatureCache, mel_statistics, standardize
from trainer.audio.splits import SPEAKER_RULE
from trainer.audio.synthetic import SyntheticCorpus
from trainer.audio.taxonomy import get_taxonomy, va_target

log = logging.getLogger("synesthesia.train.audio")


@dataclass
class RunData:
    """Everything the loop needs from the data side, computed once (and shared by compare/HPO)."""

    classes: list[str]
    taxonomy: dict[str, Any]
    train: ClipBank
    val: ClipBank
    split: dict[str, Any]  # the Split's summary: rule, sizes, speakers, classes
    mel_mean: np.ndarray
    mel_std: np.ndarray
    frontend: FrontEndConfig
    load_report: dict[str, Any] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        return str(self.split["rule"])


def parse_synthetic(spec: str) -> tuple[int, int] | None:
    """'synthetic[:N_PER_CLASS[:SEED]]' -> (n_per_class, seed); None for any other spec."""
    head, _, rest = spec.partition(":")
    if head != SYNTHETIC:
        return None
    parts = [p for p in rest.split(":") if p] if rest else []
    try:
        n = int(parts[0]) if parts else 50
        seed = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ConfigError(f"data spec {spec!r}: write synthetic[:N_PER_CLASS[:SEED]]") from None
    return n, seed


def synthetic_records(
    classes: Sequence[str], n_per_class: int, seed: int, frontend: FrontEndConfig, stream: bool = False
):
    """Procedural clips as AudioRecords (corpus 'synthetic') with the sources that generate them.

    stream: each clip is a window cut from the live demo's `SynthStream` (2 s utterances crossfaded, the
    window straddling one or two joins) at the clip's voice and valence/arousal, instead of one utterance
    synthesised alone: the shape of what the engine hears from `synth:...` sources."""

    corpus = SyntheticCorpus(
        list(classes), n_per_class, duration_s=frontend.window_s, seed=seed, sample_rate=frontend.sample_rate
    )
    # the generator's own source is part of the key: a change to the synthesis invalidates cached clips
    version = hashlib.sha256(Path(synth_module.__file__).read_bytes()).hexdigest()[:12]
    records, sources = [], []
    for spec in corpus.specs:
        ident = f"synthetic:{seed}/{spec.label}/{spec.index}"
        records.append(
            AudioRecord(Path(ident), spec.label, spec.speaker, SYNTHETIC, valence=spec.valence, arousal=spec.arousal)
        )
        key = (
            f"{ident}|{spec.seed}|{spec.voice}|{spec.kind}|{spec.valence}|{spec.arousal}|{corpus.duration_s}|{version}"
        )
        if stream:
            sources.append(ClipSource(key + "|stream", lambda s=spec: stream_window(s, frontend)))
        else:
            sources.append(ClipSource(key, lambda i=spec.index: corpus[i].audio))
    return records, sources


def stream_window(spec, frontend: FrontEndConfig) -> np.ndarray:
    """One window of the demo's procedural stream for a SyntheticCorpus spec: its voice, kind and
    valence/arousal, starting at a seeded offset within the stream's first 6 s (so one to two joins)."""
    n = round(frontend.window_s * frontend.sample_rate)
    rng = np.random.default_rng(spec.seed)
    skip = int(rng.integers(0, 6 * frontend.sample_rate))
    source = synth_module.SynthStream(
        (spec.valence, spec.arousal), kind=spec.kind, sample_rate=frontend.sample_rate, seed=spec.seed
    )
    source.read(skip)
    return source.read(n)


def load_records(specs: Sequence[str], taxonomy, frontend: FrontEndConfig):
    """Corpus specs -> (records the taxonomy keeps, their sources, load report dict)."""

    records, sources, reports = [], [], []
    for spec in specs:
        synth = parse_synthetic(spec)
        if synth is not None:
            recs, srcs = synthetic_records(taxonomy.classes, synth[0], synth[1], frontend)
            report = AudioLoadReport(source=spec)
            for r in recs:
                report.count(r)
        else:
            try:
                recs, report = load_corpus(spec)
            except (ValueError, FileNotFoundError) as exc:
                raise ConfigError(f"--data {spec}: {exc}") from exc
            srcs = [ClipSource.from_file(r.path, frontend.sample_rate) for r in recs]
        reports.append(report)
        for r, s in zip(recs, srcs, strict=True):
            # categorical clips the taxonomy drops are left out; VA-only clips stay with label -1
            if (r.emotion is not None and taxonomy.index_of(r.emotion) is None) or (
                r.emotion is None and va_target(r) is None
            ):
                continue
            records.append(r)
            sources.append(s)
    if not records:
        raise ConfigError(f"no usable clips in {list(specs)} for taxonomy {taxonomy.name!r}")
    return records, sources, AudioLoadReport.combine(reports).to_dict()


def class_label(taxonomy) -> Callable[[Any], str]:
    """Record -> training class name, for stratified splits and split summaries."""
    return lambda r: taxonomy.class_of(r.emotion) or "(va only)"


def load_for(cfg: TrainConfig, frontend: FrontEndConfig):
    """(taxonomy, records, sources, load report) of a run's --taxonomy and --data."""
    try:
        taxonomy = get_taxonomy(cfg.taxonomy)
    except ValueError as exc:
        raise ConfigError(f"--taxonomy: {exc}") from exc
    return (taxonomy, *load_records(cfg.data, taxonomy, frontend))


def make_split(records, cfg: TrainConfig, taxonomy):
    """The configured split of `records` (a trainer.audio.splits.Split)."""

    label = class_label(taxonomy)
    try:
        match cfg.split:
            case SplitKind.SPEAKER:
                return splits.speaker_independent_split(records, cfg.val_fraction, cfg.seed, label=label)
            case SplitKind.RANDOM:
                return splits.random_split(records, cfg.val_fraction, cfg.seed, label=label)
            case SplitKind.CORPUS:
                if not cfg.test_corpus:
                    raise ConfigError("split=corpus needs --test-corpus NAME")
                return splits.leave_corpus_out(records, cfg.test_corpus)
    except ValueError as exc:
        raise ConfigError(f"split {cfg.split.value}: {exc}") from exc
    raise ConfigError(f"unknown split {cfg.split!r}")


def bank_from(records, sources, cache: FeatureCache, taxonomy, progress: bool = True) -> ClipBank:
    """Cached waveforms and log-mels of `records` with class and VA targets."""
    from tqdm import tqdm

    show = progress and sys.stderr.isatty()  # bars for a terminal; a log file gets the summary lines
    with tqdm(total=len(sources), desc="features", unit="clip", disable=not show, leave=False) as bar:
        audio, mels = cache.get_many(sources, progress=bar.update)
    labels = np.array([-1 if (i := taxonomy.index_of(r.emotion)) is None else i for r in records], dtype=np.int64)
    targets = [va_target(r) for r in records]
    va = np.array([t if t is not None else (0.0, 0.0) for t in targets], dtype=np.float32).reshape(-1, 2)
    return ClipBank(
        audio=audio,
        mels=mels,
        labels=labels,
        va=va,
        has_va=np.array([t is not None for t in targets], dtype=bool),
        speakers=[r.speaker for r in records],
        corpora=[r.corpus for r in records],
        ids=[str(r.path) for r in records],
    )


def prepare(cfg: TrainConfig, frontend: FrontEndConfig | None = None, progress: bool = True) -> RunData:
    """Load corpora, apply the taxonomy, split, build the cached banks, compute train-split statistics.

    Procedural clips never enter validation when real corpora are present: the figures describe real
    voices. With only procedural data they are split like any corpus (their voices are the speakers).
    """

    frontend = frontend or FrontEndConfig()
    taxonomy, records, sources, report = load_for(cfg, frontend)
    source_of = {id(r): s for r, s in zip(records, sources, strict=True)}
    real = [r for r in records if r.corpus != SYNTHETIC]
    extra = [r for r in records if r.corpus == SYNTHETIC] if real else []
    split = make_split(real or records, cfg, taxonomy)
    train_records = list(split.train) + extra
    if cfg.synthetic_per_class:
        more, more_src = synthetic_records(
            taxonomy.classes, cfg.synthetic_per_class, cfg.seed + 1000, frontend, cfg.synthetic_stream
        )
        source_of.update({id(r): s for r, s in zip(more, more_src, strict=True)})
        train_records += more
    cache = FeatureCache(frontend, cfg.cache_dir)
    train = bank_from(train_records, [source_of[id(r)] for r in train_records], cache, taxonomy, progress)
    val = bank_from(split.val, [source_of[id(r)] for r in split.val], cache, taxonomy, progress)
    log.info("features: %d from cache, %d computed (%s)", cache.hits, cache.misses, cache.root)
    info = split.to_dict(class_label(taxonomy))
    info["val_speakers"] = sorted({r.speaker for r in split.val})
    info["train_speakers"] = sorted({r.speaker for r in train_records})
    if extra or cfg.synthetic_per_class:
        n_synth = len(extra) + (len(taxonomy.classes) * cfg.synthetic_per_class)
        info["train"]["synthetic_clips_added"] = n_synth
    mean, std = mel_statistics(train.mels)
    return RunData(
        classes=list(taxonomy.classes),
        taxonomy=taxonomy.to_dict(),
        train=train,
        val=val,
        split=info,
        mel_mean=mean,
        mel_std=std,
        frontend=frontend,
        load_report=report,
    )


def prepare_pool(cfg: TrainConfig, frontend: FrontEndConfig | None = None, progress: bool = True):
    """Every usable clip as one bank, for cross-validation: (RunData whose `train` is the pool the folds are
    cut from and whose `val` is empty, ClipBank of clips that only ever train: procedural clips when real
    corpora are present, and `synthetic_per_class`). The statistics are the whole pool's."""
    frontend = frontend or FrontEndConfig()
    taxonomy, records, sources, report = load_for(cfg, frontend)
    pairs = list(zip(records, sources, strict=True))
    has_real = any(r.corpus != SYNTHETIC for r in records)
    folded = [(r, s) for r, s in pairs if r.corpus != SYNTHETIC or not has_real]
    extra = [(r, s) for r, s in pairs if has_real and r.corpus == SYNTHETIC]
    if cfg.synthetic_per_class:
        more = synthetic_records(
            taxonomy.classes, cfg.synthetic_per_class, cfg.seed + 1000, frontend, cfg.synthetic_stream
        )
        extra += list(zip(*more, strict=True))
    cache = FeatureCache(frontend, cfg.cache_dir)
    pool = bank_from([r for r, _ in folded], [s for _, s in folded], cache, taxonomy, progress)
    extra_bank = bank_from([r for r, _ in extra], [s for _, s in extra], cache, taxonomy, progress)
    mean, std = mel_statistics(ClipBank.concat([pool, extra_bank]).mels)
    info = {
        "rule": "all clips (cross-validation pool)",
        "train": {"clips": len(pool) + len(extra_bank), "speakers": len(set(pool.speakers) | set(extra_bank.speakers))},
        "val": {"clips": 0, "speakers": 0},
        "val_speakers": [],
        "train_speakers": sorted(set(pool.speakers) | set(extra_bank.speakers)),
    }
    run = RunData(list(taxonomy.classes), taxonomy.to_dict(), pool, pool.subset([]), info, mean, std, frontend, report)
    return run, extra_bank


def inner_split(prep: RunData, val_fraction: float, seed: int) -> RunData:
    """Split the training speakers again (for HPO): the outer validation speakers stay untouched.

    About `val_fraction` of each corpus's speakers (at least one) go to the inner validation side;
    procedural voices stay in training when real ones exist.
    """

    corpus_of = dict(zip(prep.train.speakers, prep.train.corpora, strict=True))
    real = sorted(s for s, c in corpus_of.items() if c != SYNTHETIC)
    pool = real or sorted(corpus_of)
    if len(pool) < 2:
        raise ConfigError("an inner split needs at least two training speakers (or use --select heldout)")
    rng = np.random.default_rng(seed)
    val_spk: set[str] = set()
    for corpus in sorted({corpus_of[s] for s in pool}):
        members = [s for s in pool if corpus_of[s] == corpus]
        n_val = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val_spk.update(rng.permutation(members)[:n_val].tolist())
    if not val_spk:  # one speaker per corpus: hold out one whole corpus's speaker
        val_spk = {pool[int(rng.integers(len(pool)))]}
    idx_val = [i for i, s in enumerate(prep.train.speakers) if s in val_spk]
    idx_train = [i for i, s in enumerate(prep.train.speakers) if s not in val_spk]
    train, val = prep.train.subset(idx_train), prep.train.subset(idx_val)
    mean, std = mel_statistics(train.mels)
    info = {
        "rule": f"inner {SPEAKER_RULE} of the outer training speakers (seed {seed})",
        "train": {"clips": len(train), "speakers": len(set(train.speakers))},
        "val": {"clips": len(val), "speakers": len(val_spk)},
        "val_speakers": sorted(val_spk),
        "train_speakers": sorted(set(train.speakers)),
    }
    return RunData(prep.classes, prep.taxonomy, train, val, info, mean, std, prep.frontend, prep.load_report)


class TrainingBatches:
    """Training batches: cached features, or waveform augmentation + the torch front end on the fly."""

    def __init__(self, cfg: TrainConfig, prep: RunData, device: torch.device) -> None:
        self.cfg = cfg
        self.prep = prep
        self.device = device
        self.wave = cfg.augment in (AudioAugment.WAVE, AudioAugment.FULL)
        self.spec = cfg.augment in (AudioAugment.SPEC, AudioAugment.FULL)
        self.spec_config = SpecAugmentConfig()
        self.frontend = FrontEnd(prep.frontend, prep.mel_mean, prep.mel_std)  # CPU: augmentation runs there
        if self.wave:
            # babble is other training voices: a few hundred clips are plenty of talkers
            rng = np.random.default_rng(cfg.seed)
            pick = rng.permutation(len(prep.train))[:200]
            bank = [prep.train.audio[i].astype(np.float32) for i in pick]
            config = AugmentConfig(
                sample_rate=prep.frontend.sample_rate, p_speed=cfg.speed_perturb, p_pitch=cfg.pitch_shift
            )
            self.augmenter = Augmenter(config, noise_bank=bank)
        self.weights = sampling_weights(prep.train, cfg.balance, cfg.synthetic_weight)

    def __call__(self, index: Sequence[int], epoch: int, step: int, rank: int) -> tuple[torch.Tensor, ...]:
        bank = self.prep.train
        idx = np.asarray(index)
        rng = np.random.default_rng([self.cfg.seed, epoch, rank, step])  # resumable: no hidden RNG state
        if self.wave:
            waves = self.augmenter(bank.waves(idx, self.prep.frontend.n_samples, rng), rng)
            x = self.frontend(waves).features  # [B, 1, M, T], z-scored
        else:
            x = standardize(bank.mels[idx], self.prep.mel_mean, self.prep.mel_std)
        if self.spec:
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            x = spec_augment(x, self.spec_config, gen)
        y = torch.as_tensor(bank.labels[idx])
        va = torch.as_tensor(bank.va[idx])
        has_va = torch.as_tensor(bank.has_va[idx])
        return x.to(self.device), y.to(self.device), va.to(self.device), has_va.to(self.device)


def sampling_weights(bank: ClipBank, balance: Balance, synthetic_weight: float = 1.0) -> np.ndarray | None:
    """Per-clip sampling weights (sum 1) for `balance`, or None for plain shuffling.

    speaker: 1 / clips of the clip's speaker, so each speaker fills the same share of an epoch (TESS's two
    voices with 1400 clips each weigh what a SAVEE speaker with 120 does); corpus: 1 / clips of the corpus;
    speaker_class: each speaker the same share and, within it, each of its classes the same share. The
    procedural corpus (`synthetic`) counts as one speaker (or corpus), times `synthetic_weight`.
    """
    if balance is Balance.NONE or len(bank) == 0:
        return None
    if balance is Balance.CORPUS:
        keys: list[Any] = list(bank.corpora)
    else:
        # the procedural corpus is one speaker however many synthetic voices it has: added for the demo
        # source's voice, it must not fill a third of every epoch
        speakers = [SYNTHETIC if c == SYNTHETIC else s for s, c in zip(bank.speakers, bank.corpora, strict=True)]
        keys = speakers if balance is Balance.SPEAKER else list(zip(speakers, bank.labels.tolist(), strict=True))
    _, inverse, counts = np.unique(np.array([str(k) for k in keys]), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    if balance is Balance.SPEAKER_CLASS:  # a speaker's cells share its weight: divide by its class count
        cells: dict[str, set[int]] = {}
        for spk, label in zip(speakers, bank.labels.tolist(), strict=True):
            cells.setdefault(spk, set()).add(label)
        w = w / np.array([len(cells[spk]) for spk in speakers])
    if synthetic_weight != 1.0:
        w = np.where(np.asarray(bank.corpora) == SYNTHETIC, w * synthetic_weight, w)
    return w / w.sum()


def epoch_batches(
    n: int, batch: int, epoch: int, seed: int, world: int, rank: int, weights: np.ndarray | None = None
) -> list[list[int]]:
    """This rank's batches for an epoch. DistributedSampler gives every rank the same count; the last
    short batch is dropped (fixed shapes for compiled graphs, no 1-clip BatchNorm batches).

    With `weights` (from `sampling_weights`) the epoch is n clips drawn with replacement in proportion to
    them, the same draw on every rank (seeded by seed and epoch), dealt out to the ranks in turn."""
    from torch.utils.data import DistributedSampler

    if weights is not None:
        rng = np.random.default_rng([seed, epoch, 0xBA1])
        total = -(-n // world) * world
        order = rng.choice(n, size=total, replace=True, p=weights)[rank::world].tolist()
    else:
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
    per_rank = max(1, batch // world)
    batches = [order[i : i + per_rank] for i in range(0, len(order), per_rank)]
    if len(batches) > 1 and len(batches[-1]) < per_rank:
        batches.pop()
    return batches
