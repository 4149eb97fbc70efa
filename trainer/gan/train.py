"""The conditional GAN of docs/design.md §4: `synesthesia-train gan`.

Generator: engine.models.generator.Generator, G(z, c) with conditional batch norm, c a shared-space vector.
Discriminator: residual down-sampling blocks with spectral normalisation on every weight (Miyato et al.
2018) and a projection head for the condition (Miyato & Koyama 2018): D(x, c) = psi(phi(x)) +
<V c, phi(x)>, where c is a continuous 128-d vector rather than a class id. Hinge loss. Differentiable
augmentation (trainer.art.diffaug) on everything D sees. An exponential moving average of G's weights is the
generator that is evaluated and exported.

Conditions: every real artwork is paired with its own shared vector from the aligned image encoder;
optionally a share of pairs (real and fake alike, so D cannot tell the modality apart) takes instead the
shared vector of an audio clip of the same emotion, so G also sees where sound lands in the space.

Training reads top to bottom in `train_gan`; checkpoints (gan_last.pt) carry the configs and everything
needed to resume exactly (both RNG streams included: the batch generator and torch's global one, which
DiffAugment and the noise inputs draw from). `--recipe cpu|gpu` are the documented presets (RECIPES); on
CUDA, mixed precision runs through torch.autocast + GradScaler. Loss curves (gan_losses.png, from the
history) and sample grids are written as training goes.
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

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from engine.models.checkpoint import load_checkpoint, load_generator, save_checkpoint, save_generator
from engine.models.generator import Generator, GeneratorConfig
from trainer.art.diffaug import DiffAugPolicy, diff_augment
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
    mode_seeking_loss,
    update_ema,
)
from trainer.space.align import load_alignment, load_art_space
from trainer.space.audio_set import embed_audio
from trainer.space.data import add_data_arguments, load_bundle_models, load_data

log = logging.getLogger("synesthesia.gan")


# --------------------------------------------------------------------------------------------------
# Configuration


class GanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(32, ge=2)
    d_steps: int = Field(2, ge=1, description="discriminator updates per generator update")
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(4e-4, gt=0, description="twice G's: D learns slowly under spectral norm (TTUR)")
    beta1: float = Field(0.0, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    augment: tuple[DiffAugPolicy, ...] = (DiffAugPolicy.TRANSLATION,)
    colour_strength: float = Field(0.25, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_start: int = Field(200, ge=0, description="steps before the EMA starts averaging (it copies until then)")
    cond_noise: float = Field(0.03, ge=0, description="Gaussian noise on conditions before re-normalising")
    w_mode_seeking: float = Field(1.0, ge=0, description="weight of the mode-seeking (diversity) term in G's loss")
    audio_fraction: float = Field(0.25, ge=0, le=1, description="share of pairs conditioned on audio vectors")
    checkpoint_every: int = Field(250, ge=1)
    sample_every: int = Field(500, ge=1)
    seed: int = 0
    amp: bool = Field(False, description="mixed precision (torch.autocast + GradScaler); CUDA only")


# Fields a resumed run may change (the schedule's length and its bookkeeping); everything else must match.
RESUMABLE_CHANGES = ("steps", "ema_start", "checkpoint_every", "sample_every")

# The documented presets of `--recipe` (flags given explicitly override them). v2 generator at 256 px.
RECIPES: dict[str, dict[str, Any]] = {
    # two CPU cores: narrow networks, batch 8, fp32 (a step ~4 s on one idle core; D width 16 cost 9 s)
    "cpu": {
        "resolution": 256, "arch": "v2", "base_channels": 8, "d_channels": 8, "batch_size": 8,
        "steps": 4000, "device": "cpu", "amp": False,
    },
    # one GPU: wider networks, batch 64, mixed precision
    "gpu": {
        "resolution": 256, "arch": "v2", "base_channels": 16, "min_channels": 32, "d_channels": 32,
        "batch_size": 64, "steps": 40000, "device": "cuda", "amp": True,
    },
}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class GanResult:
    generator: Generator  # the EMA generator, eval mode
    config: GanConfig
    step: int
    history: list[dict[str, float]]


def _checkpoint(
    path: Path,
    cfg: GanConfig,
    step: int,
    G: Generator,
    G_ema: Generator,
    D: ProjectionDiscriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    history: list[dict[str, float]],
    gen: torch.Generator,
    scalers: dict[str, Any] | None = None,
) -> None:
    save_checkpoint(
        {
            "kind": "gan",
            "config": cfg.model_dump(mode="json"),
            "step": step,
            "generator": G.state_dict(),
            "generator_ema": G_ema.state_dict(),
            "discriminator": D.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "history": history,
            "rng": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
            "scaler": {k: sc.state_dict() for k, sc in scalers.items()} if scalers else {},
        },
        path,
    )


def load_gan_checkpoint(path: str | Path) -> dict[str, Any]:
    """gan_last.pt (config, step, G, EMA G, D, optimisers, history, RNG); BundleError names a bad file."""
    return load_checkpoint(path, "gan", required=("config", "step", "generator_ema"))


def ema_generator_from_checkpoint(path: str | Path | dict[str, Any]) -> Generator:
    """The EMA generator of a `gan_last.pt` (its path, or the checkpoint already loaded), eval mode."""
    ckpt = path if isinstance(path, dict) else load_gan_checkpoint(path)
    cfg = GanConfig.model_validate(ckpt["config"])
    G = Generator(cfg.generator)
    G.load_state_dict(ckpt["generator_ema"])
    return G.eval()


def generator_from_checkpoint(path: str | Path) -> Generator:
    """A GAN run's gan_last.pt (its EMA weights) or a generator checkpoint (e.g. generator_ema.pt), eval mode."""
    if load_checkpoint(path).get("kind") == "gan":
        return ema_generator_from_checkpoint(path)
    return load_generator(path).eval()


