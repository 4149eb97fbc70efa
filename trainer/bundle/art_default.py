"""The art half of the default bundle: art space, GAN, audio alignment, art index, metrics, figures.

`build_art_half` does the work from an audio model and audio clips (train and held-out speakers), so the
trainer's `default` command (trainer.bundle.default) can call it after training the encoder; `build_default` is
the hook that command calls with the audio-only bundle it wrote: it adds the aligned audio projection,
the generator, the art index, the art encoder, figures and metrics to that same bundle.

Every stage reuses its checkpoint under RUNS when it is complete (art space, GAN), so a reproduction can
be resumed, and a new audio encoder only re-runs the seconds-long audio alignment. `load_art_source` takes
the art half (art encoder, valence/arousal readout, generator) from a finished bundle instead, for a new
encoder aligned to a shipped art half (`synesthesia-train default --art-from DIR`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import ConfigError
from engine.models.bundle import MANIFEST, Manifest, load_bundle
from engine.models.checkpoint import load_checkpoint, load_generator, load_upsampler, save_upsampler
from engine.models.ensemble import EnsembleAudioModel
from engine.models.generator import Generator, GeneratorConfig
from engine.models.heads import AudioModel
from engine.models.upsampler import Upsampler, UpsamplerConfig
from trainer.art.encoder import ArtEncoder, load_art_encoder, save_art_encoder
from trainer.art.images import ArtImages, procedural_art
from trainer.bundle import speed
from trainer.bundle.export import TensorRTMode, compile_tensorrt, write_bundle
from trainer.gan import evaluate as art_eval
from trainer.gan import quality
from trainer.gan.cascade import RefinerTrainConfig, join, train_refiner
from trainer.gan.model import ConditionBank, DiscriminatorConfig, condition_bank
from trainer.gan.train import GanConfig, ema_generator_from_checkpoint, load_gan_checkpoint, save_gan_outputs, train_gan
from trainer.gan.upsampler import UpsamplerTrainConfig, train_upsampler
from trainer.space.align import (
    AlignConfig,
    ArtSpace,
    align_audio,
    align_ensemble,
    build_art_index,
    load_art_space,
    plot_alignment,
    retrieval_metrics,
    save_alignment,
    save_art_space,
    train_art_space,
    va_head_from_state,
)
from trainer.space.audio_set import AudioSet, audio_shared, concat_audio
from trainer.space.data import (
    ART_ENCODER_FILE,
    DEFAULT_CLASSES,
    VAL_ART_SEED_OFFSET,
    audio_from_run,
    load_art,
    load_audio_bundle,
    synthetic_split,
)

log = logging.getLogger("synesthesia.art_default")

# The GAN of the shipped bundle (v1, 128 px, 1600 steps), kept for reference and for `--art-from`-style reuse.
SHIPPED_GAN = GanConfig(
    generator=GeneratorConfig(resolution=128, z_dim=64, cond_dim=128, base_channels=8),
    discriminator=DiscriminatorConfig(resolution=128, cond_dim=128, base_channels=16),
    steps=1600,
    batch_size=16,
    ema_decay=0.995,
    ema_start=200,
    audio_fraction=0.0,
    checkpoint_every=200,
    sample_every=400,
)

# The GAN the default recipe trains now (issue 11): a cascade. Its base is generator v2 (anti-aliased
# resize-then-conv, noise inputs) at 64 px, widths 8, batch 8, two D updates per G update, 4300 steps (where
# the shipped base stopped); the
# refiner (DEFAULT_REFINER) takes it to 256 px (docs/art_training.md §3).
DEFAULT_GAN = SHIPPED_GAN.model_copy(
    update={
        "generator": GeneratorConfig(resolution=64, z_dim=64, cond_dim=128, base_channels=8, arch="v2"),
        "discriminator": DiscriminatorConfig(resolution=64, cond_dim=128, base_channels=8),
        "batch_size": 8,
        "steps": 4300,
        "checkpoint_every": 100,
        "sample_every": 500,
    }
)
DEFAULT_REFINER = RefinerTrainConfig(resolution=256, base_resolution=64, steps=2400)

# The documented commands behind each figure (`synesthesia-train align` / `gan` / `cascade` with these
# flags reproduce the default bundle's runs under runs/default; --evaluate recomputes the metrics of a bundle).
ART_SPACE_COMMAND = "synesthesia-train align --art-only --out runs/default/align"
GAN_COMMAND = (
    "synesthesia-train gan --out runs/default/gan --align runs/default/align/art_space.pt --resolution 64 "
    "--base-channels 8 --d-channels 8 --batch-size 8 --steps 4300 --art-size 256 --audio-fraction 0 "
    "--ema-decay 0.995 --checkpoint-every 100 --sample-every 500 && "
    "synesthesia-train cascade --base runs/default/gan/gan_last.pt --align runs/default/align/art_space.pt "
    "--out runs/default/cascade --art-size 256 --steps 2400"
)
# The display up-sampler the default recipe trains (x2 on the generator's 256 px frames).
DEFAULT_UPSAMPLER = UpsamplerTrainConfig(upsampler=UpsamplerConfig(factor=2), generator_resolution=256, steps=1500)
UPSAMPLER_COMMAND = "synesthesia-train upsampler --out runs/default/upsampler --factor 2 --generator-resolution 256"


class ArtHalfConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    art_per_class: int = Field(400, ge=1)
    art_val_per_class: int = Field(100, ge=1)
    art_size: int = Field(256, ge=16, description="corpus size: at least the generator's (never upsampled)")
    art_seed: int = 0
    index_per_class: int = Field(64, ge=1, description="artworks per emotion in the bundle's art index")
    thumbnail: int = Field(32, ge=8)
    eval_per_class: int = Field(200, ge=2, description="generated images per emotion for the metrics")
    align: AlignConfig = AlignConfig()
    gan: GanConfig = DEFAULT_GAN
    refiner: RefinerTrainConfig | None = Field(DEFAULT_REFINER, description="None: the GAN's generator alone")
    upsampler: UpsamplerTrainConfig | None = Field(DEFAULT_UPSAMPLER, description="None: no display up-sampler")
    upsampler_per_class: int = Field(60, ge=1, description="artworks per emotion rendered for the up-sampler")


@dataclass
class ArtHalf:
    """What the art half adds to a bundle."""

    audio_model: AudioModel | EnsembleAudioModel  # the encoder(s) with the aligned projection(s)
    generator: Generator  # EMA generator
    art_index: dict[str, np.ndarray]
    metrics: dict[str, Any]
    data: dict[str, Any]
    extra_files: dict[str, Path] = field(default_factory=dict)
    upsampler: Upsampler | None = None  # optional display up-sampler (bundle key `upsampler`)


@dataclass
class ArtSource:
    """The art half of a finished bundle, reused when only the audio side is trained again."""

    directory: Path
    art_encoder: ArtEncoder
    va_head: torch.nn.Linear | None  # None in bundles written before it was stored: refitted on the art
    generator: Generator
    art_space_metrics: dict[str, Any]
    gan_data: dict[str, Any]
    upsampler: Upsampler | None = None  # the bundle's display up-sampler, if it has one


def with_generator(source: ArtSource, path: Path, command: str | None = None) -> ArtSource:
    """`source` with another generator (a generator checkpoint, e.g. a cascade's generator_ema.pt) trained in
    the same art space; the source's up-sampler is dropped when it was made for another resolution."""
    generator = load_generator(path).eval()
    if generator.config.cond_dim != source.generator.config.cond_dim:
        raise ConfigError(f"{path}: takes {generator.config.cond_dim}-d conditions, the art space has "
                          f"{source.generator.config.cond_dim}")  # fmt: skip
    upsampler = source.upsampler if generator.config.resolution == source.generator.config.resolution else None
    ckpt = load_checkpoint(path, "generator")
    gan_data = {
        "resolution": generator.config.resolution,
        "arch": generator.config.arch,
        "generator_from": str(path),
        **({"cascade": ckpt["cascade"]} if "cascade" in ckpt else {}),
        **({"command": command} if command else {}),
    }
    return replace(source, generator=generator, upsampler=upsampler, gan_data=gan_data)


def load_art_source(bundle_dir: Path) -> ArtSource:
    """Read (and hash-check) the art half of `bundle_dir` into memory, so that bundle may be rewritten."""
    bundle = load_bundle(bundle_dir)  # format, keys and every file's sha256
    files = bundle.manifest.files
    if ART_ENCODER_FILE not in files or bundle.manifest.generator is None:
        raise ConfigError(f"{bundle_dir}: no art half to reuse (needs {ART_ENCODER_FILE} and a generator)")
    path = Path(bundle_dir) / ART_ENCODER_FILE
    encoder = load_art_encoder(path)
    ckpt = load_checkpoint(path, "art_encoder")
    va_head = va_head_from_state(ckpt["va_head"]) if "va_head" in ckpt else None
    generator = load_generator(Path(bundle_dir) / bundle.manifest.generator.torch)
    raw = json.loads((Path(bundle_dir) / MANIFEST).read_text(encoding="utf-8"))
    art = raw.get("metrics", {}).get("art", {})
    space_metrics = {k: v for k, v in art.get("art_space", {}).items() if k != "command"}
    gan_data = {**raw.get("data", {}).get("gan", {}), "reused_from": str(bundle_dir)}
    up = bundle.manifest.upsampler
    upsampler = load_upsampler(Path(bundle_dir) / up.torch) if up is not None and up.torch else None
    return ArtSource(Path(bundle_dir), encoder, va_head, generator.eval(), space_metrics, gan_data, upsampler)


def fit_va_readout(art_encoder: ArtEncoder, art: ArtImages) -> torch.nn.Linear:
    """A valence/arousal readout tanh(W s + b) from the shared space, fitted in closed form on `art`
    (least squares on atanh of the targets): stands in for stage 1's readout where a bundle lacks it."""
    with torch.no_grad():
        _, shared = art_encoder.encode(art.tensor())  # [N, S]
        target = torch.atanh(torch.from_numpy(art.va).clamp(-0.95, 0.95)).double()  # [N, 2]
        design = torch.cat([shared.double(), torch.ones(len(shared), 1, dtype=torch.float64)], dim=1)  # [N, S+1]
        ridge = 1e-3 * torch.eye(design.shape[1], dtype=torch.float64)
        solution = torch.linalg.solve(design.T @ design + ridge, design.T @ target)  # [S+1, 2]
        head = torch.nn.Linear(shared.shape[1], 2)
        head.weight.copy_(solution[:-1].T.float())
        head.bias.copy_(solution[-1].float())
    return head.eval()


# Procedural voices added to the alignment (training voices) and to its held-out audio (the rest):
# keyword arguments of trainer.space.data.synthetic_split.
ALIGNMENT_VOICES: dict[str, Any] = {"per_class": 80, "voices": 10, "seed": 7001, "val_fraction": 0.2}


def _complete_gan(path: Path, cfg: GanConfig) -> bool:
    if not path.is_file():
        return False
    ckpt = load_gan_checkpoint(path)
    return GanConfig.model_validate(ckpt["config"]) == cfg and int(ckpt["step"]) >= cfg.steps


def build_art_half(
    audio_model: AudioModel | EnsembleAudioModel,
    audio_train: AudioSet,
    audio_val: dict[str, AudioSet],
    runs: Path,
    config: ArtHalfConfig | None = None,
    *,
    reuse: bool = True,
    audio_data: dict[str, Any] | None = None,
    evaluate_flags: str = "",
    art_source: ArtSource | None = None,
) -> ArtHalf:
    """Art space -> GAN -> audio alignment -> metrics, figures and art index.

    audio_val maps a name ("real", "synth", ...) to held-out clips; retrieval is reported per name and
    over all of them. Stages with a complete checkpoint under `runs` are reused when `reuse`.
    `evaluate_flags` completes the recorded --evaluate commands (the data flags that select this audio).
    With `art_source`, the art space and the generator are that bundle's (stages 2 and 3 are skipped).
    """
    cfg = config or ArtHalfConfig()
    classes = list(audio_train.classes)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. Art: procedural corpus, validation from another seed.
    art_train, art_val = load_art(
        classes,
        per_class=cfg.art_per_class,
        val_per_class=cfg.art_val_per_class,
        size=cfg.art_size,
        seed=cfg.art_seed,
        cache_dir=runs / "cache",
    )

    # 2. Art space (stage 1 of the alignment): reused when present.
    align_dir = runs / "align"
    align_dir.mkdir(parents=True, exist_ok=True)
    space_path = align_dir / "art_space.pt"
    t0 = time.perf_counter()
    if art_source is not None:
        va_head = art_source.va_head or fit_va_readout(art_source.art_encoder, art_train)
        space = ArtSpace(art_source.art_encoder.eval(), va_head, art_source.art_space_metrics)
        log.info("reusing the art space of %s", art_source.directory)
    elif reuse and space_path.is_file():
        space = load_art_space(space_path)
        log.info("reusing the art space in %s", space_path)
    else:
        space = train_art_space(art_train, art_val, cfg.align)
        save_art_space(space, cfg.align, space_path)
    timings["art_space_s"] = round(time.perf_counter() - t0, 1)

    # 3. GAN on the art space's image vectors (it does not need the audio encoder).
    gan_dir = runs / "gan"
    t0 = time.perf_counter()
    if art_source is not None:
        generator = art_source.generator
        log.info("reusing the generator of %s", art_source.directory)
    elif reuse and _complete_gan(gan_dir / "gan_last.pt", cfg.gan):
        generator = ema_generator_from_checkpoint(gan_dir / "gan_last.pt")
        log.info("reusing the finished GAN in %s", gan_dir)
    else:
        bank = condition_bank(space.art_encoder, art_train)
        result = train_gan(art_train, bank, cfg.gan, gan_dir, resume=reuse)
        save_gan_outputs(result, gan_dir)
        generator = result.generator
    if art_source is None and cfg.refiner is not None:
        # the cascade's refiner on the base just trained (resumed or reused from its checkpoint)
        bank = condition_bank(space.art_encoder, art_train)
        gcfg = cfg.refiner.generator_config(generator.config)
        refined = train_refiner(art_train, bank, cfg.refiner, gcfg, runs / "cascade", resume=reuse)
        generator = join(generator, refined.refiner, gcfg)
    timings["gan_s"] = round(time.perf_counter() - t0, 1)

    res = generator.config.resolution
    # 3b. The display up-sampler (seconds to minutes): reused when its checkpoint matches the config.
    upsampler = art_source.upsampler if art_source is not None else None
    if art_source is None and cfg.upsampler is not None and cfg.upsampler.generator_resolution == res:
        t0 = time.perf_counter()
        upsampler = _upsampler_stage(cfg, classes, runs, reuse)
        timings["upsampler_s"] = round(time.perf_counter() - t0, 1)

    # 4. Audio into the art space (stage 2): seconds, always re-run for the given encoder.
    t0 = time.perf_counter()
    all_val = concat_audio(list(audio_val.values()))
    align = align_ensemble if isinstance(audio_model, EnsembleAudioModel) else align_audio
    aligned = align(audio_model, audio_train, all_val, space, art_train, art_val, cfg.align)
    save_alignment(aligned, cfg.align, align_dir / "align.pt")
    # the readout travels with the encoder, so a later encoder can be aligned to this art half exactly
    save_art_encoder(space.art_encoder, align_dir / ART_ENCODER_FILE, {"va_head": space.va_head.state_dict()})
    timings["audio_alignment_s"] = round(time.perf_counter() - t0, 1)
    _, art_val_shared = space.art_encoder.encode(art_val.tensor())
    retrieval: dict[str, Any] = {"all": _brief(aligned.metrics)}
    for name, held_out in audio_val.items():
        shared = audio_shared(aligned.audio_model, held_out.features)
        retrieval[name] = _brief(retrieval_metrics(shared, held_out.labels, art_val_shared, art_val.labels, classes))

    # 5. GAN metrics and figures (conditions from held-out artworks and held-out audio clips).
    t0 = time.perf_counter()
    figures = runs / "figures"
    train_audio_shared = audio_shared(aligned.audio_model, audio_train.features)
    bank = ConditionBank(
        art=condition_bank(space.art_encoder, art_train).art,
        art_labels=torch.from_numpy(art_train.labels),
        audio=train_audio_shared,
        audio_labels=torch.from_numpy(audio_train.labels),
    )
    report = art_eval.evaluate_generator(
        generator, space.art_encoder, art_train, art_val, bank, aligned.audio_model, all_val, figures,
        per_class=cfg.eval_per_class,
    )  # fmt: skip
    plot_alignment(aligned, all_val, art_val, figures / "shared_space.png")
    timings["evaluation_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s"] = round(time.perf_counter() - t_start, 1)

    # 6. The art index: a balanced subset of the training artworks.
    index = build_art_index(space.art_encoder, art_train.per_class(cfg.index_per_class), cfg.thumbnail)

    metrics = art_metrics(retrieval, report, space.metrics, timings, evaluate_flags)
    # 5b. Sharpness, grid peaks, random-feature FD and precision/recall (trainer.gan.quality)
    corpus_display = None  # the display path's reference: the corpus rendered at the up-sampled size
    if upsampler is not None:
        size = res * upsampler.config.factor
        corpus_display = procedural_art(classes, 16, size=size, seed=cfg.art_seed + VAL_ART_SEED_OFFSET).images
    corpus = quality.to_uint8_hwc(art_val.tensor(res))
    metrics["quality"] = quality.quality_report(generator, bank.art, corpus, upsampler, corpus_display)
    if upsampler is not None:
        metrics["upsampler"] = {"config": upsampler.config.model_dump(mode="json"), "command": UPSAMPLER_COMMAND}
    data = {
        "art": {
            "corpus": "procedural (trainer.art.painter)",
            "train": len(art_train),
            "val": len(art_val),
            "size": cfg.art_size,
            "split": f"held-out seed: train seed {cfg.art_seed}, validation seed {cfg.art_seed + VAL_ART_SEED_OFFSET}",
            "index": len(index["ids"]),
        },
        "alignment_audio": audio_data or {},
        "gan": art_source.gan_data
        if art_source is not None
        else {
            "resolution": generator.config.resolution,
            "arch": generator.config.arch,
            "steps": cfg.gan.steps,
            "refiner_steps": cfg.refiner.steps if cfg.refiner is not None else None,
            "conditions": "artworks",
        },
    }
    extra = {ART_ENCODER_FILE: align_dir / ART_ENCODER_FILE}
    for png in sorted(figures.glob("*.png")):
        extra[f"figures/art/{png.name}"] = png
    (runs / "art_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return ArtHalf(aligned.audio_model, generator, index, metrics, data, extra, upsampler)


def _upsampler_stage(cfg: ArtHalfConfig, classes: list[str], runs: Path, reuse: bool) -> Upsampler:
    """Train the display up-sampler on the procedural corpus at generator resolution x factor (or reuse it)."""
    assert cfg.upsampler is not None
    path = runs / "upsampler" / "upsampler.pt"
    if reuse and path.is_file():
        ckpt = load_checkpoint(path, "upsampler")
        if ckpt.get("train_config") == cfg.upsampler.model_dump(mode="json"):
            log.info("reusing the up-sampler in %s", path)
            return load_upsampler(path)
    size = cfg.upsampler.generator_resolution * cfg.upsampler.upsampler.factor
    art = procedural_art(classes, cfg.upsampler_per_class, size=size, seed=cfg.art_seed, cache_dir=runs / "cache")
    model, _ = train_upsampler(art.images, cfg.upsampler)
    save_upsampler(model, path, extra={"train_config": cfg.upsampler.model_dump(mode="json")})
    return model


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("audio_to_art", "audio_to_art_per_class", "art_to_audio", "chance", "n_audio", "n_art")
    return {k: m[k] for k in keys if k in m}


def art_metrics(
    retrieval: dict[str, Any],
    report: dict[str, Any],
    art_space: dict[str, Any],
    timings: dict[str, float],
    evaluate_flags: str = "",
) -> dict[str, Any]:
    """The bundle's art metrics, each with the command that reproduces it."""
    evaluate_align = f"synesthesia-train align --evaluate assets/default{evaluate_flags}"
    evaluate_gan = f"synesthesia-train gan --evaluate assets/default{evaluate_flags}"
    return {
        "retrieval": {
            "goal": 0.95,
            "audio_to_art": retrieval["all"]["audio_to_art"],
            "by_audio_source": retrieval,
            "protocol": "nearest artwork (cosine, shared space) of each held-out-speaker clip, among held-out-seed "
            "artworks, has the clip's emotion",
            "command": evaluate_align,
        },
        "art_space": {**art_space, "command": ART_SPACE_COMMAND},
        "emotion_consistency": {
            "goal": 0.90,
            "value": report["consistency_art_cond"]["consistency"],
            "per_class": report["consistency_art_cond"]["per_class"],
            "audio_conditions": report.get("consistency_audio_cond", {}).get("consistency"),
            "real_heldout_art": report["consistency_real_heldout"],
            "noise": report["consistency_noise"],
            "protocol": f"{report['k']} nearest training artworks in the image encoder's feature space vote",
            "command": evaluate_gan,
        },
        "diversity": {
            "ratio": report["diversity"]["ratio"],
            "per_class": report["diversity"]["per_class"],
            "real_heldout_ratio": report["diversity_real_heldout"],
            "protocol": "mean pairwise feature distance within each emotion, generated / real",
            "command": evaluate_gan,
        },
        "frechet_distance": {
            "mean": report["frechet"]["mean"],
            "per_class": report["frechet"]["per_class"],
            "real_heldout_floor": report["frechet_real_heldout"]["mean"],
            "protocol": "per emotion, generated vs training artworks, image encoder features (not Inception)",
            "command": evaluate_gan,
        },
        "latent_smoothness": {**report["smoothness"], "command": evaluate_gan},
        "art_timings_s": timings,
        "gan_command": GAN_COMMAND,
    }


def add_art_half_to_bundle(bundle_dir: Path, half: ArtHalf) -> Manifest:
    """Rewrite `bundle_dir` with the aligned audio model, generator, art index and extras added.

    Everything else the bundle held (figures, reports, metrics, data, licence) is kept.
    """

    raw = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    core = {"audio_model.pt", "audio_model.onnx", "generator.pt", "generator.onnx", "art_index.npz"}
    core |= {"upsampler.pt", "upsampler.onnx"}
    keep = [f for f in raw["files"] if f not in core and f not in half.extra_files and not f.startswith("tensorrt/")]

    ab = load_audio_bundle(bundle_dir)
    with tempfile.TemporaryDirectory() as tmp:
        saved = {}
        for name in keep:
            dst = Path(tmp) / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle_dir / name, dst)
            saved[name] = dst
        metrics = {**raw.get("metrics", {}), "art": half.metrics}
        metrics.pop("export_parity_max_abs", None)
        data = {**raw.get("data", {}), **half.data}
        manifest = write_bundle(
            bundle_dir,
            name=raw["name"],
            audio_model=half.audio_model,
            classes=raw["classes"],
            frontend=ab.frontend,
            mel_mean=ab.mel_mean,
            mel_std=ab.mel_std,
            generator=half.generator,
            upsampler=half.upsampler,
            art_index=half.art_index,
            metrics=metrics,
            data=data,
            license=raw["license"],
            extra_files={**saved, **half.extra_files},
        )
    # write_bundle replaced the directory: compile both networks again where a GPU is present

    for component in ("audio", "generator"):
        manifest = compile_tensorrt(bundle_dir, TensorRTMode.AUTO, component) or manifest
    return manifest


__all__ = ["DEFAULT_CLASSES", "ArtHalf", "ArtHalfConfig", "add_art_half_to_bundle", "build_art_half"]


def build_default(
    bundle_dir: Path,
    runs_dir: Path,
    data_root: Path,
    art_source: ArtSource | None = None,
    checkpoint: Path | None = None,
) -> None:
    """The hook `synesthesia-train default` calls after writing the audio-only bundle.

    Audio for the alignment: the encoder's own corpora and speaker split (its training run, `checkpoint`,
    by default RUNS/main/best.pt; held-out speakers stay held out) plus procedural clips of voices it
    never heard.
    """

    del data_root  # the corpora are found through the run's own configuration
    attach_art_half(bundle_dir, checkpoint or runs_dir / "main" / "best.pt", runs_dir, art_source)


def attach_art_half(
    bundle_dir: Path,
    checkpoint: Path,
    runs_dir: Path,
    art_source: ArtSource | None = None,
    config: ArtHalfConfig | None = None,
) -> None:
    """Add an art half to the audio-only bundle exported from `checkpoint` (a training run's best.pt).

    Audio for the alignment: the run's own corpora and speaker split (held-out speakers stay held out)
    plus procedural clips of voices it never heard. With `art_source` (another bundle's art half: art
    space, generator, up-sampler) only the alignment and the evaluation run, about a minute on a CPU;
    without it the GAN is trained too (hours). Work files go under `runs_dir`.
    """
    torch.set_num_threads(1)
    ab = load_audio_bundle(bundle_dir)
    real_train, real_val, split = audio_from_run(checkpoint, ab)
    synth, s_tr, s_va = synthetic_split(ab.classes, ab, **ALIGNMENT_VOICES, cache_dir=runs_dir / "cache")
    audio_data = {
        "corpora": [
            f"the encoder's corpora ({checkpoint.parent}) with its speaker split",
            "procedural synth seed 7001",
        ],
        "real_val_speakers": split.get("val_speakers"),
        "synth": "80 clips per class, 10 voices per kind, 20% of voices held out (seed 7001)",
    }
    half = build_art_half(
        ab.audio_model,
        concat_audio([real_train, synth.subset(s_tr)]),
        {"real": real_val, "synth": synth.subset(s_va)},
        runs_dir,
        config,
        audio_data=audio_data,
        evaluate_flags=f" --audio-run {checkpoint} --cache {runs_dir / 'cache'}",
        art_source=art_source,
    )
    half.metrics["generator_speed"] = speed.measure_generator_speed(half.generator)
    add_art_half_to_bundle(bundle_dir, half)
    log.info("added the art half to %s", bundle_dir)
