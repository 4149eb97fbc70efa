"""Data for the art half of the trainer (alignment, GAN): the audio model, audio clips, art corpora.

The audio encoder comes from a bundle (its AudioModel checkpoint, front-end settings and z-score
statistics). Audio clips come from the procedural corpus (trainer.audio.synthetic) and, from the trainer's
`default` command, from the real corpora; they are split by speaker so validation voices are never heard
in training. Art comes from the procedural corpus (a different seed for validation) or from labelled
image files (trainer.art.corpora). Features and renderings are cached under --cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.audio.frontend import FrontEndConfig
from engine.errors import SynesthesiaError
from engine.models.bundle import DEFAULT_BUNDLE, load_bundle
from engine.models.checkpoint import load_audio_model, load_checkpoint, load_generator, save_checkpoint
from engine.models.generator import Generator
from engine.models.heads import AudioModel
from trainer.art.corpora import load_art_folder
from trainer.art.encoder import ArtEncoder, load_art_encoder
from trainer.art.images import ArtImages, art_from_records, procedural_art
from trainer.audio.config import TrainConfig
from trainer.audio.data import prepare, prepare_pool
from trainer.audio.features import ClipBank, standardize
from trainer.audio.loop import checkpoint_info
from trainer.audio.synthetic import SyntheticCorpus
from trainer.space.audio_set import AudioSet, audio_set_from_clips, concat_audio

log = logging.getLogger("synesthesia.art")

DEFAULT_CLASSES = ("angry", "happy", "sad", "neutral")
VAL_ART_SEED_OFFSET = 1000  # validation art is rendered with seed art_seed + this: artworks never trained on


class AudioSource(StrEnum):
    SYNTH = "synth"  # procedural speech-like and music-like clips (trainer.audio.synthetic)


@dataclass
class ArtHalfData:
    """Everything alignment and the GAN read; the audio part is None when only art was asked for."""

    classes: list[str]
    art_train: ArtImages
    art_val: ArtImages
    info: dict[str, Any] = field(default_factory=dict)
    audio_model: AudioModel | None = None
    frontend: FrontEndConfig | None = None
    mel_mean: np.ndarray | None = None
    mel_std: np.ndarray | None = None
    audio_train: AudioSet | None = None
    audio_val: AudioSet | None = None  # all held-out clips
    audio_val_sets: dict[str, AudioSet] = field(default_factory=dict)  # held-out clips by source
    bundle_manifest: dict[str, Any] | None = None


@dataclass
class AudioBundle:
    audio_model: AudioModel
    frontend: FrontEndConfig
    mel_mean: np.ndarray
    mel_std: np.ndarray
    classes: list[str]
    manifest: dict[str, Any]


def load_audio_bundle(path: str | Path | None) -> AudioBundle:
    """The audio model, front end and statistics of a bundle (the default bundle when `path` is None)."""
    bundle = load_bundle(path)
    m = bundle.manifest
    if m.encoder.torch is None:
        raise ValueError(f"{bundle.path}: the bundle has no torch checkpoint of its audio model")
    model = load_audio_model(bundle.file(m.encoder.torch))
    return AudioBundle(
        model,
        bundle.frontend_config(),
        np.asarray(m.audio.mel_mean, dtype=np.float32),
        np.asarray(m.audio.mel_std, dtype=np.float32),
        list(m.classes),
        m.model_dump(mode="json"),
    )


def speaker_split(speakers: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train index, val index) with whole speakers held out: a seeded shuffle of the sorted speaker ids."""
    unique = np.array(sorted(set(speakers.tolist())))
    rng = np.random.default_rng(seed)
    order = unique[rng.permutation(len(unique))]
    n_val = max(1, round(val_fraction * len(unique))) if len(unique) > 1 else 0
    val_speakers = set(order[:n_val].tolist())
    is_val = np.array([s in val_speakers for s in speakers.tolist()])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def synthetic_audio(
    classes: Sequence[str],
    n_per_class: int,
    *,
    n_voices: int,
    seed: int,
    frontend: FrontEndConfig,
    mel_mean: np.ndarray,
    mel_std: np.ndarray,
    cache_dir: Path | None = None,
) -> AudioSet:
    """The procedural audio corpus through the bundle's front end (cached as a .pt file)."""

    key = _digest("synth-v2", list(classes), n_per_class, n_voices, seed, frontend.model_dump(), mel_mean, mel_std)
    cache = cache_dir / f"audio-{key}.pt" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        d = load_checkpoint(cache, "audio_set", required=("features", "labels", "va", "speakers"))
        return AudioSet(d["features"], d["labels"].numpy(), d["va"].numpy(), np.asarray(d["speakers"]), list(classes))
    corpus = SyntheticCorpus(list(classes), n_per_class, seed=seed, n_voices=n_voices, sample_rate=frontend.sample_rate)
    clips = ((it.audio, it.label, it.valence, it.arousal, it.speaker) for it in corpus)
    audio = audio_set_from_clips(clips, classes, frontend, mel_mean, mel_std)
    log.info("synthesised %d procedural audio clips (%d voices per kind)", len(audio), n_voices)
    if cache is not None:
        payload = {
            "kind": "audio_set",
            "features": audio.features,  # [N, 1, M, T]
            "labels": torch.from_numpy(audio.labels),
            "va": torch.from_numpy(audio.va),
            "speakers": [str(s) for s in audio.speakers],
        }
        save_checkpoint(payload, cache)  # tensors and lists only: loadable with weights_only
    return audio