def train_gan(
    art: ArtImages,
    conditions: ConditionBank,
    cfg: GanConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    on_sample: Any = None,
    device: str = "cpu",
    progress: bool = False,
) -> GanResult:
    """Train G and D on `art` (resized to the generator's resolution) conditioned on `conditions`.

    Writes out_dir/gan_last.pt every `checkpoint_every` steps and at the end; with `resume`, continues
    from it exactly (the config must match, except RESUMABLE_CHANGES; the saved EMA start is kept).
    `on_sample(step, G_ema)` is called every `sample_every` steps (for sample grids). `device` "cuda" runs
    on the GPU (with `cfg.amp`: autocast + GradScaler); `progress` shows a tqdm bar.
    """
    dev = torch.device(device)
    use_amp = cfg.amp and dev.type == "cuda"
    res = cfg.generator.resolution
    if cfg.discriminator.resolution != res or cfg.discriminator.cond_dim != cfg.generator.cond_dim:
        raise ValueError("generator and discriminator must agree on resolution and condition size")
    if conditions.art.shape != (len(art), cfg.generator.cond_dim):
        raise ValueError(
            f"need one {cfg.generator.cond_dim}-d condition per artwork, got {tuple(conditions.art.shape)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "gan_last.pt"

    # 1. Data: uint8 images kept compact; each batch is converted and resized on the fly.
    images = torch.from_numpy(art.images).permute(0, 3, 1, 2).contiguous()  # [N, 3, R0, R0] uint8

    def real_batch(index: torch.Tensor) -> torch.Tensor:
        x = images[index].to(dev).float().div_(127.5).sub_(1.0)  # [B, 3, R0, R0] in [-1, 1]
        if x.shape[-1] != res:
            x = F.interpolate(x, size=(res, res), mode="area" if x.shape[-1] > res else "bilinear")
        return x.contiguous(memory_format=torch.channels_last)

    # 2. Models and optimisers.
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    # channels-last: the narrow high-resolution convolutions run ~1.5x faster on CPU (oneDNN) and use the
    # tensor cores on a GPU; only the memory layout changes, not the weights or the checkpoints
    G = Generator(cfg.generator).to(dev, memory_format=torch.channels_last)
    D = ProjectionDiscriminator(cfg.discriminator).to(dev, memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    # one loss scaler per network (each has its own backward pass and optimiser)
    scalers = {"d": torch.amp.GradScaler("cuda"), "g": torch.amp.GradScaler("cuda")} if use_amp else None
    history: list[dict[str, float]] = []
    start = 0

    # 3. Resume.
    if resume and ckpt_path.is_file():
        ckpt = load_gan_checkpoint(ckpt_path)
        saved = GanConfig.model_validate(ckpt["config"])
        keep = {k: getattr(cfg, k) for k in RESUMABLE_CHANGES}
        if saved.model_copy(update=keep) != cfg:
            raise ValueError(f"{ckpt_path}: saved config differs from this run's (only --steps may change on resume)")
        cfg = cfg.model_copy(update={"ema_start": saved.ema_start})  # the schedule continues as it began
        G.load_state_dict(ckpt["generator"])
        G_ema.load_state_dict(ckpt["generator_ema"])
        D.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        history = list(ckpt["history"])
        gen.set_state(ckpt["rng"])
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"])
        if "cuda_rng" in ckpt and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        if scalers is not None and ckpt.get("scaler"):
            for key, sc in scalers.items():
                sc.load_state_dict(ckpt["scaler"][key])
        start = int(ckpt["step"])
        log.info("resumed GAN training from %s at step %d", ckpt_path, start)

    # 4. The loop: one D step and one G step per iteration.
    B, Z = cfg.batch_size, cfg.generator.z_dim
    n = len(art)
    t0 = time.perf_counter()
    window: dict[str, float] = {"d": 0.0, "g": 0.0, "ms": 0.0, "real": 0.0, "fake": 0.0}
    n_window = 0
    G.train()
    D.train()

    def to_dev(x: torch.Tensor) -> torch.Tensor:
        return x.to(dev, non_blocking=True)

    def autocast() -> Any:
        return torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp)

    def backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer, which: str) -> None:
        opt.zero_grad(set_to_none=True)
        if scalers is None:
            loss.backward()
            opt.step()
        else:
            scaler = scalers[which]
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    bar = _progress(range(start + 1, cfg.steps + 1), start, cfg.steps, progress)
    for step in bar:
        # D steps: real pairs (x, c_x) against fakes G(z, c) for conditions of other real images.
        for _ in range(cfg.d_steps):
            real_idx = torch.randint(n, (B,), generator=gen)
            fake_idx = torch.randint(n, (B,), generator=gen)
            x_real = real_batch(real_idx)
            c_real = to_dev(jitter(conditions.for_images(real_idx, cfg.audio_fraction, gen), cfg.cond_noise, gen))
            c_fake = to_dev(jitter(conditions.for_images(fake_idx, cfg.audio_fraction, gen), cfg.cond_noise, gen))
            z_d = to_dev(torch.randn(B, Z, generator=gen))
            with autocast():
                with torch.no_grad():
                    x_fake = G(z_d, c_fake)
                real_scores = D(diff_augment(x_real, cfg.augment, cfg.colour_strength), c_real).float()
                fake_scores = D(diff_augment(x_fake, cfg.augment, cfg.colour_strength), c_fake).float()
                loss_d = d_hinge_loss(real_scores, fake_scores)
            backward_step(loss_d, opt_d, "d")

        # G step: fresh z; the conditions of the first half repeated in the second, so that pairs
        # (i, i + B/2) share a condition and differ in z, for the mode-seeking term.
        for p in D.parameters():
            p.requires_grad_(False)
        half = B // 2
        c_pairs = torch.cat([c_fake[:half], c_fake[:half], c_fake[2 * half :]])  # [B, S]
        z = to_dev(torch.randn(B, Z, generator=gen))
        with autocast():
            x_fake = G(z, c_pairs)
            loss_adv = g_hinge_loss(D(diff_augment(x_fake, cfg.augment, cfg.colour_strength), c_pairs).float())
            x_fake = x_fake.float()
            loss_ms = mode_seeking_loss(x_fake[:half], x_fake[half : 2 * half], z[:half], z[half : 2 * half])
            loss_g = loss_adv + cfg.w_mode_seeking * loss_ms
        backward_step(loss_g, opt_g, "g")
        for p in D.parameters():
            p.requires_grad_(True)

        # EMA of G: a plain copy during the first steps, then the moving average.
        update_ema(G_ema, G, 0.0 if step <= cfg.ema_start else cfg.ema_decay)

        window["d"] += loss_d.item()
        window["g"] += loss_adv.item()
        window["ms"] += loss_ms.item()
        window["real"] += real_scores.mean().item()
        window["fake"] += fake_scores.mean().item()
        n_window += 1
        if step % 50 == 0 or step == cfg.steps:
            row = {"step": step, **{k: v / n_window for k, v in window.items()}, "seconds": time.perf_counter() - t0}
            history.append(row)
            log.info(
                "gan step %d/%d  D %.3f  G %.3f  diversity %.3f  D(real) %.2f  D(fake) %.2f  %.2f s/step",
                step, cfg.steps, row["d"], row["g"], row["ms"], row["real"], row["fake"],
                (time.perf_counter() - t0) / (step - start),
            )  # fmt: skip
            if progress:
                bar.set_postfix(d=f"{row['d']:.3f}", g=f"{row['g']:.3f}", refresh=False)
            window = dict.fromkeys(window, 0.0)
            n_window = 0
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _checkpoint(ckpt_path, cfg, step, G, G_ema, D, opt_g, opt_d, history, gen, scalers)
            loss_curves(history, out_dir / "gan_losses.png")
        if on_sample is not None and (step % cfg.sample_every == 0 or step == cfg.steps):
            on_sample(step, G_ema if dev.type == "cpu" else copy.deepcopy(G_ema).cpu())

    # 5. The EMA generator is the result.
    if start >= cfg.steps:
        log.info("checkpoint already at step %d >= %d; nothing to train", start, cfg.steps)
    return GanResult(G_ema.eval().cpu(), cfg, max(start, cfg.steps), history)


