"""Image-quality measures of the art half (docs/art_training.md §4): sharpness, grid artefacts, Fréchet
distance and precision/recall in a fixed random-convolution feature space, and the display path.

- **Sharpness**: mean variance of the 3x3 Laplacian of grayscale images (Pech-Pacheco et al. 2000),
  generated / corpus at the same size; at the generator's resolution and at 1280x720 after the display
  path (learned up-sampler if any, then the cover crop and `pygame.transform.smoothscale` of
  engine.render.frames.FramePainter). 1 = as sharp as the art, < 1 = mush.
- **Grid peaks**: the largest ratio of the 2-D amplitude spectrum at the frequencies of a 2/4/8-pixel
  periodic pattern (multiples of R/p on both axes) to the median amplitude around each. A clean image
  scores about 1-3; an up-sampling checkerboard or a grid of stripes scores far higher.
- **Fréchet distance and precision/recall** (Kynkäänniemi et al. 2019, k-NN manifolds, k = 3) in the
  features of a fixed, seeded, *untrained* convolutional network (`RandomConvFeatures`): neither the
  discriminator's nor the image encoder's whose vectors condition G, so G has never been optimised against
  it. Always reported with the real-vs-real figure (two disjoint halves of the corpus) beside it.

`python -m trainer.gan.quality BUNDLE` prints all of them for a bundle's generator (+ up-sampler) against a
freshly rendered procedural corpus at its resolution, and the generator's ms/frame on 2 ONNX Runtime
threads; `trainer.bundle.art_default` records the same into the bundle's `metrics.art.quality`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("synesthesia.quality")

GRID_PERIODS = (2, 4, 8)
DISPLAY_SIZE = (1280, 720)
QUALITY_COMMAND = "python -m trainer.gan.quality assets/default"


# --------------------------------------------------------------------------------------------------
# sharpness


def to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 or float [N, H, W, 3] (or [H, W, 3]) -> float64 luma in [0, 1], [N, H, W]."""
    x = np.asarray(images)
    x = x[None] if x.ndim == 3 else x
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    return (x[..., :3].astype(np.float64) / scale) @ np.array([0.2126, 0.7152, 0.0722])


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """Per-image variance of the 3x3 Laplacian (4-neighbour) of the grayscale image, [N]."""
    g = to_gray(images)
    lap = g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4.0 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(g), -1).var(axis=1)


def sharpness_ratio(generated: np.ndarray, corpus: np.ndarray) -> float:
    """Mean Laplacian variance of generated images / of corpus images (same size)."""
    return mean_ratio(laplacian_variance(generated), laplacian_variance(corpus))


def mean_ratio(generated: np.ndarray, corpus: np.ndarray) -> float:
    """mean(generated) / mean(corpus) of per-image Laplacian variances."""
    return float(generated.mean() / max(corpus.mean(), 1e-12))


def ratio_interval(generated: np.ndarray, corpus: np.ndarray, draws: int = 2000, seed: int = 0) -> list[float]:
    """5th and 95th percentiles of mean(generated) / mean(corpus) (per-image Laplacian variances) when both
    sets are resampled with replacement: how far the sharpness ratio moves with the images drawn."""
    rng = np.random.default_rng(seed)
    g = generated[rng.integers(0, len(generated), (draws, len(generated)))].mean(axis=1)
    c = corpus[rng.integers(0, len(corpus), (draws, len(corpus)))].mean(axis=1)
    return [float(v) for v in np.percentile(g / np.maximum(c, 1e-12), [5, 95])]


