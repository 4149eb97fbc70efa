"""`synesthesia-train upsampler`: the small display up-sampler (engine.models.upsampler) trained on
(downscaled, original) pairs of the procedural corpus.

The corpus is rendered at the *display* side's resolution (generator resolution x factor), so the pairs
teach what the painter's edges, strokes and grain look like one factor finer than the generator paints;
low-resolution inputs are area-downscaled like the generator's training images. Loss: L1 on pixels plus
L1 on horizontal and vertical finite differences (edges), random crops, Adam. `--bundle DIR` adds the
result (upsampler.pt + upsampler.onnx, parity-checked) to a bundle that has a generator, in place.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from engine.models.checkpoint import save_checkpoint, save_upsampler
from engine.models.upsampler import Upsampler, UpsamplerConfig
from trainer.art.images import procedural_art
from trainer.audio.synthetic import DEFAULT_CLASSES

log = logging.getLogger("synesthesia.upsampler")


class UpsamplerTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    upsampler: UpsamplerConfig = UpsamplerConfig()
    generator_resolution: int = Field(256, ge=16, description="input size at run time (the generator's)")
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(16, ge=1)
    crop: int = Field(48, ge=8, description="low-resolution crop side")
    lr: float = Field(2e-3, gt=0)
    w_edges: float = Field(1.0, ge=0)
    seed: int = 0


def downscale(high: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, 3, fH, fW] -> [B, 3, H, W], area (box) filter, as the GAN's real images are resized."""
    return F.avg_pool2d(high, factor)


def upsampler_loss(pred: torch.Tensor, target: torch.Tensor, w_edges: float) -> torch.Tensor:
    loss = (pred - target).abs().mean()
    if w_edges > 0:
        for dim in (2, 3):
            loss = loss + w_edges * (pred.diff(dim=dim) - target.diff(dim=dim)).abs().mean()
    return loss


def train_upsampler(images: np.ndarray, cfg: UpsamplerTrainConfig, log_every: int = 100) -> tuple[Upsampler, list]:
    """images uint8 [N, S, S, 3] at S = generator_resolution x factor -> (trained Upsampler, history)."""
    f = cfg.upsampler.factor
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # [N, 3, S, S] uint8
    n, side = data.shape[0], data.shape[-1]
    crop_hi = min(cfg.crop * f, side - side % f)
    model = Upsampler(cfg.upsampler)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    history: list[dict[str, float]] = []
    t0, running = time.perf_counter(), 0.0
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        ys = torch.randint(0, (side - crop_hi) // f + 1, (cfg.batch_size,), generator=gen) * f
        xs = torch.randint(0, (side - crop_hi) // f + 1, (cfg.batch_size,), generator=gen) * f
        crops = zip(idx.tolist(), ys.tolist(), xs.tolist(), strict=True)
        high = torch.stack([data[i, :, y : y + crop_hi, x : x + crop_hi] for i, y, x in crops])
        high = high.float().div_(127.5).sub_(1.0)
        pred = model(downscale(high, f))
        loss = upsampler_loss(pred, high, cfg.w_edges)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if step % log_every == 0 or step == cfg.steps:
            k = log_every if step % log_every == 0 else step % log_every
            history.append({"step": step, "loss": running / k, "seconds": time.perf_counter() - t0})
            log.info("upsampler step %d/%d  loss %.4f", step, cfg.steps, running / k)
            running = 0.0
    return model.eval(), history


@torch.no_grad()
def psnr_against(model: Upsampler | None, images: np.ndarray, factor: int) -> float:
    """PSNR (dB, images in [0, 1]) of model(downscale(x)) against x; model None = bilinear."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    low = downscale(x, factor)
    if model is None:
        pred = F.interpolate(low, scale_factor=float(factor), mode="bilinear", align_corners=False)
    else:
        pred = model(low)
    mse = ((pred - x) / 2).pow(2).mean().item()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


# --------------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/upsampler"), help="output directory")
    parser.add_argument("--factor", type=int, choices=(2, 4), default=2)
    parser.add_argument("--generator-resolution", type=int, default=256, help="the generator's output size")
    parser.add_argument("--channels", default="16,12", help="feature widths (comma-separated)")
    parser.add_argument("--per-class", type=int, default=60, help="procedural artworks per emotion to render")
    parser.add_argument("--val-per-class", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None, help="cache for rendered art")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bundle", type=Path, default=None, help="add the result to this bundle (in place)")


def config_from_args(args: argparse.Namespace) -> UpsamplerTrainConfig:
    channels = tuple(int(c) for c in args.channels.split(",") if c.strip())
    return UpsamplerTrainConfig(
        upsampler=UpsamplerConfig(factor=args.factor, channels=channels),
        generator_resolution=args.generator_resolution,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        seed=args.seed,
    )


def add_to_bundle(bundle_dir: Path, model: Upsampler, metrics: dict[str, Any] | None = None) -> None:
    """Write upsampler.pt/.onnx into an existing bundle and re-hash its manifest."""
    from engine.models.bundle import MANIFEST, load_bundle, write_manifest
    from trainer.bundle.export import export_upsampler

    bundle = load_bundle(bundle_dir)
    if bundle.manifest.generator is None:
        raise SystemExit(f"{bundle_dir}: the bundle has no generator to up-sample")
    parity, section = export_upsampler(model, bundle_dir, bundle.manifest.generator.resolution)
    raw = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    raw["upsampler"] = section
    raw.setdefault("metrics", {}).setdefault("export_parity_max_abs", {})["upsampler"] = parity
    if metrics:
        raw["metrics"].setdefault("art", {})["upsampler"] = metrics
    raw["files"] = sorted({*raw.get("files", {}), "upsampler.onnx", "upsampler.pt"})
    write_manifest(bundle_dir, raw)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    size = cfg.generator_resolution * cfg.upsampler.factor
    t0 = time.perf_counter()
    train = procedural_art(DEFAULT_CLASSES, args.per_class, size=size, seed=args.seed, cache_dir=args.cache)
    val = procedural_art(DEFAULT_CLASSES, args.val_per_class, size=size, seed=args.seed + 1000, cache_dir=args.cache)
    model, history = train_upsampler(train.images, cfg)
    metrics = {
        "config": cfg.model_dump(mode="json"),
        "psnr_db_val": psnr_against(model, val.images, cfg.upsampler.factor),
        "psnr_db_val_bilinear": psnr_against(None, val.images, cfg.upsampler.factor),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "synesthesia-train upsampler " + " ".join(
            f"--{k} {v}" for k, v in (("factor", args.factor), ("generator-resolution", args.generator_resolution),
                                      ("steps", args.steps), ("per-class", args.per_class))
        ),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    save_upsampler(model, args.out / "upsampler.pt", extra={"train_config": cfg.model_dump(mode="json")})
    save_checkpoint({"kind": "upsampler_history", "history": history, "metrics": metrics}, args.out / "history.pt")
    (args.out / "upsampler_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(f"up-sampler x{cfg.upsampler.factor}: val PSNR {metrics['psnr_db_val']:.2f} dB "
          f"(bilinear {metrics['psnr_db_val_bilinear']:.2f} dB); wrote {args.out / 'upsampler.pt'}")  # fmt: skip
    if args.bundle is not None:
        add_to_bundle(args.bundle, model, metrics)
        print(f"added upsampler.onnx to {args.bundle}")
    return 0