def _progress(steps: range, start: int, total: int, show: bool) -> Any:
    if not show:
        return steps
    from tqdm import tqdm

    return tqdm(steps, initial=start, total=total, desc="gan", unit="step", dynamic_ncols=True)


GAN_PANELS = (
    (("d", "D hinge"), ("g", "G adversarial"), ("ms", "mode seeking")),
    (("real", "D(real)"), ("fake", "D(fake)")),
)


def loss_curves(
    history: list[dict[str, float]], path: Path, panels: tuple[tuple[tuple[str, str], ...], ...] = GAN_PANELS
) -> Path | None:
    """Curves of the logged history against the step, one panel per group of (key, label)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for key, label in panel:
            ax.plot(steps, [r[key] for r in history], label=label)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def save_gan_outputs(result: GanResult, out_dir: Path) -> Path:
    """generator_ema.pt: the EMA generator as an engine checkpoint (config + state_dict)."""
    path = out_dir / "generator_ema.pt"
    save_generator(result.generator, path, extra={"gan_config": result.config.model_dump(mode="json")})
    return path


# --------------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/gan"), help="output directory (default runs/gan)")
    parser.add_argument(
        "--align",
        type=Path,
        default=None,
        help="align.pt, or art_space.pt for conditions from artworks only, from `synesthesia-train align` "
        "(default: OUT/../align/align.pt, else OUT/../align/art_space.pt)",
    )
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="documented preset (RECIPES): cpu = v2 256 px for two cores; gpu = wider, batch 64, --device cuda, "
        "mixed precision; explicit flags override it",
    )
    parser.add_argument("--resolution", type=int, default=None, help="32..512, power of two (default 128)")
    parser.add_argument("--arch", choices=("v1", "v2"), default=None, help="generator architecture (default v2)")
    parser.add_argument("--upsample", choices=("nearest", "bilinear", "blur"), default=None, help="v2 (default blur)")
    parser.add_argument("--no-noise", action="store_true", help="v2: no per-pixel noise inputs")
    parser.add_argument("--no-sle", action="store_true", help="v2: no skip-layer excitation")
    parser.add_argument("--min-channels", type=int, default=None, help="v2: width floor at high resolution")
    parser.add_argument("--base-channels", type=int, default=None, help="generator channels at full resolution (8)")
    parser.add_argument("--d-channels", type=int, default=None, help="discriminator channels at full resolution (16)")
    parser.add_argument("--z-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help=f"default {GanConfig.model_fields['steps'].default}")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--amp", action="store_true", default=None, help="mixed precision on CUDA")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--d-steps", type=int, default=2, help="discriminator updates per generator update")
    parser.add_argument("--lr-g", type=float, default=2e-4)
    parser.add_argument("--lr-d", type=float, default=4e-4)
    parser.add_argument(
        "--augment",
        default="translation",
        help="comma-separated DiffAugment policy from colour, translation, cutout ('' for none)",
    )
    parser.add_argument("--audio-fraction", type=float, default=0.25, help="share of pairs conditioned on audio")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--mode-seeking", type=float, default=1.0, help="weight of the mode-seeking term (0: off)")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/gan_last.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation and figures at the end")
    parser.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="no training: GAN metrics of a bundle's generator (with its art_encoder.pt) on the data flags' art",
    )
    parser.add_argument("--figures", action="store_true", help="with --evaluate: also write the grids to --out")
    parser.add_argument(
        "--eval-per-class", type=int, default=200, help="generated images per emotion for the metrics (default 200)"
    )


def parse_policy(text: str) -> tuple[DiffAugPolicy, ...]:
    try:
        return tuple(DiffAugPolicy(p.strip()) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise SystemExit(f"--augment: {exc}; choose from {', '.join(a.value for a in DiffAugPolicy)}") from exc


# what each flag means when neither it nor a recipe sets it
FLAG_DEFAULTS: dict[str, Any] = {
    "resolution": 128, "arch": "v2", "upsample": "blur", "min_channels": 0, "base_channels": 8, "d_channels": 16,
    "steps": GanConfig.model_fields["steps"].default, "batch_size": GanConfig.model_fields["batch_size"].default,
    "device": "cpu", "amp": False,
}  # fmt: skip


def apply_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill flags left unset from `--recipe` (if any), then from FLAG_DEFAULTS."""
    preset = RECIPES.get(getattr(args, "recipe", None) or "", {})
    for key, default in FLAG_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, default))
    return args


