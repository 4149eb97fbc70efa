"""`python -m trainer.gan.ablation`: the generator ablation of docs/art_training.md §3 as one command.

Each row is one `synesthesia-train gan` run, one flag away from the v2 default, at the same resolution,
steps, batch and seed; rows run as subprocesses, `--jobs` at a time, one torch thread each, logging to
OUT/<row>/train.log. A row whose checkpoint already reached `--steps` is not trained again, and an
interrupted one continues with `--resume`, so rerunning the command finishes the table. Then each row's
EMA generator is measured by `trainer.gan.quality.checkpoint_quality` (sharpness at generator size and
1280x720, grid peak, random-feature FD and precision/recall against held-out art) and the table is
written to OUT/ablation.md and OUT/ablation.json.

On two CPU cores a 256 px row costs hours, so `--resolution 64` is the proxy this machine can afford
(~0.5 s a step on one core); the table says which resolution it was measured at.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("synesthesia.ablation")

# row name -> the flags that make it differ from the v2 default
ROWS: dict[str, list[str]] = {
    "v2": [],
    "v1": ["--arch", "v1"],
    "nearest": ["--upsample", "nearest"],
    "bilinear": ["--upsample", "bilinear"],
    "no_noise": ["--no-noise"],
    "no_sle": ["--no-sle"],
    "d_width_16": ["--d-channels", "16"],
    "cutout": ["--augment", "translation,cutout"],
}


def row_command(row: str, args: argparse.Namespace) -> list[str]:
    out = args.out / row
    cmd = [
        sys.executable, "-m", "trainer.cli", "gan", "--out", str(out), "--align", str(args.align),
        "--resolution", str(args.resolution), "--art-size", str(args.resolution), "--steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--base-channels", "8", "--d-channels", "8",
        "--ema-decay", "0.995", "--audio-fraction", "0", "--checkpoint-every", "100",
        "--sample-every", str(args.steps), "--threads", "1", "--no-progress", "--no-eval", "--seed", str(args.seed),
    ]  # fmt: skip
    if args.cache is not None:
        cmd += ["--cache", str(args.cache)]
    cmd += ROWS[row]  # later flags win: a row's own --d-channels overrides the 8 above
    if (out / "gan_last.pt").exists():
        cmd.append("--resume")
    return cmd


def finished(row: str, args: argparse.Namespace) -> bool:
    path = args.out / row / "gan_last.pt"
    if not path.exists():
        return False
    from trainer.gan.train import load_gan_checkpoint

    return int(load_gan_checkpoint(path)["step"]) >= args.steps


def train_rows(rows: Sequence[str], args: argparse.Namespace) -> dict[str, float]:
    """Run the unfinished rows, `args.jobs` at a time; returns each trained row's wall seconds."""
    pending = [r for r in rows if not finished(r, args)]
    running: dict[str, tuple[subprocess.Popen, float, Any]] = {}
    walls: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            row = pending.pop(0)
            (args.out / row).mkdir(parents=True, exist_ok=True)
            logf = (args.out / row / "train.log").open("a")
            cmd = row_command(row, args)
            log.info("row %s: %s", row, " ".join(cmd[2:]))
            running[row] = (subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT), time.time(), logf)
        time.sleep(2.0)
        for row, (proc, started, logf) in list(running.items()):
            if proc.poll() is None:
                continue
            logf.close()
            del running[row]
            if proc.returncode != 0:
                raise SystemExit(f"row {row} failed (exit {proc.returncode}); see {args.out / row / 'train.log'}")
            walls[row] = time.time() - started
            log.info("row %s done in %.0f s", row, walls[row])
    return walls


def measure_rows(rows: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    from trainer.gan.quality import checkpoint_quality

    return {row: checkpoint_quality(args.out / row / "gan_last.pt", args.bundle) for row in rows}


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"# Generator ablation at {args.resolution} px, {args.steps} steps, batch {args.batch_size}, seed {args.seed}",
        "",
        "| row | flags | sharpness gen / 1280×720 | grid peak (corpus) | FD (real vs real) | precision / recall |",
        "|---|---|---|---|---|---|",
    ]
    for row, rep in results.items():
        s, g, f = rep["sharpness"], rep["grid_peak"], rep["random_features"]
        lines.append(
            f"| {row} | `{' '.join(ROWS[row]) or '(v2 default)'}` | {s['generator_resolution']:.3f} / "
            f"{s['display_1280x720']:.3f} | {g['generated']:.1f} ({g['corpus']:.1f}) | "
            f"{f['frechet']:.2f} ({f['frechet_real_vs_real']:.2f}) | {f['precision']:.2f} / {f['recall']:.2f} |"
        )
    lines += ["", f"Reproduce: `python -m trainer.gan.ablation {' '.join(args.argv)}`"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m trainer.gan.ablation", description=__doc__.split("\n")[0])
    parser.add_argument("--align", type=Path, required=True, help="align.pt or art_space.pt (as `gan --align`)")
    parser.add_argument("--bundle", type=Path, default=Path("assets/default"), help="bundle whose art index conditions")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="rows trained at once (one thread each)")
    parser.add_argument("--cache", type=Path, default=None, help="rendered-art cache (as `gan --cache`)")
    args = parser.parse_args(argv)
    args.argv = argv
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.resolution < 128 and "no_sle" in rows:
        rows.remove("no_sle")  # skip-layer excitation gates a block 16x finer than 8 px: only from 256 px
        log.info("row no_sle skipped: at %d px the v2 generator has no skip-layer excitation", args.resolution)
    walls = train_rows(rows, args)
    import torch

    torch.set_num_threads(1)
    results = measure_rows(rows, args)
    for row, wall in walls.items():
        results[row]["train_wall_s"] = round(wall, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "ablation.md").write_text(table(results, args))
    print(table(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
