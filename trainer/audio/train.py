"""Train one audio emotion encoder: `synesthesia-train audio`.

Reads top to bottom: configuration -> data (corpora, taxonomy, split, cached features, statistics) ->
model -> batches and augmentation -> loss -> the loop (checkpoints, resume, DDP) -> evaluation and the
shared-space placeholder -> reports -> command line.

The defaults are the seed protocol: batch 16, 20 epochs, Adam lr 1e-3, cross-entropy plus a
valence/arousal loss, ReduceLROnPlateau, 80/20, best checkpoint by validation accuracy. Unlike the seed,
the split is speaker-independent by default; a random split is labelled "NOT speaker-independent" in
every report. Runs unchanged under `torchrun` (DDP when WORLD_SIZE > 1; only rank 0 writes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

import engine.audio.synth as synth_module
from engine.audio.frontend import FrontEnd, FrontEndConfig
from engine.errors import ConfigError
from engine.models.checkpoint import load_checkpoint, save_audio_model
from engine.models.encoders import Arch, EncoderConfig, build_encoder, count_parameters
from engine.models.heads import AudioModel, ProjectionHead
from trainer.audio import reports, splits
from trainer.audio.augment import AugmentConfig, Augmenter, SpecAugmentConfig, spec_augment
from trainer.audio.corpora import AudioRecord, LoadReport, load_corpus
from trainer.audio.features import ClipBank, ClipSource, FeatureCache, mel_statistics, standardize
from trainer.audio.reports import classification_metrics
from trainer.audio.splits import SPEAKER_RULE
from trainer.audio.synthetic import SyntheticCorpus
from trainer.audio.taxonomy import get_taxonomy, va_target

log = logging.getLogger("synesthesia.train.audio")

LAST_CKPT = "ckpt.pt"
BEST_CKPT = "best.pt"
TRAINING_EXTRAS = ("classes", "frontend", "mel_mean", "mel_std")  # what export needs beside the weights
SYNTHETIC = "synthetic"


# -- 1. configuration -------------------------------------------------------------------------------------


class SplitKind(StrEnum):
    SPEAKER = "speaker"  # whole speakers held out (default)
    RANDOM = "random"  # clips at random: speakers leak; labelled so everywhere
    CORPUS = "corpus"  # cross-corpus: train on the others, test on `test_corpus`


class Selection(StrEnum):
    """Which clips choose the epoch that is kept."""

    # an inner speaker-independent split of the training speakers: the reported clips stay unseen
    INNER = "inner"
    # the reported validation clips themselves (the seed protocol): the figure is the best of N epochs
    HELDOUT = "heldout"


class VALoss(StrEnum):
    MSE = "mse"
    CCC = "ccc"


class Augment(StrEnum):
    NONE = "none"
    SPEC = "spec"  # SpecAugment masks on cached features (cheap)
    WAVE = "wave"  # random placement + gallery-microphone chain on the waveform, then the front end
    FULL = "full"  # wave then spec


class Device(StrEnum):
    AUTO = "auto"  # CUDA when visible, else CPU
    CPU = "cpu"
    CUDA = "cuda"


class TrainConfig(BaseModel):
    """Everything a run depends on; stored in its checkpoints and metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    data: list[str] = Field(default_factory=lambda: [SYNTHETIC], description="corpus specs; 'synthetic[:N[:SEED]]'")
    taxonomy: str = "default"
    split: SplitKind = SplitKind.SPEAKER
    test_corpus: str | None = Field(None, description="with split=corpus: the held-out corpus")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    select: Selection = Field(
        Selection.INNER, description="inner: choose the epoch on held-back training speakers; heldout: seed protocol"
    )
    refit: bool = Field(
        False,
        description="with select=inner: train again on all training speakers up to the chosen epoch, replaying "
        "the learning-rate schedule of the choosing run (the held-back speakers then train too)",
    )
    synthetic_per_class: int = Field(0, ge=0, description="procedural clips per class added to training only")
    cache_dir: Path | None = None
    # model
    arch: Arch = Arch.CNN
    width: int = Field(32, gt=0)
    embedding_dim: int = Field(128, gt=0)
    rnn_hidden: int = Field(128, gt=0)
    dropout: float = Field(0.3, ge=0, lt=1)
    heads: int = Field(4, gt=0)
    layers: int = Field(2, gt=0)
    shared_dim: int = Field(128, gt=0)
    # optimisation (seed protocol)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=1, description="global batch; each DDP process takes batch/world")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    va_loss: VALoss = VALoss.MSE
    va_weight: float = Field(0.5, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: bool = Field(False, description="inverse-frequency cross-entropy weights")
    plateau_patience: int = Field(3, ge=0)
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    augment: Augment = Augment.SPEC
    seed: int = 0
    # running
    out: Path = Path("runs/audio")
    resume: bool = False
    compile: bool = Field(False, description="torch.compile the encoder (about 10x faster training on CPU)")
    # One thread by default: on a shared or oversubscribed CPU, two OpenMP threads per process measured up
    # to 20x slower than one (threads spin at barriers waiting for a descheduled partner).
    threads: int = Field(1, ge=0, description="torch CPU threads per process; 0 leaves torch's default")
    latency_threads: int = Field(2, ge=1, description="ONNX Runtime threads for the CPU timing (the engine's)")
    device: Device = Device.AUTO
    reports: bool = True
    latency_runs: int = Field(50, ge=0, description="ONNX Runtime timing repetitions (0: skip)")

    def encoder_config(self, n_classes: int, frontend: FrontEndConfig) -> EncoderConfig:
        return EncoderConfig(
            arch=self.arch,
            n_classes=n_classes,
            n_mels=frontend.n_mels,
            n_frames=frontend.n_frames,
            embedding_dim=self.embedding_dim,
            width=self.width,
            rnn_hidden=self.rnn_hidden,
            dropout=self.dropout,
            heads=self.heads,
            layers=self.layers,
        )


# -- 2. data ------------------------------------------------------------------------------------------------


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


def synthetic_records(classes: Sequence[str], n_per_class: int, seed: int, frontend: FrontEndConfig):
    """Procedural clips as AudioRecords (corpus 'synthetic') with the sources that generate them."""

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
        sources.append(ClipSource(key, lambda i=spec.index: corpus[i].audio))
    return records, sources


def load_records(specs: Sequence[str], taxonomy, frontend: FrontEndConfig):
    """Corpus specs -> (records the taxonomy keeps, their sources, load report dict)."""

    records, sources, reports = [], [], []
    for spec in specs:
        synth = parse_synthetic(spec)
        if synth is not None:
            recs, srcs = synthetic_records(taxonomy.classes, synth[0], synth[1], frontend)
            report = LoadReport(source=spec)
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
    return records, sources, LoadReport.combine(reports).to_dict()


def class_label(taxonomy) -> Callable[[Any], str]:
    """Record -> training class name, for stratified splits and split summaries."""
    return lambda r: taxonomy.class_of(r.emotion) or "(va only)"


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
    try:
        taxonomy = get_taxonomy(cfg.taxonomy)
    except ValueError as exc:
        raise ConfigError(f"--taxonomy: {exc}") from exc
    records, sources, report = load_records(cfg.data, taxonomy, frontend)
    source_of = {id(r): s for r, s in zip(records, sources, strict=True)}
    real = [r for r in records if r.corpus != SYNTHETIC]
    extra = [r for r in records if r.corpus == SYNTHETIC] if real else []
    split = make_split(real or records, cfg, taxonomy)
    train_records = list(split.train) + extra
    if cfg.synthetic_per_class:
        more, more_src = synthetic_records(taxonomy.classes, cfg.synthetic_per_class, cfg.seed + 1000, frontend)
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


# -- 3. model -----------------------------------------------------------------------------------------------


def build_model(cfg: TrainConfig, prep: RunData) -> AudioModel:
    enc = build_encoder(cfg.encoder_config(len(prep.classes), prep.frontend))
    return AudioModel(enc, ProjectionHead(enc.config.embedding_dim, cfg.shared_dim))


# -- 4. batches and augmentation ---------------------------------------------------------------------------


class TrainingBatches:
    """Training batches: cached features, or waveform augmentation + the torch front end on the fly."""

    def __init__(self, cfg: TrainConfig, prep: RunData, device: torch.device) -> None:

        self.cfg = cfg
        self.prep = prep
        self.device = device
        self.wave = cfg.augment in (Augment.WAVE, Augment.FULL)
        self.spec = cfg.augment in (Augment.SPEC, Augment.FULL)
        self.spec_config = SpecAugmentConfig()
        self.frontend = FrontEnd(prep.frontend, prep.mel_mean, prep.mel_std)  # CPU: augmentation runs there
        if self.wave:
            # babble is other training voices: a few hundred clips are plenty of talkers
            rng = np.random.default_rng(cfg.seed)
            pick = rng.permutation(len(prep.train))[:200]
            bank = [prep.train.audio[i].astype(np.float32) for i in pick]
            self.augmenter = Augmenter(AugmentConfig(sample_rate=prep.frontend.sample_rate), noise_bank=bank)

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


def epoch_batches(n: int, batch: int, epoch: int, seed: int, world: int, rank: int) -> list[list[int]]:
    """This rank's batches for an epoch. DistributedSampler gives every rank the same count; the last
    short batch is dropped (fixed shapes for compiled graphs, no 1-clip BatchNorm batches)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    per_rank = max(1, batch // world)
    batches = [order[i : i + per_rank] for i in range(0, len(order), per_rank)]
    if len(batches) > 1 and len(batches[-1]) < per_rank:
        batches.pop()
    return batches


# -- 5. loss ------------------------------------------------------------------------------------------------


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - concordance correlation, averaged over valence and arousal ([B, 2] each)."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return (1 - 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)).mean()


def loss_fn(
    cfg: TrainConfig,
    out: tuple[torch.Tensor, ...],
    y: torch.Tensor,
    va: torch.Tensor,
    has_va: torch.Tensor,
    weight: torch.Tensor | None,
) -> torch.Tensor:
    logits, va_pred = out[0], out[1]
    labelled = y >= 0
    ce = (
        F.cross_entropy(logits[labelled], y[labelled], weight=weight, label_smoothing=cfg.label_smoothing)
        if bool(labelled.any())
        else logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
    )
    if cfg.va_weight == 0 or not bool(has_va.any()):
        return ce + va_pred.sum() * 0.0
    p, t = va_pred[has_va], va[has_va]
    va_term = ccc_loss(p, t) if cfg.va_loss is VALoss.CCC and len(p) > 1 else F.mse_loss(p, t)
    return ce + cfg.va_weight * va_term


# -- 6. the loop --------------------------------------------------------------------------------------------


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(
            int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
        )


def setup(cfg: TrainConfig) -> tuple[Dist, torch.device]:
    """Threads, device, and the process group under torchrun (gloo on CPU, nccl on CUDA)."""
    dist = Dist.from_env()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.device is Device.CUDA and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible")
    cuda = torch.cuda.is_available() and cfg.device is not Device.CPU
    device = torch.device(f"cuda:{dist.local_rank}" if cuda else "cpu")
    if dist.world > 1 and not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return dist, device


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    model: AudioModel
    history: list[dict[str, float]]


def checkpoint_extra(cfg: TrainConfig, prep: RunData, **state: Any) -> dict[str, Any]:
    """What a checkpoint carries besides the model: enough to resume, export and report."""
    return {
        "train_config": cfg.model_dump(mode="json"),
        "classes": prep.classes,
        "taxonomy": prep.taxonomy,
        "frontend": prep.frontend.model_dump(mode="json"),
        "mel_mean": [float(v) for v in prep.mel_mean],
        "mel_std": [float(v) for v in prep.mel_std],
        "split": prep.split,
        **state,
    }


def _rebuild(module: torch.nn.Module, cfg: TrainConfig, dist: Dist, device: torch.device) -> torch.nn.Module:
    """The callable the loop trains: DDP-wrapped when distributed, compiled when asked."""
    wrapped = module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a compiler failure falls back to eager, with a warning
        wrapped = torch.compile(wrapped)
    return wrapped


@torch.no_grad()
def predict(
    module: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    bank: ClipBank,
    mean: np.ndarray,
    std: np.ndarray,
    batch: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Clean evaluation windows through an encoder: logits, va and embedding for every clip.

    The last batch is zero-padded to `batch` so a compiled module sees one shape.
    """
    outs: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(bank), batch):
        x = standardize(bank.mels[start : start + batch], mean, std)
        n = len(x)
        if n < batch:
            x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
        out = module(x.to(device))
        outs.append(tuple(o[:n].float().cpu().numpy() for o in out[:3]))
    if not outs:
        return {"logits": np.zeros((0, 0)), "va": np.zeros((0, 2)), "embedding": np.zeros((0, 0))}
    logits, va, emb = (np.concatenate(parts) for parts in zip(*outs, strict=True))
    return {"logits": logits, "va": va, "embedding": emb}


