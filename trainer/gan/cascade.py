"""`synesthesia-train cascade`: the refiner of a cascade generator, trained as a conditional
super-resolution GAN on crops of the art corpus, then joined to a base generator into one G(z, c).

Why a cascade (docs/art_training.md §3): a GAN that learns layout and detail together at 256 px needs
whole 256 px frames through G and D at every step, hours on two CPU cores before the forms sharpen. Split,
each part is cheap. The base (`synesthesia-train gan --resolution 64`) learns layout and colour at 64 px;
the refiner (engine.models.generator.Refiner) learns what the corpus looks like one factor finer — edges,
strokes, grain — from (area-downscaled, original) pairs of real artworks, on crops, since it is fully
convolutional. Losses: hinge against a projection discriminator (spectral norm) that sees the crop beside
the bilinear up-sample of its input and the condition, L1 to the original, a consistency term (the
output area-downscaled must give the input back) that keeps colour and layout the base's, and a texture
term matching the high-frequency energy per band (`band_std`): L1 averages random grain away and a small
discriminator on two CPU cores learns to ask for it only slowly. The inputs are
lightly degraded (blur, noise) in training, since at run time they come from the base generator, not from
real art. EMA weights are kept and exported.

Reads top to bottom in `train_refiner`; `refiner_last.pt` carries configs, weights, optimisers, RNG and
history, and `--resume` continues the schedule.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from engine.models.checkpoint import load_checkpoint, save_checkpoint, save_generator
from engine.models.configs import GeneratorConfig
from engine.models.generator import Generator, Refiner
from trainer.art.images import ArtImages
from trainer.gan import evaluate as art_eval
from trainer.gan.model import (
    ConditionBank,
    DiscriminatorConfig,
    ProjectionDiscriminator,
    condition_bank,
    d_hinge_loss,
    g_hinge_loss,
    jitter,
    update_ema,
)
from trainer.gan.train import generator_from_checkpoint, loss_curves
from trainer.space.align import load_art_space
from trainer.space.data import add_data_arguments, load_data

log = logging.getLogger("synesthesia.cascade")


class RefinerTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resolution: int = Field(256, ge=32, le=512, description="the cascade's output resolution")
    base_resolution: int = Field(64, ge=16, description="the base generator's resolution")
    channels: tuple[int, ...] = Field((32, 16, 8), description="refiner widths: stem, then one per x2 level")
    cond_dim: int = Field(128, gt=0)
    d_channels: int = Field(8, gt=0, description="discriminator width at the crop's resolution")
    crop: int = Field(64, ge=16, description="output crop side in training (a multiple of the factor)")
    batch_size: int = Field(8, ge=2)
    steps: int = Field(3000, ge=1)
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(4e-4, gt=0)
    w_adv: float = Field(1.0, ge=0, description="hinge loss weight")
    w_l1: float = Field(1.0, ge=0, description="L1 to the original crop")
    w_consistency: float = Field(10.0, ge=0, description="L1 of the area-downscaled output to the clean input")
    w_texture: float = Field(1.0, ge=0, description="match of the high-frequency energy per band (grain, edges)")
    degrade_noise: float = Field(0.03, ge=0, description="max sd of Gaussian noise on the input (uniform per crop)")
    degrade_blur: float = Field(0.5, ge=0, le=1, description="max share of a 3x3 box blur mixed into the input")
    cond_noise: float = Field(0.03, ge=0)
    ema_decay: float = Field(0.995, ge=0, lt=1)
    ema_start: int = Field(100, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    sample_every: int = Field(500, ge=1)
    seed: int = 0

    @property
    def factor(self) -> int:
        return self.resolution // self.base_resolution

    def generator_config(self, base: GeneratorConfig) -> GeneratorConfig:
        """The cascade's config: `base` (a v2 generator at base_resolution) plus this refiner."""
        if base.resolution != self.base_resolution or base.arch != "v2":
            raise ValueError(
                f"the base must be a v2 generator at {self.base_resolution} px, got {base.arch} at {base.resolution}"
            )
        return GeneratorConfig.model_validate(
            {
                **base.model_dump(),
                "arch": "cascade",
                "resolution": self.resolution,
                "base_resolution": self.base_resolution,
                "refiner_channels": self.channels,
                "cond_dim": self.cond_dim,
            }
        )


