"""What a visitor sees for each emotion: `synesthesia run` in a 1280x720 window on a private Xvfb, one
screenshot per emotion, as a labelled 2x2 sheet at half size plus each shot at full size.

    .venv/bin/python -m tests.screenshot_emotions [--bundle DIR] [--source-kind speech|music] [--out PREFIX]

For each emotion the demo synth plays it (`synth:<emotion>[:music]`) for `--seconds` (default 12; the
first label comes after ~1 s, the condition eases over `render.condition_tau_s`), then the screen is read
from the X server's own framebuffer. Writes PREFIX_<emotion>.jpg (full size) and PREFIX.png (default
docs/img/show_<bundle name>).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

from tests.realparts import XvfbServer

EMOTIONS = ("angry", "happy", "sad", "neutral")


def shot(emotion: str, bundle: str | None, kind: str, seconds: float) -> np.ndarray:
    with XvfbServer(1280, 720) as x:
        env = {**os.environ, **x.env}
        env.pop("SDL_VIDEODRIVER", None)
        source = f"synth:{emotion}" + (":music" if kind == "music" else "")
        cmd = [sys.executable, "-m", "engine", "run", "--source", source, "--duration", str(seconds + 20)]
        cmd += ["--osc-in", "0", "--zmq-pub", "tcp://127.0.0.1:*", "--zmq-ctl", "tcp://127.0.0.1:*"]
        cmd += ["--bundle", bundle] if bundle else []
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 60
            while x.screenshot().max() == 0:  # the first frame
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"no frame from {' '.join(cmd)}: {proc.stderr.read()[-1500:]}")
                time.sleep(0.1)
            time.sleep(seconds)
            return x.screenshot()
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


def sheet(images: dict[str, np.ndarray]) -> Image.Image:
    tiles = [Image.fromarray(img).resize((640, 360), Image.Resampling.LANCZOS) for img in images.values()]
    out = Image.new("RGB", (1280 + 8, 720 + 8), "white")
    for i, (name, tile) in enumerate(zip(images, tiles, strict=True)):
        x, y = (i % 2) * 648, (i // 2) * 368
        out.paste(tile, (x, y))
        ImageDraw.Draw(out).text((x + 10, y + 8), name, fill="white")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshot_emotions", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None)
    parser.add_argument("--source-kind", choices=("speech", "music"), default="speech")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--out", default=None, help="path prefix (default docs/img/show_<bundle name>)")
    args = parser.parse_args(argv)
    if args.out is None:
        from engine.models.bundle import load_bundle

        args.out = f"docs/img/show_{load_bundle(args.bundle).manifest.name}"
    images = {e: shot(e, args.bundle, args.source_kind, args.seconds) for e in EMOTIONS}
    for name, img in images.items():
        Image.fromarray(img).save(f"{args.out}_{name}.jpg", quality=90)
    sheet(images).save(f"{args.out}.png", optimize=True)
    print(f"wrote {args.out}.png and {', '.join(f'{args.out}_{e}.jpg' for e in EMOTIONS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