def quick_scores(pred: dict[str, np.ndarray], bank: ClipBank, n_classes: int) -> dict[str, float]:

    labels = bank.labels
    keep = labels >= 0
    loss = float("nan")
    if keep.any():
        logits = torch.as_tensor(pred["logits"][keep])
        loss = float(F.cross_entropy(logits, torch.as_tensor(labels[keep])))
    m = classification_metrics(labels, pred["logits"].argmax(1), [str(i) for i in range(n_classes)])
    return {"loss": loss, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def train(
    cfg: TrainConfig,
    prep: RunData | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    command: str | None = None,
) -> TrainResult:
    """Run the configured training. `on_epoch(epoch, row)` is called after every validation (HPO pruning
    raises from it). Rank 0 writes checkpoints and reports to `cfg.out`."""

    started = time.time()
    dist, device = setup(cfg)
    torch.manual_seed(cfg.seed)
    if prep is None:
        if dist.world > 1 and not dist.main:
            torch.distributed.barrier()  # rank 0 fills the feature cache first
        prep = prepare(cfg, progress=dist.main)
        if dist.world > 1 and dist.main:
            torch.distributed.barrier()
    # `held_out` is what the figures are reported on; `prep` is what the loop fits and chooses the epoch on.
    held_out = prep
    if cfg.select is Selection.INNER:
        prep = inner_split(held_out, cfg.val_fraction, cfg.seed + 1)
    if dist.main:
        log.info("split: %s | train %d clips, val %d clips", held_out.rule, len(held_out.train), len(held_out.val))
        if prep is not held_out:
            log.info("epoch chosen on %s (%d clips); fitted on %d clips", prep.rule, len(prep.val), len(prep.train))
    out = Path(cfg.out)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg, prep).to(device)
    encoder = model.encoder
    optimizer = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    history: list[dict[str, float]] = []
    best = {"accuracy": -1.0, "macro_f1": -1.0, "epoch": -1}
    start_epoch = 0
    if cfg.resume and (out / LAST_CKPT).is_file():
        start_epoch, history, best = resume(out / LAST_CKPT, cfg, prep, model, optimizer, scheduler)
        if dist.main:
            log.info("resumed from %s at epoch %d", out / LAST_CKPT, start_epoch)

    weight = class_weight(cfg, prep, device)
    batches_of = TrainingBatches(cfg, prep, device)
    net = _rebuild(encoder, cfg, dist, device)
    eval_batch = max(1, cfg.batch_size // dist.world) * 4

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        train_loss, train_accuracy = fit_epoch(
            cfg, net, batches_of, optimizer, weight, epoch, dist, f"epoch {epoch + 1}"
        )
        val = quick_scores(
            predict(net, prep.val, prep.mel_mean, prep.mel_std, eval_batch, device), prep.val, len(prep.classes)
        )
        scheduler.step(val["loss"] if np.isfinite(val["loss"]) else -val["accuracy"])
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(row)
        improved = (val["accuracy"], val["macro_f1"]) > (best["accuracy"], best["macro_f1"])
        if improved:
            best = {"accuracy": val["accuracy"], "macro_f1": val["macro_f1"], "epoch": epoch + 1}
        if dist.main:
            log.info(
                "epoch %d/%d  loss %.3f  train acc %.3f  val acc %.3f  val F1 %.3f  lr %.2g  %.0fs%s",
                epoch + 1,
                cfg.epochs,
                row["train_loss"],
                row["train_accuracy"],
                val["accuracy"],
                val["macro_f1"],
                row["lr"],
                row["seconds"],
                "  *best*" if improved else "",
            )
            state = {
                "epoch": epoch,
                "history": history,
                "best": best,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            if improved:
                save_audio_model(model, out / BEST_CKPT, checkpoint_extra(cfg, prep, **state))
            save_audio_model(model, out / LAST_CKPT, checkpoint_extra(cfg, prep, **state))
        if on_epoch is not None:
            on_epoch(epoch, row)

    if dist.world > 1:
        torch.distributed.barrier()
    # finish on the best weights (the epoch's own copy on every rank: read it back from rank 0's file)
    best_path = out / BEST_CKPT
    if best_path.is_file():
        state_dict = torch.load(best_path, map_location=device, weights_only=True)["state_dict"]
        model.load_state_dict(state_dict)
    model.eval()
    refitted = cfg.refit and prep is not held_out and best["epoch"] > 0
    if refitted:
        schedule = [cfg.lr] + [h["lr"] for h in history[: best["epoch"] - 1]]  # the lr each epoch ran at
        model = refit_model(cfg, held_out, schedule, dist, device)
    metrics: dict[str, Any] = {}
    if dist.main:
        fit_projection(model, held_out if refitted else prep, cfg, device)
        report = reported_data(held_out, prep, refitted)
        metrics = evaluate_run(model, report, cfg, history, best, device, command, time.time() - started)
        state = {"epoch": best["epoch"] - 1, "history": history, "best": best, "metrics": json_safe(metrics)}
        save_audio_model(model.cpu(), best_path, checkpoint_extra(cfg, report, **state))
        (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8")
        log.info(
            "%s: val accuracy %.3f, macro-F1 %.3f (%s)",
            out,
            metrics["val"]["accuracy"],
            metrics["val"]["macro_f1"],
            report.rule,
        )
    if dist.world > 1:
        torch.distributed.barrier()
    return TrainResult(out, metrics, model.cpu(), history)


def reported_data(held_out: RunData, fitted: RunData, refitted: bool = False) -> RunData:
    """The outer validation clips with the statistics the model was fitted with (they travel with it).

    With an inner selection split, `split.selection` records it; `split.val_speakers` stays the outer one, so
    the alignment and `evaluate` keep those speakers held out. A refitted model used all outer training
    speakers and their statistics."""
    if fitted is held_out:
        return held_out
    split = {**held_out.split, "selection": {**fitted.split, "refit": refitted}}
    if refitted:
        return replace(held_out, split=split)
    return replace(held_out, split=split, mel_mean=fitted.mel_mean, mel_std=fitted.mel_std)


def class_weight(cfg: TrainConfig, data: RunData, device: torch.device) -> torch.Tensor | None:
    """Inverse-frequency cross-entropy weights of the training clips (`class_weights`), else None."""
    if not cfg.class_weights:
        return None
    counts = np.bincount(data.train.labels[data.train.labels >= 0], minlength=len(data.classes))
    return torch.as_tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32).to(device)


def fit_epoch(
    cfg: TrainConfig,
    net: torch.nn.Module,
    batches_of: TrainingBatches,
    optimizer: torch.optim.Optimizer,
    weight: torch.Tensor | None,
    epoch: int,
    dist: Dist,
    desc: str,
) -> tuple[float, float]:
    """One pass over this rank's batches; (mean loss per clip, accuracy on labelled clips)."""
    from tqdm import tqdm

    net.train()
    batches = epoch_batches(len(batches_of.prep.train), cfg.batch_size, epoch, cfg.seed, dist.world, dist.rank)
    total, correct, seen = 0.0, 0, 0
    show = dist.main and sys.stderr.isatty()  # bars for a terminal; a log file gets the epoch lines
    bar = tqdm(batches, desc=f"{desc}/{cfg.epochs}", unit="batch", disable=not show, leave=False)
    for step, index in enumerate(bar):
        x, y, va, has_va = batches_of(index, epoch, step, dist.rank)
        out_t = net(x)
        loss = loss_fn(cfg, out_t, y, va, has_va, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(index)
        labelled = y >= 0
        correct += int((out_t[0].argmax(1)[labelled] == y[labelled]).sum())
        seen += int(labelled.sum())
        bar.set_postfix(loss=f"{total / max(1, step + 1) / len(index):.3f}")
    net.eval()
    return total / max(1, sum(len(b) for b in batches)), correct / max(1, seen)


def refit_model(cfg: TrainConfig, data: RunData, schedule: list[float], dist: Dist, device: torch.device) -> AudioModel:
    """A fresh model trained on all of `data.train` for len(schedule) epochs, epoch e at learning rate
    schedule[e]: the choosing run's own schedule up to its kept epoch, so nothing is chosen again."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data).to(device)
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=schedule[0], weight_decay=cfg.weight_decay)
    batches_of = TrainingBatches(cfg, data, device)
    net = _rebuild(model.encoder, cfg, dist, device)
    weight = class_weight(cfg, data, device)
    for epoch, lr in enumerate(schedule):
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.time()
        loss, accuracy = fit_epoch(cfg, net, batches_of, optimizer, weight, epoch, dist, f"refit {epoch + 1}")
        if dist.main:
            log.info(
                "refit epoch %d/%d  loss %.3f  train acc %.3f  lr %.2g  %.0fs",
                epoch + 1, len(schedule), loss, accuracy, lr, time.time() - t0,
            )  # fmt: skip
    if dist.world > 1:
        torch.distributed.barrier()
    return model.eval()


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The trainer's extras stored beside the model in a training checkpoint (classes, statistics, ...)."""
    ckpt = load_checkpoint(path, required=TRAINING_EXTRAS)
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler")}


def resume(path: Path, cfg: TrainConfig, prep: RunData, model, optimizer, scheduler):
    """Restore model, optimizer and scheduler from the last checkpoint; refuse a different setup."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved = ckpt.get("train_config", {})
    keys = ("arch", "taxonomy", "data", "split", "test_corpus", "width", "embedding_dim", "rnn_hidden", "seed")
    now = cfg.model_dump(mode="json")
    diff = [k for k in keys if saved.get(k) != now.get(k)]
    if diff or ckpt.get("split", {}).get("val_speakers") != prep.split.get("val_speakers"):
        raise ConfigError(f"{path}: cannot resume, the run differs in {diff or ['split']}; use another --out")
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt["epoch"]) + 1, list(ckpt["history"]), dict(ckpt["best"])


# -- 7. evaluation, the shared-space placeholder, reports ----------------------------------------------------


def fit_projection(model: AudioModel, prep: RunData, cfg: TrainConfig, device: torch.device) -> None:
    """Placeholder shared-space head until audio–art alignment replaces it.

    Keeps the head's random first layer and solves its output layer in closed form (ridge regression)
    so every training embedding lands near a fixed random direction of its class: class centroids
    separate in the shared space, at no training cost.
    """
    train = predict(model.encoder, prep.train, prep.mel_mean, prep.mel_std, 64, device)
    keep = prep.train.labels >= 0
    if not keep.any():
        return
    first, last = model.projection.net[0], model.projection.net[-1]
    with torch.no_grad():
        emb = torch.as_tensor(train["embedding"][keep], device=device)
        hidden = F.relu(first(emb)).double()  # [N, H]
        gen = torch.Generator().manual_seed(cfg.seed)
        anchors = F.normalize(torch.randn(len(prep.classes), last.out_features, generator=gen), dim=1)
        target = anchors[torch.as_tensor(prep.train.labels[keep])].double().to(device)  # [N, S]
        ones = torch.ones(len(hidden), 1, dtype=hidden.dtype, device=device)
        design = torch.cat([hidden, ones], dim=1)  # [N, H+1]: the bias is the last column
        ridge = 1e-2 * torch.eye(design.shape[1], dtype=design.dtype, device=device)
        solution = torch.linalg.solve(design.T @ design + ridge, design.T @ target)  # [H+1, S]
        last.weight.copy_(solution[:-1].T.float())
        last.bias.copy_(solution[-1].float())


def evaluate_run(model: AudioModel, prep: RunData, cfg: TrainConfig, history, best, device, command, seconds):
    """Full figures on the validation clips, speed through ONNX Runtime, and the PNGs."""

    pred = predict(model.encoder, prep.val, prep.mel_mean, prep.mel_std, 64, device)
    cls = reports.classification_metrics(prep.val.labels, pred["logits"].argmax(1), prep.classes)
    cls["va"] = reports.va_metrics(prep.val.va, pred["va"], prep.val.has_va)
    per_corpus = {}
    for corpus in sorted(set(prep.val.corpora)):
        sel = np.array([c == corpus for c in prep.val.corpora])
        if len(set(prep.val.corpora)) > 1 and sel.any():
            m = reports.classification_metrics(prep.val.labels[sel], pred["logits"][sel].argmax(1), prep.classes)
            per_corpus[corpus] = {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    if per_corpus:
        cls["per_corpus"] = per_corpus
    frames = prep.frontend.n_frames
    example = torch.zeros(1, 1, prep.frontend.n_mels, frames)
    ms, ms_min = (
        reports.onnx_cpu_ms(model.cpu(), example, cfg.latency_threads, cfg.latency_runs)
        if cfg.latency_runs
        else (None, None)
    )
    model.to(device)
    metrics = {
        "split_rule": prep.rule,
        "split": prep.split,
        "taxonomy": prep.taxonomy["name"],
        "classes": prep.classes,
        "arch": cfg.arch.value,
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "val": cls,
        "parameters": {"encoder": count_parameters(model.encoder), "audio_model": count_parameters(model)},
        "selection": selection_summary(cfg, prep, history, best),
        "cpu_ms_per_window": {"onnxruntime": ms, "fastest": ms_min, "threads": cfg.latency_threads, "batch": 1},
        "data": {"specs": cfg.data, "load": prep.load_report},
        "command": command,
        "duration_s": round(seconds, 1),
        "config": cfg.model_dump(mode="json"),
        "history": history,
    }
    if cfg.reports:
        out = Path(cfg.out)
        tag = f"{cfg.arch.value}, {prep.taxonomy['name']} | validation: {prep.rule}"
        reports.plot_confusion(
            cls["confusion"],
            prep.classes,
            f"{tag}\nacc {cls['accuracy']:.3f}  macro-F1 {cls['macro_f1']:.3f}",
            out / "confusion.png",
        )
        reports.plot_curves(history, tag, out / "curves.png")
        reports.plot_embedding(
            pred["embedding"],
            prep.val.labels,
            prep.classes,
            prep.val.corpora,
            f"t-SNE of validation embeddings\n{tag}",
            out / "embedding.png",
        )
    return metrics


def selection_summary(cfg: TrainConfig, prep: RunData, history: list[dict[str, float]], best) -> dict[str, Any]:
    """How the kept epoch was chosen, with the choosing clips' figures (best and last epoch)."""
    last = {k: history[-1][f"val_{k}"] for k in ("accuracy", "macro_f1")} if history else {}
    chosen = {"accuracy": best["accuracy"], "macro_f1": best["macro_f1"], "epoch": best["epoch"]}
    if cfg.select is Selection.INNER:
        inner = prep.split.get("selection", {})
        return {
            "on": cfg.select.value,
            "rule": inner.get("rule"),
            "speakers": inner.get("val_speakers"),
            "clips": inner.get("val", {}).get("clips"),
            "best": chosen,
            "last_epoch": last,
            "refit": bool(inner.get("refit")),
            "note": "epoch chosen on held-back training speakers"
            + ("; then trained again on all training speakers up to it" if inner.get("refit") else "")
            + "; 'val' is measured once, on clips no choice saw",
        }
    return {
        "on": cfg.select.value,
        "rule": prep.rule,
        "best": chosen,
        "last_epoch": last,
        "note": f"epoch chosen on the reported clips (seed protocol): 'val' is the best of {len(history)} epochs "
        "on them, so it is optimistic; 'last_epoch' is the unselected figure",
    }


def json_safe(obj: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


# -- 8. command line ---------------------------------------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        action="append",
        metavar="SPEC",
        help="corpus spec, repeatable: ravdess:DIR, emodb:DIR, csv:FILE, folder:DIR, ... or "
        "synthetic[:N_PER_CLASS[:SEED]] (default: synthetic)",
    )
    g.add_argument("--taxonomy", default="default", help="default | seed3 | a .toml/.json taxonomy file")
    g.add_argument(
        "--split",
        type=SplitKind,
        choices=list(SplitKind),
        default=SplitKind.SPEAKER,
        help="speaker (default), random (labelled NOT speaker-independent) or corpus",
    )
    g.add_argument("--test-corpus", help="with --split corpus: the corpus held out for testing")
    g.add_argument("--val-fraction", type=float, default=0.2)
    g.add_argument(
        "--select",
        type=Selection,
        choices=list(Selection),
        default=Selection.INNER,
        help="which clips choose the kept epoch: inner (default; held-back training speakers, the reported "
        "clips stay unseen) or heldout (the seed protocol: the reported clips, optimistic)",
    )
    g.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --select inner: train again on all training speakers up to the chosen epoch",
    )
    g.add_argument("--synthetic-per-class", type=int, default=0, help="procedural clips added to training only")
    g.add_argument("--cache-dir", type=Path, help="feature cache (default ~/.cache/synesthesia/features)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--arch", type=Arch, choices=list(Arch), default=Arch.CNN, help="encoder family")
    for name, default in (("width", 32), ("embedding-dim", 128), ("rnn-hidden", 128), ("heads", 4), ("layers", 2)):
        g.add_argument(f"--{name}", type=int, default=default)
    g.add_argument("--dropout", type=float, default=0.3)


def add_optim_arguments(parser: argparse.ArgumentParser, epochs: int = 20) -> None:
    g = parser.add_argument_group("optimisation (defaults: the seed protocol)")
    g.add_argument("--epochs", type=int, default=epochs)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--va-loss", type=VALoss, choices=list(VALoss), default=VALoss.MSE)
    g.add_argument("--va-weight", type=float, default=0.5, help="weight of the valence/arousal loss")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--class-weights", action="store_true", help="inverse-frequency cross-entropy weights")
    g.add_argument("--augment", type=Augment, choices=list(Augment), default=Augment.SPEC)
    g.add_argument("--seed", type=int, default=0)


def add_run_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    g = parser.add_argument_group("running")
    g.add_argument("--out", type=Path, default=Path(out), help=f"run directory (default {out})")
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the encoder: ~10x faster on CPU after ~30 s of compiling",
    )
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (0: torch default)")
    g.add_argument("--latency-threads", type=int, default=2, help="ONNX Runtime threads for the CPU ms figure")
    g.add_argument("--device", type=Device, choices=list(Device), default=Device.AUTO)
    g.add_argument("--no-reports", dest="reports", action="store_false", help="skip the PNGs")
    g.add_argument("--latency-runs", type=int, default=50, help="ONNX Runtime timing repetitions (0: skip)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_optim_arguments(parser)
    add_run_arguments(parser, "runs/audio")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")


CONFIG_FIELDS = set(TrainConfig.model_fields)


def config_from_args(args: argparse.Namespace, **override: Any) -> TrainConfig:
    """argparse namespace -> TrainConfig (unknown namespace entries ignored)."""
    values = {k: v for k, v in vars(args).items() if k in CONFIG_FIELDS and v is not None}
    values.setdefault("data", [SYNTHETIC])
    values.update(override)
    try:
        return TrainConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"invalid training settings: {exc}") from exc


def command_line(args: argparse.Namespace) -> str:
    return getattr(args, "command_line", None) or "synesthesia-train " + shlex.join(sys.argv[1:])


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        result = train(cfg, command=command_line(args))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if result.metrics:
        v = result.metrics["val"]
        print(
            json.dumps(
                {
                    "out": str(result.out),
                    "accuracy": v["accuracy"],
                    "macro_f1": v["macro_f1"],
                    "split": result.metrics["split_rule"],
                }
            )
        )
    return 0