RESUMABLE_CHANGES = ("steps", "checkpoint_every", "sample_every")
REFINER_PANELS = (
    (("d", "D hinge"), ("adv", "refiner hinge")),
    (("l1", "L1"), ("cons", "consistency"), ("texture", "texture")),
)


@dataclass
class RefinerResult:
    refiner: Refiner  # EMA weights, eval mode
    config: RefinerTrainConfig
    step: int
    history: list[dict[str, float]]


def degrade(x: torch.Tensor, cfg: RefinerTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """What a generated low-resolution frame may look like: a little blur and noise, random per crop."""
    b = x.shape[0]
    if cfg.degrade_blur > 0:
        blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        share = torch.rand(b, 1, 1, 1, generator=gen) * cfg.degrade_blur
        x = torch.lerp(x, blurred, share)
    if cfg.degrade_noise > 0:
        sd = torch.rand(b, 1, 1, 1, generator=gen) * cfg.degrade_noise
        x = x + sd * torch.randn(x.shape, generator=gen)
    return x


def band_std(x: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """Per image, channel and band: sd of the 3x3 Laplacian at full and halved resolutions, [B, 3 * levels].

    The painter's film grain and edges live in these bands (most of the corpus's Laplacian variance is
    grain), and an L1 or hinge loss alone leaves them too weak: the texture term matches them directly."""
    kernel = x.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)
    out = []
    for level in range(levels):
        if level:
            x = F.avg_pool2d(x, 2)
        lap = F.conv2d(x, kernel, groups=3)  # [B, 3, H-2, W-2]
        out.append(lap.flatten(2).std(dim=2))  # [B, 3]
    return torch.cat(out, dim=1)


def texture_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """|log band sd(fake) - log band sd(real)|, averaged: relative, so faint and strong grain weigh alike."""
    return (torch.log(band_std(fake) + 1e-4) - torch.log(band_std(real) + 1e-4)).abs().mean()


def crops(images: torch.Tensor, index: torch.Tensor, size: int, factor: int, gen: torch.Generator) -> torch.Tensor:
    """Random `size` crops, aligned to the factor grid, of images[index] -> [B, 3, size, size] in [-1, 1]."""
    r = images.shape[-1]
    cells = (r - size) // factor + 1
    ys = torch.randint(cells, (len(index),), generator=gen) * factor
    xs = torch.randint(cells, (len(index),), generator=gen) * factor
    out = torch.stack([images[i, :, y : y + size, x : x + size] for i, y, x in zip(index, ys, xs, strict=True)])
    return out.float().div_(127.5).sub_(1.0)


def _checkpoint(path: Path, cfg: RefinerTrainConfig, gcfg: GeneratorConfig, step: int, nets: dict[str, Any],
                history: list[dict[str, float]], gen: torch.Generator) -> None:  # fmt: skip
    save_checkpoint(
        {
            "kind": "refiner",
            "config": cfg.model_dump(mode="json"),
            "generator_config": gcfg.model_dump(mode="json"),
            "step": step,
            **{name: net.state_dict() for name, net in nets.items()},
            "history": history,
            "rng": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        },
        path,
    )


def train_refiner(
    art: ArtImages,
    conditions: ConditionBank,
    cfg: RefinerTrainConfig,
    gcfg: GeneratorConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    on_sample: Any = None,
    progress: bool = False,
) -> RefinerResult:
    """Train `Refiner(gcfg)` on crops of `art` (rendered at cfg.resolution); writes out_dir/refiner_last.pt."""
    f = cfg.factor
    if art.images.shape[1] != cfg.resolution:
        raise ValueError(f"the corpus must be rendered at {cfg.resolution} px (--art-size), got {art.images.shape[1]}")
    if cfg.crop % f or cfg.crop > cfg.resolution:
        raise ValueError(f"crop {cfg.crop} must be a multiple of the factor {f} and at most {cfg.resolution}")
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "refiner_last.pt"

    # 1. Data: uint8 [N, 3, R, R]; crops are converted per batch.
    images = torch.from_numpy(art.images).permute(0, 3, 1, 2).contiguous()

    # 2. Models: the refiner, its EMA, and a projection D on (crop, bilinear up-sample of the input) pairs.
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    R = Refiner(gcfg).to(memory_format=torch.channels_last)
    D = ProjectionDiscriminator(
        DiscriminatorConfig(resolution=cfg.crop, cond_dim=cfg.cond_dim, base_channels=cfg.d_channels, in_channels=6)
    ).to(memory_format=torch.channels_last)
    R_ema = copy.deepcopy(R).eval()
    for p in R_ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(R.parameters(), lr=cfg.lr_g, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.99))
    nets: dict[str, Any] = {"refiner": R, "refiner_ema": R_ema, "discriminator": D, "opt_g": opt_g, "opt_d": opt_d}
    history: list[dict[str, float]] = []
    start = 0

    # 3. Resume.
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, "refiner", required=("config", "step", "refiner_ema"))
        saved = RefinerTrainConfig.model_validate(ckpt["config"])
        if saved.model_copy(update={k: getattr(cfg, k) for k in RESUMABLE_CHANGES}) != cfg:
            raise ValueError(f"{ckpt_path}: saved config differs from this run's (only --steps may change on resume)")
        for name, net in nets.items():
            net.load_state_dict(ckpt[name])
        history = list(ckpt["history"])
        gen.set_state(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        start = int(ckpt["step"])
        log.info("resumed refiner training from %s at step %d", ckpt_path, start)

    # 4. The loop: one D update and one refiner update per step.
    B = cfg.batch_size
    t0 = time.perf_counter()
    window = {"d": 0.0, "adv": 0.0, "l1": 0.0, "cons": 0.0, "texture": 0.0}
    n_window = 0
    R.train()
    D.train()
    steps = range(start + 1, cfg.steps + 1)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, initial=start, total=cfg.steps, desc="refiner", unit="step", dynamic_ncols=True)
    for step in steps:
        index = torch.randint(len(images), (B,), generator=gen)
        high = crops(images, index, cfg.crop, f, gen).contiguous(memory_format=torch.channels_last)  # [B, 3, C, C]
        low = F.avg_pool2d(high, f)  # [B, 3, C/f, C/f], area, as the base's real images are resized
        low_in = degrade(low, cfg, gen)
        up = F.interpolate(low, scale_factor=float(f), mode="bilinear", align_corners=False)  # [B, 3, C, C]
        c = jitter(conditions.art[index], cfg.cond_noise, gen)

        with torch.no_grad():
            fake = R(low_in, c)
        loss_d = d_hinge_loss(D(torch.cat([high, up], 1), c), D(torch.cat([fake, up], 1), c))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        for p in D.parameters():
            p.requires_grad_(False)
        fake = R(low_in, c)
        adv = g_hinge_loss(D(torch.cat([fake, up], 1), c))
        l1 = (fake - high).abs().mean()
        cons = (F.avg_pool2d(fake, f) - low).abs().mean()
        texture = texture_loss(fake, high)
        loss_g = cfg.w_adv * adv + cfg.w_l1 * l1 + cfg.w_consistency * cons + cfg.w_texture * texture
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        update_ema(R_ema, R, 0.0 if step <= cfg.ema_start else cfg.ema_decay)

        for key, value in (("d", loss_d), ("adv", adv), ("l1", l1), ("cons", cons), ("texture", texture)):
            window[key] += value.item()
        n_window += 1
        if step % 50 == 0 or step == cfg.steps:
            row = {"step": step, **{k: v / n_window for k, v in window.items()}, "seconds": time.perf_counter() - t0}
            history.append(row)
            rate = (time.perf_counter() - t0) / (step - start)
            log.info(
                "refiner step %d/%d  D %.3f  adv %.3f  L1 %.4f  consistency %.4f  texture %.3f  %.2f s/step",
                step, cfg.steps, row["d"], row["adv"], row["l1"], row["cons"], row["texture"], rate,
            )  # fmt: skip
            window = dict.fromkeys(window, 0.0)
            n_window = 0
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _checkpoint(ckpt_path, cfg, gcfg, step, nets, history, gen)
            loss_curves(history, out_dir / "refiner_losses.png", REFINER_PANELS)
        if on_sample is not None and (step % cfg.sample_every == 0 or step == cfg.steps):
            on_sample(step, R_ema)
    return RefinerResult(R_ema.eval(), cfg, max(start, cfg.steps), history)