def load_art(
    classes: Sequence[str],
    *,
    per_class: int,
    val_per_class: int,
    size: int,
    seed: int,
    art_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> tuple[ArtImages, ArtImages]:
    """(train, val) art. Procedural: validation is rendered with another seed. Folder-per-label
    (trainer.art.corpora): a seeded 80/20 split of the files."""
    if art_dir is None:
        train = procedural_art(classes, per_class, size=size, seed=seed, cache_dir=cache_dir)
        val = procedural_art(classes, val_per_class, size=size, seed=seed + VAL_ART_SEED_OFFSET, cache_dir=cache_dir)
        return train, val

    art = art_from_records(load_art_folder(art_dir, taxonomy=list(classes)), classes, size=size)
    order = np.random.default_rng(seed).permutation(len(art))
    n_val = max(1, len(art) // 5)
    return art.subset(np.sort(order[n_val:])), art.subset(np.sort(order[:n_val]))


# --------------------------------------------------------------------------------------------------
# Command line


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help=f"bundle whose audio encoder is aligned (default {DEFAULT_BUNDLE})",
    )
    g.add_argument(
        "--audio",
        default=AudioSource.SYNTH.value,
        choices=[s.value for s in AudioSource],
        help="audio corpus for alignment (default synth: procedural speech and music)",
    )
    g.add_argument(
        "--audio-run",
        type=Path,
        default=None,
        metavar="BEST_PT",
        help="also align on the corpora of this audio training run (its best.pt), with its speaker split "
        "(e.g. runs/default/main/best.pt)",
    )
    g.add_argument("--audio-per-class", type=int, default=80, help="procedural clips per emotion (default 80; 0: none)")
    g.add_argument("--voices", type=int, default=10, help="procedural voices per kind (default 10)")
    g.add_argument("--val-speakers", type=float, default=0.2, help="share of speakers held out (default 0.2)")
    g.add_argument("--art-dir", type=Path, default=None, help="folder-per-label artworks instead of procedural art")
    g.add_argument("--art-per-class", type=int, default=400, help="procedural training artworks per emotion")
    g.add_argument("--art-val-per-class", type=int, default=100, help="held-out procedural artworks per emotion")
    g.add_argument("--art-size", type=int, default=128, help="art resolution in memory (default 128)")
    g.add_argument("--art-seed", type=int, default=0, help=f"procedural art seed (validation: +{VAL_ART_SEED_OFFSET})")
    g.add_argument(
        "--data-seed",
        type=int,
        default=7001,
        help="seed of the procedural audio and the speaker split (default 7001: voices the encoder never heard)",
    )
    g.add_argument("--cache", type=Path, default=Path("runs/cache"), help="cache for rendered art and features")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core machine 2 threads ran ~7x slower, see docs)",
    )


