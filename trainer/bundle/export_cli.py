"""`synesthesia-train export`: a training checkpoint -> a bundle the engine plays.

The audio half comes from `export_checkpoint` (ONNX + parity check, TensorRT when present); the art half
(art space, generator, up-sampler) is reused from another bundle, the default one unless `--art-from`
says otherwise, with the new encoder aligned to it (`attach_art_half`). Kept apart from
trainer.bundle.export, which the art half's own modules import.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from engine.models.bundle import DEFAULT_BUNDLE, load_bundle
from trainer.bundle.art_default import attach_art_half, load_art_source
from trainer.bundle.export import TensorRTMode, export_checkpoint

log = logging.getLogger("synesthesia.export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (RUN/best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write (replaced)")
    parser.add_argument("--name", help="bundle name (default: ARCH-TAXONOMY)")
    parser.add_argument(
        "--license",
        default="unspecified",
        help="licence terms of the model (those of its training data), e.g. CC BY-NC-SA 4.0",
    )
    parser.add_argument(
        "--tensorrt",
        type=TensorRTMode,
        choices=list(TensorRTMode),
        default=TensorRTMode.AUTO,
        help="auto: compile when CUDA and torch-tensorrt are present",
    )
    parser.add_argument(
        "--art-from",
        default="default",
        metavar="BUNDLE|default|none",
        help="reuse this bundle's art half (art space, generator), aligning the new encoder to it, so "
        "`synesthesia run --bundle OUT` plays (default: the default bundle's; about a minute); none: an "
        "audio-only bundle for `analyze` and OSC (`run` needs a generator)",
    )


def run(args: argparse.Namespace) -> int:
    art_from = None if args.art_from == "none" else (DEFAULT_BUNDLE if args.art_from == "default" else args.art_from)
    art_source = None
    if art_from is not None:
        art_source = load_art_source(Path(art_from))  # read first: OUT may be that very folder
    manifest = export_checkpoint(
        args.checkpoint, args.out, name=args.name, license=args.license, tensorrt=args.tensorrt
    )
    if art_source is not None:
        attach_art_half(Path(args.out), Path(args.checkpoint), Path(args.checkpoint).parent / "art", art_source)
        manifest = load_bundle(args.out).manifest
    parity = manifest.metrics.get("export_parity_max_abs", {})
    print(json.dumps({"bundle": str(args.out), "files": sorted(manifest.files), "parity_max_abs": parity}))
    return 0
