"""Screen stage-2 settings on the inner split, never on the reported speakers.

    python -m trainer.bundle.align_dev runs/default/main/ckpt.pt --art-from assets/default --cache runs/default/cache

The checkpoint is the *choosing* run's last epoch (`ckpt.pt` of an `audio` run with `--select inner`): an
encoder trained on the inner training speakers only, so its inner validation speakers are unseen voices
that the reported (outer) speakers are not. Stage 2 is trained on the inner training clips plus
procedural voices for every combination of the given centroid weights and temperatures, and scored by
retrieval on the inner validation clips, next to that encoder's own accuracy there. One JSON line each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.audio.frontend import FrontEndConfig
from engine.errors import ConfigError
from engine.models.checkpoint import load_audio_model, load_checkpoint
from engine.models.heads import AudioModel
from trainer.art.images import ArtImages
from trainer.audio.config import TrainConfig
from trainer.audio.data import inner_split, prepare
from trainer.bundle.art_default import ALIGNMENT_VOICES, ArtHalfConfig, fit_va_readout, load_art_source
from trainer.space.align import AlignConfig, ArtSpace, AudioAlignConfig, align_audio
from trainer.space.audio_set import AudioSet, concat_audio
from trainer.space.data import AudioBundle, bank_audio_set, load_art, synthetic_split


def screen(
    audio_model: AudioModel,
    train: AudioSet,
    dev: AudioSet,
    space: ArtSpace,
    art_train: ArtImages,
    art_val: ArtImages,
    centroid_weights: Sequence[float],
    temperatures: Sequence[float],
) -> Iterator[dict[str, Any]]:
    """One row per setting: retrieval of the dev clips and their cosine to their emotion's art centroid."""
    for w_centroid, temperature in itertools.product(centroid_weights, temperatures):
        cfg = AlignConfig(audio=AudioAlignConfig(w_centroid=w_centroid, temperature=temperature))
        m = align_audio(audio_model, train, dev, space, art_train, art_val, cfg).metrics
        yield {
            "w_centroid": w_centroid,
            "temperature": temperature,
            "dev_retrieval": round(m["audio_to_art"], 4),
            "cosine_to_art_centroid": round(m["cosine_to_art_centroid"], 4),
        }


def inner_sets(checkpoint: Path) -> tuple[AudioBundle, AudioSet, AudioSet]:
    """(the run's encoder and front end, inner training clips, inner validation clips) of a choosing run."""

    ckpt = load_checkpoint(checkpoint, "audio_model", required=("train_config", "frontend", "split"))
    cfg = TrainConfig.model_validate(ckpt["train_config"])
    frontend = FrontEndConfig.model_validate(ckpt["frontend"])
    inner = inner_split(prepare(cfg, frontend, progress=False), cfg.val_fraction, cfg.seed + 1)
    if inner.split["val_speakers"] != ckpt["split"].get("val_speakers"):
        raise ConfigError(f"{checkpoint}: not the inner split of a --select inner run (use its ckpt.pt)")
    ab = AudioBundle(
        load_audio_model(checkpoint).eval(),
        frontend,
        np.asarray(ckpt["mel_mean"], np.float32),
        np.asarray(ckpt["mel_std"], np.float32),
        list(ckpt["classes"]),
        {},
    )
    return ab, bank_audio_set(inner.train, ab), bank_audio_set(inner.val, ab)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.bundle.align_dev", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="ckpt.pt of an audio run with --select inner")
    p.add_argument("--art-from", type=Path, default=Path("assets/default"), help="bundle whose art half is used")
    p.add_argument("--cache", type=Path, help="rendered art and procedural audio cache")
    p.add_argument("--centroid-weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.05])
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    ab, train, dev = inner_sets(args.checkpoint)
    synth, s_tr, _ = synthetic_split(ab.classes, ab, **ALIGNMENT_VOICES, cache_dir=args.cache)
    art = ArtHalfConfig()  # the same procedural art as the default bundle's art half
    art_train, art_val = load_art(
        ab.classes, per_class=art.art_per_class, val_per_class=art.art_val_per_class, size=art.art_size,
        seed=art.art_seed, cache_dir=args.cache,
    )  # fmt: skip
    source = load_art_source(args.art_from)
    va_head = source.va_head or fit_va_readout(source.art_encoder, art_train)
    space = ArtSpace(source.art_encoder, va_head, source.art_space_metrics)
    with torch.no_grad():
        accuracy = float((ab.audio_model(dev.features)[0].argmax(1).numpy() == dev.labels).mean())
    print(json.dumps({"dev_clips": len(dev.labels), "dev_speakers": sorted(set(dev.speakers.tolist())),
                      "encoder_accuracy": round(accuracy, 4)}))  # fmt: skip
    sys.stdout.flush()
    for row in screen(
        ab.audio_model, concat_audio([train, synth.subset(s_tr)]), dev, space, art_train, art_val,
        args.centroid_weights, args.temperatures,
    ):  # fmt: skip
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