def synthetic_split(
    classes: Sequence[str],
    ab: AudioBundle,
    *,
    per_class: int,
    voices: int,
    seed: int,
    val_fraction: float,
    cache_dir: Path | None,
) -> tuple[AudioSet, np.ndarray, np.ndarray]:
    """The procedural audio through the bundle's front end, with held-out voices: (all, train idx, val idx)."""
    synth = synthetic_audio(
        classes, per_class, n_voices=voices, seed=seed, frontend=ab.frontend, mel_mean=ab.mel_mean,
        mel_std=ab.mel_std, cache_dir=cache_dir,
    )  # fmt: skip
    tr, va = speaker_split(synth.speakers, val_fraction, seed)
    return synth, tr, va


def audio_from_run(checkpoint: Path, ab: AudioBundle) -> tuple[AudioSet, AudioSet, dict[str, Any]]:
    """(train, held-out) clips of an audio training run (its best.pt): the same corpora, taxonomy and
    speaker split as the encoder was trained with (trainer.audio.data.prepare, cached features),
    z-scored with the bundle's statistics. Clips without a class (VA-only) are left out."""

    info = checkpoint_info(checkpoint)
    cfg = TrainConfig.model_validate(info["train_config"])
    if cfg.folds is not None:
        return _fold_refit_audio(checkpoint, cfg, info, ab)
    prep = prepare(cfg, ab.frontend, progress=False)
    if prep.split.get("val_speakers") != info["split"].get("val_speakers"):
        raise SynesthesiaError(f"{checkpoint}: the corpora now split differently from when the encoder was trained")
    if list(prep.classes) != list(ab.classes):
        raise SynesthesiaError(f"{checkpoint}: classes {prep.classes} differ from the bundle's {ab.classes}")
    return bank_audio_set(prep.train, ab), bank_audio_set(prep.val, ab), dict(prep.split)


def _fold_refit_audio(checkpoint: Path, cfg: TrainConfig, info: dict[str, Any], ab: AudioBundle):
    """(train, held-out) for an encoder refitted on every speaker after `--folds`: it has no held-out
    speaker, so the alignment holds out the fold with the most speakers (the same folds, same seed) and
    is scored on them; the encoder did hear those voices, which the split's rule says."""
    from trainer.audio.folds import make_folds  # the fold protocol's module pulls in the training loop

    pool, extra = prepare_pool(cfg, ab.frontend, progress=False)
    if sorted(info["split"].get("train_speakers", [])) != pool.split["train_speakers"]:
        raise SynesthesiaError(f"{checkpoint}: the corpora now hold other speakers than when the encoder was trained")
    folds, protocol = make_folds(pool.train, cfg)
    speakers = np.asarray(pool.train.speakers)
    held = max(range(len(folds)), key=lambda k: (len(set(speakers[folds[k]])), -k))
    mask = np.zeros(len(pool.train), dtype=bool)
    mask[folds[held]] = True
    train = ClipBank.concat([pool.train.subset(np.flatnonzero(~mask)), extra])
    val = pool.train.subset(folds[held])
    split = {
        "rule": f"alignment hold-out: fold {held + 1} of {protocol} (the encoder, refitted on every speaker, "
        "heard these voices; the audio-to-art alignment did not)",
        "val_speakers": sorted(set(val.speakers)),
    }
    return bank_audio_set(train, ab), bank_audio_set(val, ab), split


def bank_audio_set(bank: Any, ab: AudioBundle) -> AudioSet:
    """A trainer ClipBank as an AudioSet, z-scored with `ab`'s statistics; clips without a class left out."""

    keep = np.flatnonzero(bank.labels >= 0)
    feats = standardize(bank.mels[keep], ab.mel_mean, ab.mel_std)  # [N, 1, M, T]
    speakers = np.asarray([bank.speakers[i] for i in keep])
    return AudioSet(feats, bank.labels[keep], bank.va[keep].astype(np.float32), speakers, list(ab.classes))