@torch.no_grad()
def held_out_report(refiner: Refiner, art: ArtImages, conditions: torch.Tensor, path: Path | None = None) -> dict:
    """The refiner on held-out art: each artwork area-downscaled to the base's size and refined back, against
    the bilinear up-sample, as sharpness (`trainer.gan.quality.sharpness_ratio`, 1 = as sharp as the art) and
    L1; with `path`, a figure (rows: art, bilinear, refiner; three artworks per emotion).
    This is the refiner's ceiling: at run time its input is the base's painting, not real art."""
    from PIL import Image

    from trainer.gan import quality

    refiner.eval()
    f = refiner.factor
    pick = np.concatenate([np.flatnonzero(art.labels == k)[:3] for k in range(len(art.classes))])
    x = torch.from_numpy(art.images[pick]).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [N, 3, R, R]
    low = F.avg_pool2d(x, f)
    out = refiner(low, conditions[pick])
    bilinear = F.interpolate(low, scale_factor=float(f), mode="bilinear", align_corners=False)
    real = quality.to_uint8_hwc(x)
    report = {
        "n": len(pick),
        "sharpness_refiner": quality.sharpness_ratio(quality.to_uint8_hwc(out), real),
        "sharpness_bilinear": quality.sharpness_ratio(quality.to_uint8_hwc(bilinear), real),
        "l1_refiner": float((out - x).abs().mean()),
        "l1_bilinear": float((bilinear - x).abs().mean()),
    }
    if path is not None:
        rows = [np.concatenate(list(quality.to_uint8_hwc(t)), axis=1) for t in (x, bilinear, out)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return report


def join(base: Generator, refiner: Refiner, gcfg: GeneratorConfig) -> Generator:
    """One cascade G(z, c) from a trained base generator and refiner (copies of their weights), eval mode."""
    G = Generator(gcfg)
    G.base.load_state_dict(base.state_dict())
    G.refiner.load_state_dict(refiner.state_dict())
    return G.eval()


# --------------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument(
        "--base", type=Path, required=True, help="the base: a 64 px GAN run's gan_last.pt or a generator"
    )
    parser.add_argument("--align", type=Path, required=True, help="art_space.pt or align.pt: the conditions")
    parser.add_argument("--out", type=Path, default=Path("runs/cascade"))
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--channels", default="32,16,8", help="refiner widths: stem, then one per x2 level")
    parser.add_argument("--d-channels", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--w-l1", type=float, default=1.0)
    parser.add_argument("--w-consistency", type=float, default=10.0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/refiner_last.pt")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    base = generator_from_checkpoint(args.base)
    cfg = RefinerTrainConfig(
        resolution=args.resolution, base_resolution=base.config.resolution,
        channels=tuple(int(c) for c in args.channels.split(",")), cond_dim=base.config.cond_dim,
        d_channels=args.d_channels, crop=args.crop, batch_size=args.batch_size, steps=args.steps, w_l1=args.w_l1,
        w_consistency=args.w_consistency, checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
        seed=args.seed,
    )  # fmt: skip
    gcfg = cfg.generator_config(base.config)
    if args.art_size != cfg.resolution:
        raise SystemExit(f"--art-size must be the cascade's resolution ({cfg.resolution}): the refiner learns from it")
    data = load_data(args, need_audio=False)
    bank_encoder = load_art_space(args.align).art_encoder
    bank = condition_bank(bank_encoder, data.art_train)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "refiner_config.json").write_text(cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def on_sample(step: int, refiner: Refiner) -> None:
        G = join(base, refiner, gcfg)
        art_eval.emotion_grid(G, bank, data.art_train.classes, out / f"samples_{step:06d}.png", seed=0)

    result = train_refiner(
        data.art_train, bank, cfg, gcfg, out, resume=args.resume, on_sample=on_sample, progress=not args.no_progress
    )
    G = join(base, result.refiner, gcfg)
    held_out = held_out_report(
        result.refiner, data.art_val, condition_bank(bank_encoder, data.art_val).art, out / "held_out.png"
    )
    (out / "held_out.json").write_text(json.dumps(held_out, indent=2) + "\n", encoding="utf-8")
    log.info("refiner on held-out art: %s", held_out)
    extra = {
        "cascade": {
            "base": str(args.base), "base_step": int(load_checkpoint(args.base).get("step", 0)),
            "refiner": cfg.model_dump(mode="json"), "step": result.step, "held_out": held_out,
        }
    }  # fmt: skip
    save_generator(G, out / "generator_ema.pt", extra=extra)
    (out / "cascade.json").write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out / 'generator_ema.pt'} (refiner {result.step} steps on {args.base})")
    return 0
