"""A finished bundle with another generator trained in its art space, every generator figure measured again.

    python -m trainer.bundle.generator_swap runs/cascade/generator_ema.pt --bundle assets/default

For a new generator (a cascade from `synesthesia-train cascade`, a GAN run's gan_last.pt) when the audio
side stays as it is: the audio model with its projection, the art encoder and the art index are the
bundle's, and so is retrieval (the art space does not change). The generator is exported to ONNX with the
parity check; emotion consistency, diversity, Fréchet distance and walk smoothness (`gan --evaluate`),
image quality (`trainer.gan.quality`) and frame rate (`trainer.bundle.speed`) are measured on it, and the
emotion grids are drawn again. Unlike `trainer.bundle.preview`, the result is a bundle to ship.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from engine.models.bundle import MANIFEST, load_bundle
from engine.models.checkpoint import load_checkpoint
from trainer.bundle import speed
from trainer.bundle.art_default import (
    ALIGNMENT_VOICES,
    GAN_COMMAND,
    ArtHalf,
    ArtHalfConfig,
    add_art_half_to_bundle,
    art_metrics,
)
from trainer.gan import evaluate as art_eval
from trainer.gan import quality
from trainer.gan.model import condition_bank
from trainer.gan.train import generator_from_checkpoint
from trainer.space.data import ART_ENCODER_FILE, load_art, load_audio_bundle, load_bundle_models, synthetic_split

log = logging.getLogger("synesthesia.generator_swap")


def swap_generator(
    checkpoint: Path,
    bundle_dir: Path,
    cache: Path,
    command: str | None = None,
    config: ArtHalfConfig | None = None,
    speed_frames: int = 300,
) -> dict[str, Any]:
    """Rewrite `bundle_dir` in place with the generator of `checkpoint`; returns the new `metrics.art`.
    `config`: the art corpus and evaluation sizes (default: the default bundle's)."""
    torch.set_num_threads(1)
    generator = generator_from_checkpoint(checkpoint)
    models = load_bundle_models(bundle_dir)
    if generator.config.cond_dim != models.art_encoder.config.shared_dim:
        raise SystemExit(
            f"{checkpoint}: takes {generator.config.cond_dim}-d conditions, the bundle's art space differs"
        )
    raw = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    old_art = raw.get("metrics", {}).get("art", {})
    cfg = config or ArtHalfConfig()  # the default bundle's art corpus: 400 + 100 artworks per emotion at 256 px
    ab = load_audio_bundle(bundle_dir)
    art_train, art_val = load_art(
        ab.classes, per_class=cfg.art_per_class, val_per_class=cfg.art_val_per_class, size=cfg.art_size,
        seed=cfg.art_seed, cache_dir=cache,
    )  # fmt: skip
    # held-out procedural voices (as the bundle's alignment held them out) for the audio-conditioned figures
    voices = {**ALIGNMENT_VOICES, "per_class": min(ALIGNMENT_VOICES["per_class"], cfg.eval_per_class)}
    synth, _, s_va = synthetic_split(ab.classes, ab, **voices, cache_dir=cache)
    with tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "figures"
        report = art_eval.evaluate_bundle_generator(
            replace(models, generator=generator), art_train, art_val, synth.subset(s_va), figures,
            per_class=cfg.eval_per_class,
        )  # fmt: skip
        retrieval = old_art.get("retrieval", {}).get("by_audio_source") or {"all": {"audio_to_art": None}}
        space = {k: v for k, v in old_art.get("art_space", {}).items() if k != "command"}
        metrics = art_metrics(retrieval, report, space, old_art.get("art_timings_s", {}))
        metrics["gan_command"] = command or GAN_COMMAND
        bank = condition_bank(models.art_encoder, art_train)
        corpus = quality.to_uint8_hwc(art_val.tensor(generator.config.resolution))
        metrics["quality"] = quality.quality_report(generator, bank.art, corpus)
        metrics["generator_speed"] = speed.measure_generator_speed(generator, frames=speed_frames)
        metrics["generator_from"] = str(checkpoint)
        ckpt = load_checkpoint(checkpoint)
        gan_data = {
            "resolution": generator.config.resolution,
            "arch": generator.config.arch,
            "generator_from": str(checkpoint),
            **({"cascade": ckpt["cascade"]} if "cascade" in ckpt else {}),
        }
        bundle = load_bundle(bundle_dir)
        extra = {ART_ENCODER_FILE: bundle_dir / ART_ENCODER_FILE}
        for png in sorted(figures.glob("*.png")):
            extra[f"figures/art/{png.name}"] = png
        keep_art_encoder = Path(tmp) / ART_ENCODER_FILE
        keep_art_encoder.write_bytes(extra[ART_ENCODER_FILE].read_bytes())  # the bundle folder is rewritten
        extra[ART_ENCODER_FILE] = keep_art_encoder
        half = ArtHalf(
            audio_model=models.audio_model,
            generator=generator,
            art_index=bundle.art_index(),
            metrics=metrics,
            data={"gan": gan_data},
            extra_files=extra,
            upsampler=None,  # an up-sampler is made for one generator size; this one's is measured without
        )
        add_art_half_to_bundle(bundle_dir, half)
    log.info("swapped the generator of %s for %s", bundle_dir, checkpoint)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.bundle.generator_swap", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "checkpoint", type=Path, help="generator_ema.pt (e.g. of `synesthesia-train cascade`) or gan_last.pt"
    )
    parser.add_argument("--bundle", type=Path, default=Path("assets/default"), help="rewritten in place")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"), help="rendered art and audio features")
    parser.add_argument("--command", help="the command that trained the generator (default: the default recipe's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = swap_generator(args.checkpoint, args.bundle, args.cache, args.command)
    q = metrics["quality"]
    print(json.dumps({"quality": q, "emotion_consistency": metrics["emotion_consistency"]["value"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
