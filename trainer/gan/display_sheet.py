"""Before/after at display size: one row per emotion, the corpus and each bundle's generator side by side,
every picture through the display path (`trainer.gan.quality.display_path`: cover crop, then smoothscale to
1280x720, shown here at half size), so the sheet shows what a visitor's screen shows, not a thumbnail.

    python -m trainer.gan.display_sheet OLD_BUNDLE NEW_BUNDLE --out docs/img/art_before_after.png

Conditions: for each emotion, the first artwork of that emotion in each bundle's own art index and one
seeded z; the corpus column is a held-out procedural artwork of that emotion at the newest generator's size.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.inference.base import Component
from engine.inference.select import open_runner
from engine.models.bundle import load_bundle
from trainer.art.images import procedural_art
from trainer.gan.quality import display_path

SHOWN = (640, 360)  # half of 1280x720


def bundle_frame(bundle_dir: Path, label: str, seed: int = 0) -> np.ndarray:
    """One frame uint8 [R, R, 3] of the bundle's generator (ONNX Runtime, as the engine runs it)."""
    bundle = load_bundle(bundle_dir)
    gen = bundle.manifest.generator
    if gen is None:
        raise SystemExit(f"{bundle_dir}: no generator")
    index = bundle.art_index()
    pick = np.flatnonzero(index["labels"] == label)[:1]
    z = np.random.default_rng(seed).standard_normal((1, gen.z_dim)).astype(np.float32)
    (x,) = open_runner(bundle, Component.GENERATOR, "onnx", "cpu").runner(z, index["vectors"][pick].astype(np.float32))
    return ((np.clip(x[0], -1, 1) + 1) * 127.5 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def sheet(bundles: Sequence[Path], out: Path, seed: int = 0) -> Path:
    classes = load_bundle(bundles[-1]).classes
    size = max(load_bundle(b).manifest.generator.resolution for b in bundles)
    corpus = procedural_art(classes, 1, size=size, seed=1000)
    manifests = [load_bundle(b).manifest for b in bundles]
    columns = ["corpus (held out)", *(f"{m.name} ({m.generator.resolution} px)" for m in manifests)]
    w, h = SHOWN
    pad, head, left = 6, 22, 70
    canvas = Image.new("RGB", (left + len(columns) * (w + pad), head + len(classes) * (h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((left + j * (w + pad) + 4, 5), name, fill="black")
    for i, label in enumerate(classes):
        draw.text((6, head + i * (h + pad) + h // 2), label, fill="black")
        pictures = [corpus.images[np.flatnonzero(corpus.labels == i)[0]]]
        pictures += [bundle_frame(b, label, seed) for b in bundles]
        for j, pic in enumerate(pictures):
            shown = display_path(pic[None])[0]  # [720, 1280, 3]
            tile = Image.fromarray(shown).resize(SHOWN, Image.Resampling.BOX)
            canvas.paste(tile, (left + j * (w + pad), head + i * (h + pad)))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.gan.display_sheet", description=__doc__.splitlines()[0])
    parser.add_argument("bundles", type=Path, nargs="+", help="bundles with generators, oldest first")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {sheet(args.bundles, args.out, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