def gan_config_from_args(args: argparse.Namespace, cond_dim: int) -> GanConfig:
    apply_recipe(args)
    return GanConfig(
        generator=GeneratorConfig(
            resolution=args.resolution, z_dim=args.z_dim, cond_dim=cond_dim, base_channels=args.base_channels,
            arch=args.arch, upsample=args.upsample, noise=not args.no_noise, sle=not args.no_sle,
            min_channels=args.min_channels,
        ),
        discriminator=DiscriminatorConfig(resolution=args.resolution, cond_dim=cond_dim, base_channels=args.d_channels),
        steps=args.steps,
        batch_size=args.batch_size,
        d_steps=args.d_steps,
        lr_g=args.lr_g,
        lr_d=args.lr_d,
        augment=parse_policy(args.augment),
        audio_fraction=args.audio_fraction,
        ema_decay=args.ema_decay,
        w_mode_seeking=args.mode_seeking,
        ema_start=min(200, args.steps // 5),
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        seed=args.seed,
        amp=bool(args.amp),
    )  # fmt: skip


def resolve_alignment(path: Path | None, out: Path) -> Path:
    """The --align file, or the default align.pt / art_space.pt beside the output directory."""
    candidates = (
        [path] if path is not None else [out.parent / "align" / "align.pt", out.parent / "align" / "art_space.pt"]
    )
    for p in candidates:
        if p.is_file():
            return p
    raise SystemExit(f"no alignment at {' or '.join(map(str, candidates))}: run `synesthesia-train align` first")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.evaluate is not None:
        args.bundle = args.evaluate
        data = load_data(args)
        models = load_bundle_models(args.evaluate)
        if models.generator is None:
            raise SystemExit(f"{args.evaluate}: the bundle has no generator")
        report = art_eval.evaluate_bundle_generator(
            models, data.art_train, data.art_val, data.audio_val, args.out if args.figures else None,
            per_class=args.eval_per_class,
        )  # fmt: skip
        print(json.dumps(report, indent=2))
        print(art_eval.summary_line(report))
        return 0

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    align_path = resolve_alignment(args.align, out)
    kind = load_checkpoint(align_path).get("kind")
    with_audio = kind == "alignment" and args.audio_fraction > 0
    data = load_data(args, need_audio=with_audio)
    if with_audio:
        # conditions from artworks and from audio clips (both land in the shared space)
        art_encoder, audio_model = load_alignment(align_path, data.audio_model)
        with torch.no_grad():
            audio_shared = audio_model.projection(embed_audio(audio_model, data.audio_train.features))
        bank = condition_bank(art_encoder, data.art_train, audio_shared, data.audio_train.labels)
    else:
        # the art side alone: the GAN does not need an audio encoder
        art_encoder, audio_model = load_art_space(align_path).art_encoder, None
        bank = condition_bank(art_encoder, data.art_train)
    log.info("conditions from %s (%s)", align_path, "artworks and audio" if with_audio else "artworks")
    cfg = gan_config_from_args(args, cond_dim=bank.art.shape[1])
    (out / "gan_config.json").write_text(cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def on_sample(step: int, G_ema: Generator) -> None:
        art_eval.emotion_grid(G_ema, bank, data.art_train.classes, out / f"samples_{step:06d}.png", seed=0)

    result = train_gan(
        data.art_train, bank, cfg, out, resume=args.resume, on_sample=on_sample, device=args.device,
        progress=not args.no_progress,
    )  # fmt: skip
    save_gan_outputs(result, out)
    if not args.no_eval:
        report = art_eval.evaluate_generator(
            result.generator, art_encoder, data.art_train, data.art_val, bank, audio_model, data.audio_val, out,
            per_class=args.eval_per_class,
        )  # fmt: skip
        (out / "gan_metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(art_eval.summary_line(report))
    print(f"wrote {out / 'generator_ema.pt'} ({result.step} steps)")
    return 0