def display_laplacians(images: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Per-image Laplacian variance at 1280x720 after the display path, a few frames at a time (a 720p
    frame is 2.8 MB, its grayscale float copy 7 MB)."""
    parts = [laplacian_variance(display_path(images[i : i + chunk])) for i in range(0, len(images), chunk)]
    return np.concatenate(parts)


def display_path(images: np.ndarray, size: tuple[int, int] = DISPLAY_SIZE) -> np.ndarray:
    """uint8 [N, R, R, 3] -> uint8 [N, h, w, 3] as FramePainter shows them: cover crop, then smoothscale."""
    from engine.render.frames import pygame_module

    pg = pygame_module()
    w, h = size
    out = np.zeros((len(images), h, w, 3), dtype=np.uint8)
    for k, img in enumerate(images):
        r = img.shape[0]
        rows = max(1, min(r, round(r * h / w)))
        src = pg.surfarray.make_surface(
            np.ascontiguousarray(img[(r - rows) // 2 : (r - rows) // 2 + rows].swapaxes(0, 1))
        )
        out[k] = pg.surfarray.array3d(pg.transform.smoothscale(src, size)).swapaxes(0, 1)
    return out


# --------------------------------------------------------------------------------------------------
# periodic grid artefacts


def grid_peak_score(image: np.ndarray, periods: Sequence[int] = GRID_PERIODS, window: int = 5) -> dict[int, float]:
    """Per period p: max over the grid frequencies (a R/p, b R/p), not both 0, of the spectrum amplitude
    over the median amplitude of its neighbours (the peak and its leakage excluded).

    Off the axes the neighbours are the (2 window + 1)^2 square around the frequency. On an axis (a or b
    is 0) they are the neighbours along that axis: an axis-aligned straight edge (a rectangle's side)
    spreads 1/f energy along the whole axis, which stands far above a square's median without being
    periodic; a grid is a spike above its own axis."""
    g = to_gray(image)[0]
    n = min(g.shape)
    g = g[:n, :n] - g[:n, :n].mean()
    hann = np.hanning(n)
    spec = np.abs(np.fft.fft2(g * hann[:, None] * hann[None, :]))
    offsets = np.r_[-window:-1, 2 : window + 1]  # along an axis, without the peak and its leakage
    scores: dict[int, float] = {}
    for p in periods:
        if n % p:
            continue
        step = n // p
        best = 0.0
        for a in range(p):
            for b in range(p):
                if a == 0 and b == 0:
                    continue
                fy, fx = a * step, b * step
                if a == 0:
                    ref = np.median(spec[0, (fx + offsets) % n])
                elif b == 0:
                    ref = np.median(spec[(fy + offsets) % n, 0])
                else:
                    ys = np.arange(fy - window, fy + window + 1) % n
                    xs = np.arange(fx - window, fx + window + 1) % n
                    patch = spec[np.ix_(ys, xs)].copy()
                    patch[window - 1 : window + 2, window - 1 : window + 2] = np.nan
                    ref = np.nanmedian(patch)
                best = max(best, float(spec[fy, fx] / max(ref, 1e-12)))
        scores[p] = best
    return scores


def max_grid_peak(images: np.ndarray, periods: Sequence[int] = GRID_PERIODS) -> float:
    """Largest grid_peak_score over images and periods."""
    images = np.asarray(images)
    images = images[None] if images.ndim == 3 else images
    return max(max(grid_peak_score(img, periods).values()) for img in images)


# --------------------------------------------------------------------------------------------------
# random-convolution features, Fréchet distance, precision / recall


class RandomConvFeatures(nn.Module):
    """A fixed, seeded, untrained CNN: 4 stride-2 conv + ReLU stages (3->32->64->128->128), each stage's
    channel means and standard deviations concatenated (704-d). Images are area-resized to 128 px."""

    def __init__(self, seed: int = 0, size: int = 128) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        widths = (3, 32, 64, 128, 128)
        self.size = size
        self.convs = nn.ModuleList()
        for c_in, c_out in itertools.pairwise(widths):
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1] -> [B, 704]."""
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area" if x.shape[-1] > self.size else "bilinear")
        stats = []
        for conv in self.convs:
            x = F.relu(conv(x))
            stats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(stats, dim=1)

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float64 [N, 704]."""
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).permute(0, 3, 1, 2)
            out.append(self(x.float().div(127.5).sub(1.0)).double().numpy())
        return np.concatenate(out)


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0.0))
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: precision = share of fakes inside the real k-NN manifold (a union of balls
    of each real point's k-th neighbour distance); recall = share of reals inside the fake manifold."""
    r_real, r_fake = _knn_radii(real, k), _knn_radii(fake, k)
    d = np.sqrt(np.maximum(((fake[:, None] - real[None]) ** 2).sum(-1), 0.0))  # [Nf, Nr]
    precision = float((d <= r_real[None]).any(axis=1).mean())
    recall = float((r_fake[None] >= d.T).any(axis=1).mean())
    return precision, recall


def feature_report(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, Any]:
    """Fréchet distance and precision/recall of fake vs real features, with real-vs-real (halves) beside."""
    from trainer.gan.evaluate import frechet_distance

    half = len(real) // 2
    a, b = real[:half], real[half : 2 * half]
    p, r = precision_recall(real, fake, k)
    p0, r0 = precision_recall(a, b, k)
    return {
        "frechet": frechet_distance(fake, real),
        "frechet_real_vs_real": frechet_distance(a, b),
        "precision": p,
        "recall": r,
        "precision_real_vs_real": p0,
        "recall_real_vs_real": r0,
        "k": k,
        "n_real": len(real),
        "n_fake": len(fake),
        "features": "RandomConvFeatures(seed 0): fixed untrained 4-stage CNN, channel mean+std, 704-d",
    }


# --------------------------------------------------------------------------------------------------
# everything for one generator


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def sample_generator(G: nn.Module, conditions: torch.Tensor, n: int, seed: int = 0, batch: int = 16) -> torch.Tensor:
    """n images from G under conditions drawn (with replacement) from `conditions` [M, S]."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(conditions), (n,), generator=gen)
    z = torch.randn(n, G.config.z_dim, generator=gen)
    G.eval()
    return torch.cat([G(z[i : i + batch], conditions[pick[i : i + batch]]) for i in range(0, n, batch)])


@torch.no_grad()
def quality_report(
    G: nn.Module,
    conditions: torch.Tensor,
    corpus: np.ndarray,
    upsampler: nn.Module | None = None,
    corpus_display: np.ndarray | None = None,
    n: int = 64,
    display_n: int = 64,
) -> dict[str, Any]:
    """Sharpness (generator resolution and 1280x720), grid peaks and random-feature FD / P&R.

    corpus: uint8 [N, R, R, 3] at the generator's resolution R; corpus_display: the same art rendered at
    R x the up-sampler's factor (for the display-path reference; default: `corpus`). Sharpness comes with
    its 90 % bootstrap interval: a ratio of means over a few dozen images moves by ±0.1 with the draw."""
    fake = sample_generator(G, conditions, n)
    fake_u8 = to_uint8_hwc(fake)
    feats = RandomConvFeatures()
    ref = corpus_display if corpus_display is not None else corpus
    display_n = min(display_n, n, len(ref))
    if upsampler is not None:
        shown = to_uint8_hwc(torch.cat([upsampler(fake[i : i + 8]) for i in range(0, display_n, 8)]))[:display_n]
    else:
        shown = fake_u8[:display_n]
    lap_fake, lap_real = laplacian_variance(fake_u8), laplacian_variance(corpus)
    disp_fake, disp_real = display_laplacians(shown), display_laplacians(ref[:display_n])
    disp_plain = display_laplacians(fake_u8[:display_n])
    return {
        "sharpness": {
            "generator_resolution": mean_ratio(lap_fake, lap_real),
            "display_1280x720": mean_ratio(disp_fake, disp_real),
            "display_1280x720_without_upsampler": mean_ratio(disp_plain, disp_real),
            "interval_90": {
                "generator_resolution": ratio_interval(lap_fake, lap_real),
                "display_1280x720": ratio_interval(disp_fake, disp_real),
            },
            "images": {"generated": len(fake_u8), "corpus": len(corpus), "display_each": int(display_n)},
            "protocol": "mean Laplacian variance (grayscale), generated / corpus at the same size",
        },
        "grid_peak": {
            "generated": max_grid_peak(fake_u8[:16]),
            "corpus": max_grid_peak(corpus[:16]),
            "protocol": f"max spectrum amplitude at period-{'/'.join(map(str, GRID_PERIODS))} grid frequencies "
            "over its neighbourhood median",
        },
        "random_features": feature_report(feats.embed(corpus), feats.embed(fake_u8)),
        "command": QUALITY_COMMAND,
    }


def bundle_quality(bundle_dir: Path, n: int = 64, corpus_per_class: int = 32, seed: int = 1000) -> dict[str, Any]:
    """quality_report for a bundle's generator (+ up-sampler) against held-out procedural art, plus ms/frame."""
    from engine.models.bundle import load_bundle
    from engine.models.checkpoint import load_generator, load_upsampler
    from trainer.art.images import procedural_art
    from trainer.bundle.speed import generator_speed

    bundle = load_bundle(bundle_dir)
    gen = bundle.manifest.generator
    if gen is None or not gen.torch:
        raise SystemExit(f"{bundle_dir}: no generator checkpoint")
    G = load_generator(bundle.file(gen.torch))
    index = bundle.art_index()
    if index is not None:
        conditions = torch.from_numpy(np.asarray(index["vectors"], dtype=np.float32))
    else:
        conditions = F.normalize(torch.randn(64, bundle.manifest.shared_dim), dim=1)
    up = bundle.manifest.upsampler
    upsampler = load_upsampler(bundle.file(up.torch)) if up is not None and up.torch else None
    classes = bundle.classes
    corpus = procedural_art(classes, corpus_per_class, size=gen.resolution, seed=seed).images
    corpus_display = None
    if upsampler is not None:
        size = gen.resolution * upsampler.config.factor
        corpus_display = procedural_art(classes, 16, size=size, seed=seed).images
    report = quality_report(G, conditions, corpus, upsampler, corpus_display, n=n)
    report["generator_speed"] = generator_speed(
        bundle.file(gen.onnx), gen.z_dim, bundle.manifest.shared_dim, threads=(2,), frames=100
    )
    return report


def checkpoint_quality(
    checkpoint: Path, bundle_dir: Path, n: int = 64, corpus_per_class: int = 32, seed: int = 1000
) -> dict[str, Any]:
    """quality_report for a training run's EMA generator (`gan_last.pt`, any step), conditioned on the art
    index of `bundle_dir` (whose art space the run was trained in), against held-out procedural art."""
    from engine.models.bundle import load_bundle
    from trainer.art.images import procedural_art
    from trainer.gan.train import ema_generator_from_checkpoint, load_gan_checkpoint

    bundle = load_bundle(bundle_dir)
    index = bundle.art_index()
    if index is None:
        raise SystemExit(f"{bundle_dir}: no art index to take conditions from")
    ckpt = load_gan_checkpoint(checkpoint)
    G = ema_generator_from_checkpoint(ckpt)
    conditions = torch.from_numpy(np.asarray(index["vectors"], dtype=np.float32))
    corpus = procedural_art(bundle.classes, corpus_per_class, size=G.config.resolution, seed=seed).images
    report = quality_report(G, conditions, corpus, n=n)
    report["step"] = int(ckpt["step"])
    report["command"] = f"python -m trainer.gan.quality --checkpoint {checkpoint} {bundle_dir}"
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.gan.quality", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path, help="the bundle (with --checkpoint: the one giving the conditions)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="a GAN run's gan_last.pt instead of the bundle's generator"
    )
    parser.add_argument("--n", type=int, default=64, help="generated images (default 64)")
    parser.add_argument("--per-class", type=int, default=32, help="corpus images per emotion (default 32)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        report = checkpoint_quality(args.checkpoint, args.bundle, args.n, args.per_class)
    else:
        report = bundle_quality(args.bundle, args.n, args.per_class)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