def load_data(args: argparse.Namespace, *, need_audio: bool = True) -> ArtHalfData:
    """Art (train, held-out) always; the bundle's audio model and the audio clips when `need_audio`."""
    ab = load_audio_bundle(args.bundle) if need_audio else None
    classes = ab.classes if ab is not None else list(DEFAULT_CLASSES)
    art_train, art_val = load_art(
        classes,
        per_class=args.art_per_class,
        val_per_class=args.art_val_per_class,
        size=args.art_size,
        seed=args.art_seed,
        art_dir=args.art_dir,
        cache_dir=args.cache,
    )
    info: dict[str, Any] = {
        "art": {
            "corpus": str(args.art_dir) if args.art_dir else "procedural (trainer.art.painter)",
            "train": len(art_train),
            "val": len(art_val),
            "size": args.art_size,
            "split": "80/20 by file (seeded)"
            if args.art_dir
            else f"held-out seed: train seed {args.art_seed}, validation seed {args.art_seed + VAL_ART_SEED_OFFSET}",
        }
    }
    data = ArtHalfData(classes=classes, art_train=art_train, art_val=art_val, info=info)
    if ab is None:
        return data
    train_sets: list[AudioSet] = []
    val_sets: dict[str, AudioSet] = {}
    info["audio"] = {"corpora": [], "split": {}}
    if args.audio_run is not None:
        real_train, real_val, split = audio_from_run(args.audio_run, ab)
        train_sets.append(real_train)
        val_sets["real"] = real_val
        info["audio"]["corpora"].append(f"the corpora of {args.audio_run} with its split")
        info["audio"]["split"]["real"] = {"rule": split.get("rule"), "val_speakers": split.get("val_speakers")}
    if args.audio_per_class > 0:
        synth, s_tr, s_va = synthetic_split(
            classes, ab, per_class=args.audio_per_class, voices=args.voices, seed=args.data_seed,
            val_fraction=args.val_speakers, cache_dir=args.cache,
        )  # fmt: skip
        train_sets.append(synth.subset(s_tr))
        val_sets["synth"] = synth.subset(s_va)
        info["audio"]["corpora"].append(
            f"procedural synth, seed {args.data_seed} ({args.audio_per_class} per class, {args.voices} voices per kind)"
        )
        info["audio"]["split"]["synth"] = (
            f"speaker-independent: {args.val_speakers:.0%} of voices held out (seed {args.data_seed})"
        )
    if not train_sets:
        raise SynesthesiaError("no audio for alignment: give --audio-run or --audio-per-class > 0")
    info["audio"]["train"] = sum(len(t) for t in train_sets)
    info["audio"]["val"] = {k: len(v) for k, v in val_sets.items()}
    data.audio_val_sets = val_sets
    data.audio_model = ab.audio_model
    data.frontend = ab.frontend
    data.mel_mean = ab.mel_mean
    data.mel_std = ab.mel_std
    data.audio_train = concat_audio(train_sets)
    data.audio_val = concat_audio(list(val_sets.values()))
    data.bundle_manifest = ab.manifest
    return data


@dataclass
class BundleModels:
    """The trained networks of a finished bundle that the art-side evaluations need."""

    audio_model: AudioModel
    art_encoder: ArtEncoder
    generator: Generator | None
    manifest: dict[str, Any]


ART_ENCODER_FILE = "art_encoder.pt"


def load_bundle_models(path: str | Path) -> BundleModels:
    """Audio model, art encoder (art_encoder.pt) and generator of a bundle, hash-checked by load_bundle."""

    bundle = load_bundle(path)
    m = bundle.manifest
    if m.encoder.torch is None:
        raise ValueError(f"{bundle.path}: the bundle has no torch checkpoint of its audio model")
    generator = None
    if m.generator is not None and m.generator.torch is not None:
        generator = load_generator(bundle.file(m.generator.torch))
    return BundleModels(
        load_audio_model(bundle.file(m.encoder.torch)),
        load_art_encoder(bundle.file(ART_ENCODER_FILE)),
        generator,
        m.model_dump(mode="json"),
    )
