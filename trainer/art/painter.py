"""Procedural abstract art whose colour, shape, rhythm and texture follow valence and arousal.

No downloads: every image is drawn from (valence, arousal, style, seed). The mapping from the
valence–arousal (VA) plane to visual parameters is continuous, so a slowly drifting emotion gives a
slowly changing picture, and it rests on colour–emotion and shape–emotion findings (docs/art.md):

- lightness follows pleasure, saturation follows arousal and pleasure (Valdez & Mehrabian 1994);
- hue follows the direction in the VA plane: red for anger, yellow for joy, blue/grey for sadness
  (Jonauskaite et al. 2020; Palmer et al. 2013), grey when the emotion is weak (neutral);
- angular, jagged forms for high-arousal displeasure (threat; Bar & Neta 2006), curves otherwise;
  ascending lines for positive, descending for negative feelings (Poffenberger & Barrows 1924);
- arousal drives density, rhythm, contrast, edge hardness and grain (arousal potential; Berlyne 1971).

Colours are built in OKLCH (perceptual lightness, chroma, hue; Ottosson 2020) and gamut-mapped to sRGB
by lowering chroma, so "lightness" means what a viewer sees.

Determinism: every random draw comes from the seed alone, in a fixed order and number, and valence and
arousal only scale or blend what was drawn; element counts fade in through opacity instead of jumping.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from engine.emotions import CIRCUMPLEX

__all__ = [
    "ART_VA",
    "EXPECTED_DIRECTIONS",
    "STYLES",
    "ArtCorpus",
    "ArtItem",
    "Direction",
    "VisualParams",
    "check_directions",
    "colour_stats",
    "render_art",
    "sample_art",
    "save_grid",
    "visual_params",
]

# The emotions the procedural painter is drawn around, at their places in the one circumplex table.
ART_CLASSES: tuple[str, ...] = ("angry", "happy", "sad", "neutral")
ART_VA: dict[str, tuple[float, float]] = {c: CIRCUMPLEX[c] for c in ART_CLASSES}

STYLES: tuple[str, ...] = ("colour_field", "strokes", "geometric", "flow", "texture")


# --------------------------------------------------------------------------------------------------
# VA -> visual parameters


@dataclass(frozen=True)
class VisualParams:
    """Visual parameters derived from one (valence, arousal) point; all continuous in both."""

    valence: float
    arousal: float
    hue: float  # OKLCH hue in degrees
    hue_spread: float  # half-width of the palette's hue range, degrees
    chroma: float  # OKLCH chroma of the palette's most saturated colours
    lightness: float  # mean OKLab lightness of the palette
    contrast: float  # lightness range of the palette
    angularity: float  # 0 curved .. 1 angular, jagged
    energy: float  # 0..1: density, rhythm, thickness (arousal)
    irregularity: float  # 0..1: jitter of positions and directions
    softness: float  # 0..1: edge feathering and blur (low arousal)
    slant: float  # dominant line direction, degrees, positive = ascending to the right
    bend: float  # -1 drooping (frown) .. +1 lifting (smile) curvature of strokes
    grain: float  # amplitude of film grain, fraction of full scale
    vignette: float  # darkening towards the corners, 0..1


# Circumplex angle (degrees, 0 = pleasant, 90 = aroused) -> OKLCH hue; increasing angle, decreasing hue.
# Anger (~135) is red, joy (~40) yellow, contentment (-45) green, tiredness (-90) cyan-blue, sadness
# (-135) blue, misery (180) blue-violet. Both ends are the same colour (275 = -85), so hue never jumps;
# red holds out to 155 degrees so that anger's whole region stays red.
_CIRCUMPLEX_DEG = np.array([-180.0, -135.0, -90.0, -45.0, 0.0, 45.0, 90.0, 135.0, 155.0, 180.0])
_HUE_DEG = np.array([275.0, 255.0, 215.0, 165.0, 112.0, 85.0, 48.0, 27.0, 20.0, -85.0])


# The tint of a weak emotion: a warm stone grey (OKLCH hue 75 degrees, chroma 0.022).
_NEUTRAL_HUE = math.radians(75.0)
_NEUTRAL_CHROMA = 0.022


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def visual_params(valence: float, arousal: float) -> VisualParams:
    """Map a VA point (each clipped to [-1, 1]) to the visual parameters every style uses."""
    v = float(np.clip(valence, -1.0, 1.0))
    a = float(np.clip(arousal, -1.0, 1.0))
    r = min(1.0, math.hypot(v, a))  # emotional intensity; near 0 the picture turns grey (neutral)
    angle = math.degrees(math.atan2(a, v))
    hue_dir = math.radians(float(np.interp(angle, _CIRCUMPLEX_DEG, _HUE_DEG)))
    energy = (a + 1.0) / 2.0
    # Saturation: arousal first, pleasure second (Valdez & Mehrabian); scaled by intensity so that
    # weak emotions are greyish.
    sat = r * _clip01(0.5 + 0.38 * a + 0.22 * v)
    chroma_dir = 0.02 + 0.26 * sat
    # Near the origin the direction (and so the hue) is undefined: blend the colour as a vector in the
    # OKLab a-b plane towards a stone grey, which is continuous everywhere and tells neutral from sad.
    x = min(1.0, r / 0.45)
    w = x * x * (3.0 - 2.0 * x)  # smoothstep: 0 at the origin, 1 from r = 0.45 outwards
    ca = w * chroma_dir * math.cos(hue_dir) + (1.0 - w) * _NEUTRAL_CHROMA * math.cos(_NEUTRAL_HUE)
    cb = w * chroma_dir * math.sin(hue_dir) + (1.0 - w) * _NEUTRAL_CHROMA * math.sin(_NEUTRAL_HUE)
    hue = math.degrees(math.atan2(cb, ca)) % 360.0
    chroma = math.hypot(ca, cb)
    # Lightness: pleasure raises it; a deep negative valence darkens strongly (sad and angry are dark).
    lightness = 0.58 + 0.26 * v + 0.06 * max(0.0, v) - 0.08 * a - 0.04 * max(0.0, -v)
    contrast = 0.16 + 0.40 * energy**1.5 + 0.12 * r * max(0.0, -v) * energy - 0.1 * max(0.0, v)
    angularity = _clip01(0.22 + 0.32 * (a - v) + 0.15 * a)
    return VisualParams(
        valence=v,
        arousal=a,
        hue=hue,
        hue_spread=8.0 + 18.0 * max(0.0, v) + 10.0 * (1.0 - abs(a)),
        chroma=chroma,
        lightness=lightness,
        contrast=contrast,
        angularity=angularity,
        energy=energy,
        irregularity=_clip01(0.12 + 0.25 * energy + 0.45 * max(0.0, a) * (1.0 - v) / 2.0),
        softness=_clip01(0.85 - 0.75 * energy - 0.2 * max(0.0, v) * energy),
        slant=28.0 * v * (0.4 + 0.6 * r),
        bend=v * (1.0 - angularity),
        grain=0.012 + 0.05 * energy**2,
        vignette=_clip01(0.12 + 0.45 * max(0.0, -v) * (1.0 - energy) + 0.15 * max(0.0, -v)),
    )


# --------------------------------------------------------------------------------------------------
# Colour: OKLCH -> sRGB with chroma reduction into the gamut

_LMS_FROM_OKLAB = np.array(
    [[1.0, 0.3963377774, 0.2158037573], [1.0, -0.1055613458, -0.0638541728], [1.0, -0.0894841775, -1.2914855480]]
)
_LINEAR_FROM_LMS = np.array(
    [
        [4.0767416621, -3.3077115913, 0.2309699292],
        [-1.2684380046, 2.6097574011, -0.3413193965],
        [-0.0041960863, -0.7034186147, 1.7076147010],
    ]
)


def _oklch_to_linear(L: np.ndarray, C: np.ndarray, h_deg: np.ndarray) -> np.ndarray:
    h = np.radians(h_deg)
    lab = np.stack([L, C * np.cos(h), C * np.sin(h)], axis=-1)
    return ((lab @ _LMS_FROM_OKLAB.T) ** 3) @ _LINEAR_FROM_LMS.T


def oklch_to_srgb(L: np.ndarray, C: np.ndarray, h_deg: np.ndarray) -> np.ndarray:
    """OKLCH arrays -> sRGB in [0, 1], [..., 3]; out-of-gamut colours keep hue and lightness, lose chroma."""
    L = np.clip(np.asarray(L, dtype=np.float64), 0.0, 1.0)
    C = np.asarray(C, dtype=np.float64)
    h = np.asarray(h_deg, dtype=np.float64)
    lin = _oklch_to_linear(L, C, h)
    outside = np.any((lin < -1e-4) | (lin > 1.0 + 1e-4), axis=-1)
    if np.any(outside):
        # Bisection on chroma, vectorised: a few dozen colours, so 12 steps are cheap.
        lo = np.zeros_like(C)
        hi = C.copy()
        for _ in range(12):
            mid = (lo + hi) / 2.0
            lm = _oklch_to_linear(L, mid, h)
            ok = np.all((lm >= -1e-4) & (lm <= 1.0 + 1e-4), axis=-1)
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        lin = np.where(outside[..., None], _oklch_to_linear(L, lo, h), lin)
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1.0 / 2.4) - 0.055)


class _Palette:
    """A colour ramp from the palette's darkest to lightest colour; `palette(t)` looks colours up."""

    N = 256

    def __init__(self, p: VisualParams, rng: np.random.Generator) -> None:
        k = 5
        hue_jitter = rng.uniform(-1.0, 1.0, k)
        chroma_jitter = rng.uniform(0.0, 1.0, k)
        light_jitter = rng.uniform(-1.0, 1.0, k)
        pos = np.linspace(0.0, 1.0, k)
        lightness = p.lightness + p.contrast * (pos - 0.5) + 0.03 * light_jitter * p.contrast
        lightness = np.clip(np.sort(lightness), 0.04, 0.97)
        # Positive feelings: skew towards orange and let the dark end go orange instead of olive
        # (dark yellow reads as brown-green, not as joy).
        warm = max(0.0, p.valence)
        hues = p.hue + p.hue_spread * hue_jitter * (0.4 + 0.6 * pos) - 45.0 * warm * (1.0 - pos) ** 1.5
        # The dark end carries less chroma (near-black is never vivid; the gamut would clip it anyway).
        taper = 1.0 - 0.5 * np.clip(0.5 - pos, 0.0, None)
        chroma = p.chroma * (0.85 + 0.15 * chroma_jitter) * taper
        t = np.linspace(0.0, 1.0, self.N)
        self.lut = oklch_to_srgb(
            np.interp(t, pos, lightness), np.interp(t, pos, chroma), np.interp(t, pos, hues)
        ).astype(np.float32)

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        """Colours at ramp positions t in [0, 1] (any shape) -> [..., 3] float32 sRGB."""
        # Nearest of 256 entries: one gather, and finer than the 8-bit output anyway.
        idx = (np.clip(np.asarray(t, dtype=np.float32), 0.0, 1.0) * (self.N - 1) + 0.5).astype(np.intp)
        return np.take(self.lut, idx, axis=0)


# --------------------------------------------------------------------------------------------------
# Fields and drawing helpers


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], x to the right and y downwards (read-only)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, c)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Smooth value noise in [0, 1] on a cells[0] x cells[1] lattice (x, y), bicubic upsampled."""
    lattice = rng.random((cells[1] + 1, cells[0] + 1), dtype=np.float32)
    img = Image.fromarray(lattice, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _scaled(cells: int, size: int) -> int:
    """A lattice of `cells` at 128 px, as many more as keep its cell size in pixels at `size`."""
    return max(cells, cells * size // 128)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


def _fade(count: float, n: int) -> np.ndarray:
    """Opacity of element i when `count` of n are shown: whole ones opaque, the next one partly."""
    return np.clip(count - np.arange(n), 0.0, 1.0)


def _to_pil(img: np.ndarray, size: int) -> Image.Image:
    pil = Image.fromarray((np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    return pil if pil.size == (size, size) else pil.resize((size, size), Image.Resampling.BILINEAR)


def _from_pil(pil: Image.Image) -> np.ndarray:
    return np.asarray(pil, dtype=np.float32) / 255.0


def _ground(p: VisualParams, pal: _Palette, rng: np.random.Generator, size: int, t0: float) -> np.ndarray:
    """A softly mottled ground around ramp position t0, lighter towards the top for positive valence."""
    _, y = _grid(size)
    mottle = _noise(rng, size, (3, 3)) - 0.5
    t = t0 + 0.18 * mottle - 0.08 * p.valence * y
    return pal(t)


def _ground_t(p: VisualParams, u: float) -> float:
    """Ramp position of a ground: light for pleasant, dark for unpleasant or tense, u in [0, 1] varies it."""
    return _clip01(0.55 + 0.35 * p.valence - 0.1 * p.arousal + 0.3 * (u - 0.5))


def _figure_t(ground_t: float, u: np.ndarray) -> np.ndarray:
    """Ramp positions for figures on a ground: around the opposite end, so figures stand out."""
    return 1.0 - ground_t + 0.6 * (u - 0.5)


def _ribbons(pts: np.ndarray, half_width: np.ndarray | float, scale: float) -> np.ndarray:
    """Outline polygons of thick polylines: pts [..., m, 2] in [-1, 1] -> [..., 2m, 2] in canvas pixels.

    One polygon per stroke is far cheaper than PIL's round-jointed lines, and allows tapered widths.
    """
    tangent = np.gradient(pts, axis=-2)
    tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True) + 1e-9
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], axis=-1) * np.asarray(half_width)[..., None]
    outline = np.concatenate([pts + normal, (pts - normal)[..., ::-1, :]], axis=-2)
    return (outline + 1.0) * (scale / 2.0)


def _rgba(colours: np.ndarray, alpha: np.ndarray) -> list[tuple[int, int, int, int]]:
    """[n, 3] float colours and [n] opacities -> PIL RGBA fill tuples."""
    c = np.concatenate([colours, np.asarray(alpha, dtype=np.float32)[:, None]], axis=1)
    return [tuple(v) for v in (np.clip(c, 0.0, 1.0) * 255.0 + 0.5).astype(int).tolist()]


# Odd-symmetric "triangle" wave with period 2*pi and range [-1, 1]: the angular twin of sin.
def _tri(x: np.ndarray) -> np.ndarray:
    return (2.0 / np.pi) * np.arcsin(np.clip(np.sin(x), -1.0, 1.0))


# --------------------------------------------------------------------------------------------------
# Styles: each returns float32 [size, size, 3] sRGB in [0, 1]


def _style_colour_field(p: VisualParams, pal: _Palette, rng: np.random.Generator, size: int) -> np.ndarray:
    """Rothko-like stacked soft rectangles; arousal hardens and roughens edges, anger tilts them."""
    x, y = _grid(size)
    n_bands = int(rng.integers(2, 4))
    tilt_sign = 1.0 if rng.random() < 0.5 else -1.0
    ground_t = float(rng.uniform(0.05, 0.35))
    margin_x = float(rng.uniform(0.10, 0.22))
    margin_y = float(rng.uniform(0.08, 0.16))
    gap = float(rng.uniform(0.05, 0.12))
    shares = rng.uniform(0.6, 1.4, 3)[:n_bands]
    band_t = rng.uniform(0.45, 1.0, 3)[:n_bands]
    edge_low = [_noise(rng, size, (4, 4)) - 0.5 for _ in range(2)]
    edge_high = [_noise(rng, size, (24, 24)) - 0.5 for _ in range(2)]
    streaks = _noise(rng, size, (3, 40))
    img = _ground(p, pal, rng, size, ground_t)
    if size > 128:  # finer edge wobble and washes, at a fixed pixel scale (drawn last: 128 px is unchanged)
        fine = [_noise(rng, size, (_scaled(24, size),) * 2) - 0.5 for _ in range(2)]
        edge_high = [0.6 * e + 0.4 * f for e, f in zip(edge_high, fine, strict=True)]
        streaks = 0.6 * streaks + 0.4 * _noise(rng, size, (3, _scaled(40, size)))

    tilt = math.radians(tilt_sign * 9.0 * p.angularity**1.5)
    xr = x * math.cos(tilt) - y * math.sin(tilt)
    yr = x * math.sin(tilt) + y * math.cos(tilt)
    rough = 0.03 + 0.06 * p.irregularity
    jag = 0.10 * p.angularity**2
    ex = rough * edge_low[0] + jag * edge_high[0]
    ey = rough * edge_low[1] + jag * edge_high[1]
    feather = 0.006 + 0.12 * p.softness
    left, right = -1.0 + 2.0 * margin_x, 1.0 - 2.0 * margin_x
    top, bottom = -1.0 + 2.0 * margin_y, 1.0 - 2.0 * margin_y
    span = bottom - top - gap * (n_bands - 1)
    heights = span * shares / shares.sum()
    mx = _smoothstep((xr + ex - left) / feather) * _smoothstep((right - xr - ex) / feather)
    y0 = top
    for h, t in zip(heights, band_t, strict=True):
        my = _smoothstep((yr + ey - y0) / feather) * _smoothstep((y0 + h - yr - ey) / feather)
        mask = (mx * my)[..., None]
        # Horizontal brush streaks inside the band, stronger when calm (visible layering of thin washes).
        colour = pal(t + (0.05 + 0.05 * p.softness) * (streaks - 0.5))
        img = img * (1.0 - mask) + colour * mask
        y0 += h + gap
    return img


def _style_strokes(p: VisualParams, pal: _Palette, rng: np.random.Generator, size: int) -> np.ndarray:
    """Gestural brush strokes: smooth arcs when pleasant or calm, zigzags when angry; more with arousal."""
    n, m = 22, 14
    cx, cy = rng.uniform(-0.9, 0.9, n), rng.uniform(-0.9, 0.9, n)
    ang_u, len_u, wid_u = rng.uniform(-1, 1, n), rng.random(n), rng.random(n)
    col_u, phase, freq = rng.uniform(0.0, 1.0, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0.6, 1.6, n)
    zig = rng.uniform(0.5, 1.0, (n, m)) * np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    amp_u = rng.uniform(0.5, 1.0, n)
    dots = rng.uniform(-0.95, 0.95, (40, 2))
    dot_r, dot_u = rng.uniform(0.004, 0.016, 40), rng.random(40)
    ground_t = _ground_t(p, float(rng.random()))
    col_t, dot_t = _figure_t(ground_t, col_u), _figure_t(ground_t, dot_u)

    s2 = 2 * size  # draw at twice the size, then downsample: cheap anti-aliasing
    pil = _to_pil(_ground(p, pal, rng, size, ground_t), s2)
    draw = ImageDraw.Draw(pil, "RGBA")
    visible = _fade(5.0 + 17.0 * p.energy**1.2, n)
    s = np.linspace(-0.5, 0.5, m)
    taper = 0.3 + 0.7 * np.sin(np.pi * (s + 0.5)) ** 0.6  # brush strokes thin out at both ends
    angle = np.radians(p.slant + ang_u * (12.0 + 70.0 * p.irregularity))
    length = (0.5 + 0.7 * len_u) * (0.75 + 0.5 * (1.0 - p.energy))
    amp = ((0.04 + 0.08 * p.energy) * amp_u * length)[:, None]
    smooth = np.sin(2 * np.pi * freq[:, None] * s + phase[:, None])
    jag = p.angularity**1.5
    lateral = amp * ((1.0 - jag) * smooth + jag * 1.6 * zig)
    lateral = lateral - 0.35 * p.bend * length[:, None] * (4.0 * s * s - 1.0 / 3.0)
    d = np.stack([np.cos(angle), -np.sin(angle)], axis=1)  # y grows downward: ascending = negative dy
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    nrm *= np.where(nrm[:, 1:] > 0, -1.0, 1.0)  # lateral > 0 is up on screen: bend reads as smile/frown
    pts = (
        np.stack([cx, cy], axis=1)[:, None]
        + (s * length[:, None])[..., None] * d[:, None]
        + lateral[..., None] * nrm[:, None]
    )
    width = ((0.04 + 0.09 * wid_u) * (0.6 + 0.6 * p.energy))[:, None] * taper  # in [-1, 1] units
    alpha = visible * (0.55 + 0.4 * p.energy)
    # A main stroke and two thinner streaks inside it: the bristle texture of a loaded brush.
    layers = []
    bristles = [(0.0, 0.0, 1.0), (0.22, 0.07, 0.35), (-0.22, -0.07, 0.35)]
    if size > 128:  # more, finer bristles where there are pixels for them
        bristles += [(0.40, 0.04, 0.12), (-0.40, -0.04, 0.12), (0.08, 0.10, 0.08), (-0.10, -0.10, 0.08)]
    for off, dt, wscale in bristles:
        q = pts + off * width[..., None] * nrm[:, None]
        layers.append((_ribbons(q, width * wscale / 2.0, s2), _rgba(pal(col_t + dt), alpha)))
    for i in np.flatnonzero(visible > 0.0):
        for outline, fills in layers:
            draw.polygon(outline[i].ravel().tolist(), fill=fills[i])
    splatter = _fade(40.0 * max(0.0, p.energy - 0.45) * 1.8 * (0.3 + 0.7 * p.angularity), 40)
    centres = (dots + 1.0) * (s2 / 2.0)
    radii = dot_r * s2 * (1.0 + p.energy)
    boxes = np.concatenate([centres - radii[:, None], centres + radii[:, None]], axis=1).tolist()
    dot_fill = _rgba(pal(dot_t), splatter)
    for j in np.flatnonzero(splatter > 0.0):
        draw.ellipse(boxes[j], fill=dot_fill[j])
    pil = pil.reduce(2)
    if p.softness > 0.05:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=1.6 * p.softness * size / 128))
    return _from_pil(pil)


def _style_geometric(p: VisualParams, pal: _Palette, rng: np.random.Generator, size: int) -> np.ndarray:
    """Kandinsky/Malevich-like shapes: circles and rings when curved, triangles and shards when angular."""
    n, m = 12, 48
    cx, cy = rng.uniform(-0.8, 0.8, n), rng.uniform(-0.8, 0.8, n)
    rad = rng.uniform(0.08, 0.32, n)
    rot = rng.uniform(0, 2 * np.pi, n)
    sides = rng.integers(3, 5, n)
    elong = rng.random(n)
    col_u, ring_v, ring_u = rng.random(n), rng.random(n), rng.random(n)
    nl = 8
    l_c, l_ang, l_len = rng.uniform(-0.7, 0.7, (nl, 2)), rng.uniform(-1, 1, nl), rng.uniform(0.5, 1.3, nl)
    l_curv, l_u, l_w = rng.uniform(0.8, 2.0, nl) * np.where(rng.random(nl) < 0.5, 1, -1), rng.random(nl), rng.random(nl)
    ground_t = _ground_t(p, float(rng.random()))
    col_t, ring_t, l_t = _figure_t(ground_t, col_u), _figure_t(ground_t, ring_v), _figure_t(ground_t, l_u)

    s2 = 2 * size
    pil = _to_pil(_ground(p, pal, rng, size, ground_t), s2)
    draw = ImageDraw.Draw(pil, "RGBA")
    phi = np.linspace(0.0, 2 * np.pi, m, endpoint=False)
    visible = _fade(3.0 + 9.0 * p.energy, n)
    sector = (2 * np.pi / sides)[:, None]
    polygon = np.cos(np.pi / sides)[:, None] / np.cos(np.mod(phi, sector) - sector / 2.0)
    radius = 1.0 + min(1.0, 1.25 * p.angularity) * (polygon - 1.0)  # fully polygonal from 0.8 up
    stretch = (1.0 + 1.8 * p.angularity**1.5 * elong)[:, None]  # shards: long thin polygons
    lx = radius * np.cos(phi) * stretch
    ly = radius * np.sin(phi) / np.sqrt(stretch)
    a = (rot + math.radians(p.slant))[:, None]
    centre = np.stack([cx, cy], axis=1)[:, None]
    local = np.stack([lx * np.cos(a) - ly * np.sin(a), lx * np.sin(a) + ly * np.cos(a)], axis=-1)
    shapes = (centre + rad[:, None, None] * local + 1.0) * (s2 / 2.0)
    rings = (centre + 0.55 * rad[:, None, None] * local + 1.0) * (s2 / 2.0)
    ring_alpha = visible * (1.0 - p.angularity) * (ring_u > 0.45)  # concentric rings on curved shapes
    shape_fill, ring_fill = _rgba(pal(col_t), visible * 0.92), _rgba(pal(ring_t), ring_alpha * 0.9)
    for i in np.flatnonzero(visible > 0.0):
        draw.polygon(shapes[i].ravel().tolist(), fill=shape_fill[i])
        if ring_alpha[i] > 0.0:
            draw.polygon(rings[i].ravel().tolist(), fill=ring_fill[i])
    # Lines: straight bars when angular, arcs when curved.
    shown = _fade(2.0 + 6.0 * p.energy, nl)
    u = np.linspace(-0.5, 0.5, 20)
    a = np.radians(p.slant + l_ang * (20.0 + 60.0 * p.irregularity))
    d = np.stack([np.cos(a), -np.sin(a)], axis=1)
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    off = (1.0 - p.angularity) * (l_curv * 0.25 * l_len)[:, None] * (4.0 * u * u)
    pts = l_c[:, None] + (u * l_len[:, None])[..., None] * d[:, None] + off[..., None] * nrm[:, None]
    half = ((0.006 + 0.012 * l_w) * (0.6 + 0.8 * p.energy))[:, None]
    outlines, fills = _ribbons(pts, half, s2), _rgba(pal(l_t), shown * 0.9)
    for j in np.flatnonzero(shown > 0.0):
        draw.polygon(outlines[j].ravel().tolist(), fill=fills[j])
    pil = pil.reduce(2)
    if p.softness > 0.05:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=1.2 * p.softness * size / 128))
    return _from_pil(pil)


def _style_flow(p: VisualParams, pal: _Palette, rng: np.random.Generator, size: int) -> np.ndarray:
    """Flowing bands (marbling, Bridget Riley): sine waves when curved, zigzags when angular."""
    x, y = _grid(size)
    warp = [_noise(rng, size, (3, 3)) - 0.5 for _ in range(2)]
    fine = _noise(rng, size, (10, 10)) - 0.5
    k = float(rng.uniform(0.8, 2.2))
    phase = float(rng.uniform(0, 2 * np.pi))
    offset = float(rng.uniform(0, 10))
    band_t = rng.random(64).astype(np.float32)
    theta = math.radians(p.slant + float(rng.uniform(-10, 10)))
    if size > 128:  # a finer octave of the marbling's irregularity (drawn last: 128 px is unchanged)
        fine = (fine + 0.7 * (_noise(rng, size, (_scaled(10, size),) * 2) - 0.5)) / 1.22
    along = x * math.cos(theta) - y * math.sin(theta)
    across = -x * math.sin(theta) - y * math.cos(theta)  # "up" on screen is positive
    s = np.pi * k * (along + 0.35 * warp[0]) + phase
    wave = (1.0 - p.angularity) * np.sin(s) + p.angularity * _tri(s)
    amp = 0.10 + 0.14 * p.energy
    phi = across + amp * wave + (0.25 * (1.0 - p.angularity) + 0.05) * warp[1] + 0.02 * p.irregularity * fine
    phi = phi + 0.3 * p.bend * along * along
    freq = 2.0 + 7.0 * p.energy**1.3
    q = phi * freq + offset
    band = np.floor(q)
    frac = q - band
    idx = band.astype(np.int64) % 64
    edge = 0.03 + 0.6 * p.softness
    w = _smoothstep((frac - (1.0 - edge)) / edge)
    t = band_t[idx] * (1.0 - w) + band_t[(idx + 1) % 64] * w
    return pal(t + 0.04 * fine)


def _style_texture(p: VisualParams, pal: _Palette, rng: np.random.Generator, size: int) -> np.ndarray:
    """Fractal noise: soft horizontal strata when calm, rough creased grain when aroused and angular."""
    octaves = [_noise(rng, size, (c, c)) for c in (3, 6, 12, 24, 48)]
    strata = _noise(rng, size, (3, 18))  # horizontal layering: few cells across, many down
    if size > 128:  # one more octave per doubling of the canvas (drawn last: 128 px is unchanged)
        octaves += [_noise(rng, size, (c, c)) for c in (96, 192) if c <= _scaled(48, size)]
    persistence = 0.35 + 0.4 * p.energy
    weights = persistence ** np.arange(len(octaves))
    fbm = sum(w * o for w, o in zip(weights, octaves, strict=True)) / weights.sum()
    field = (1.0 - 0.6 * (1.0 - p.energy)) * _standardise(fbm) + 0.6 * (1.0 - p.energy) * _standardise(strata)
    field = _standardise(field)
    ridged = 1.0 - 2.0 * np.abs(np.tanh(0.8 * field))  # sharp creases where the field crosses zero
    field = (1.0 - p.angularity) * field + p.angularity * 1.6 * _standardise(ridged)
    gain = 0.16 + 0.1 * p.energy
    return pal(0.5 + gain * field)


_STYLE_FUNCS: dict[str, Callable[[VisualParams, _Palette, np.random.Generator, int], np.ndarray]] = {
    "colour_field": _style_colour_field,
    "strokes": _style_strokes,
    "geometric": _style_geometric,
    "flow": _style_flow,
    "texture": _style_texture,
}


def _finish(img: np.ndarray, p: VisualParams, rng: np.random.Generator, size: int) -> np.ndarray:
    """Vignette and film grain, shared by all styles."""
    x, y = _grid(size)
    img = img * (1.0 - p.vignette * 0.5 * (x * x + y * y))[..., None]
    grain = rng.random((size, size), dtype=np.float32) - 0.5
    return img + (2.0 * p.grain) * grain[..., None]


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream])


def render_art(
    valence: float, arousal: float, *, style: str | None = None, size: int = 128, seed: int = 0
) -> np.ndarray:
    """Draw one abstract image for a VA point -> uint8 [size, size, 3] RGB.

    Deterministic in its arguments. `style=None` picks one of STYLES from the seed alone, so for a fixed
    seed the picture changes continuously with valence and arousal.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if style is None:
        style = STYLES[int(_rng(seed, 0).integers(len(STYLES)))]
    elif style not in _STYLE_FUNCS:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    p = visual_params(valence, arousal)
    pal = _Palette(p, _rng(seed, 1))
    img = _STYLE_FUNCS[style](p, pal, _rng(seed, 2), size)
    img = _finish(img, p, _rng(seed, 3), size)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Emotion-labelled sampling and the synthetic corpus


def _check_label(label: str) -> tuple[float, float]:
    try:
        return ART_VA[label]
    except KeyError:
        raise ValueError(f"unknown emotion {label!r}; known: {', '.join(ART_VA)}") from None


def _label_code(label: str) -> int:
    # crc32, not hash(): Python salts string hashes per process, which would break determinism.
    return zlib.crc32(label.encode("utf-8"))


def _sample_va(label: str, seed: int, jitter: float) -> tuple[float, float, str, int]:
    """(valence, arousal, style, render seed) for one labelled sample; see sample_art."""
    v0, a0 = _check_label(label)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _label_code(label), 7])
    offset = rng.normal(0.0, 1.0, 2) * max(0.0, jitter)
    norm = float(np.hypot(*offset))
    if norm > 2.0 * jitter > 0:
        offset *= 2.0 * jitter / norm
    v = float(np.clip(v0 + offset[0], -1.0, 1.0))
    a = float(np.clip(a0 + offset[1], -1.0, 1.0))
    style = STYLES[int(rng.integers(len(STYLES)))]
    return v, a, style, int(rng.integers(2**31))


def sample_art(label: str, *, size: int = 128, seed: int = 0, jitter: float = 0.25) -> tuple[np.ndarray, float, float]:
    """Draw (image, valence, arousal) for an emotion: VA scattered around its anchor, a random style.

    The offset from the anchor is Gaussian with standard deviation `jitter` per axis, its length capped
    at 2*jitter so that neighbouring emotions' regions do not overlap.
    """
    v, a, style, art_seed = _sample_va(label, seed, jitter)
    return render_art(v, a, style=style, size=size, seed=art_seed), v, a


class ArtItem(NamedTuple):
    """One labelled image: uint8 HWC RGB, emotion label, valence and arousal in [-1, 1], stable id."""

    image: np.ndarray
    label: str
    valence: float
    arousal: float
    id: str


class ArtCorpus:
    """A lazy, deterministic synthetic art corpus: n_per_class images per class, rendered on access.

    Classes are interleaved (item i has label classes[i % len(classes)]) so any prefix is balanced.
    Item k of a class is the same image whatever the other classes or n_per_class are.
    """

    def __init__(self, classes: Sequence[str], n_per_class: int, size: int = 128, seed: int = 0) -> None:
        self.classes = tuple(classes)
        if not self.classes:
            raise ValueError("ArtCorpus needs at least one class")
        for c in self.classes:
            _check_label(c)
        if n_per_class < 0:
            raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
        self.n_per_class = int(n_per_class)
        self.size = int(size)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.classes) * self.n_per_class

    def label_of(self, index: int) -> str:
        """The label of item `index` without rendering it."""
        return self.classes[self._check_index(index) % len(self.classes)]

    @property
    def labels(self) -> list[str]:
        return [self.classes[i % len(self.classes)] for i in range(len(self))]

    def _check_index(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a corpus of {n}")
        return index

    def __getitem__(self, index: int) -> ArtItem:
        index = self._check_index(index)
        label = self.classes[index % len(self.classes)]
        k = index // len(self.classes)
        item_seed = int(np.random.SeedSequence([self.seed & 0xFFFFFFFF, _label_code(label), k]).generate_state(1)[0])
        image, v, a = sample_art(label, size=self.size, seed=item_seed)
        return ArtItem(image=image, label=label, valence=v, arousal=a, id=f"synth-{label}-{self.seed}-{k:06d}")

    def __iter__(self) -> Iterator[ArtItem]:
        return (self[i] for i in range(len(self)))


# --------------------------------------------------------------------------------------------------
# Colour statistics and the directions a corpus (or a generator trained on it) should show


def _as_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    batch = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected images shaped [H, W, 3] or [N, H, W, 3], got {batch.shape}")
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / 255.0
    return np.clip(batch.astype(np.float32), 0.0, 1.0)


def colour_stats(images: np.ndarray | Sequence[np.ndarray]) -> dict[str, float]:
    """Mean colour statistics of RGB images (uint8 0..255, or float 0..1), values in 0..1 unless noted.

    hue: saturation-weighted circular mean HSV hue in degrees [0, 360); saturation, value: HSV means;
    brightness: mean Rec. 709 luma; contrast: mean per-image standard deviation of luma (RMS contrast);
    warmth: mean(R - B); redness: mean(R - (G + B) / 2); red_share: fraction of pixels that are
    clearly red (HSV hue within 340..20 degrees, saturation > 0.4, value > 0.15).
    """
    x = _as_batch(images)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx = x.max(axis=-1)
    mn = x.min(axis=-1)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    d = np.maximum(delta, 1e-6)
    hue = np.where(mx == r, np.mod((g - b) / d, 6.0), np.where(mx == g, (b - r) / d + 2.0, (r - g) / d + 4.0)) * 60.0
    w = sat * (delta > 1e-6)
    hr = np.radians(hue)
    mean_hue = math.degrees(math.atan2(float((w * np.sin(hr)).sum()), float((w * np.cos(hr)).sum()))) % 360.0
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    red = ((hue >= 340.0) | (hue <= 20.0)) & (sat > 0.4) & (mx > 0.15)
    return {
        "hue": mean_hue,
        "saturation": float(sat.mean()),
        "value": float(mx.mean()),
        "brightness": float(luma.mean()),
        "contrast": float(luma.reshape(len(x), -1).std(axis=1).mean()),
        "warmth": float((r - b).mean()),
        "redness": float((r - (g + b) / 2.0).mean()),
        "red_share": float(red.mean()),
    }


class Direction(NamedTuple):
    """`higher`'s mean `stat` (a colour_stats key) should exceed `lower`'s; `why` names the finding."""

    stat: str
    higher: str
    lower: str
    why: str


# The colour directions the procedural corpus shows strongly (tests/test_artgen.py) and a generator
# trained on it should keep. Each names its grounding; see docs/art.md.
EXPECTED_DIRECTIONS: tuple[Direction, ...] = (
    Direction("brightness", "happy", "sad", "pleasure <-> brightness (Valdez & Mehrabian 1994)"),
    Direction("brightness", "happy", "angry", "pleasure <-> brightness (Valdez & Mehrabian 1994)"),
    Direction("brightness", "neutral", "sad", "sadness <-> dark, grey (Jonauskaite et al. 2020)"),
    Direction("value", "happy", "sad", "pleasure <-> brightness (Valdez & Mehrabian 1994)"),
    Direction("saturation", "happy", "sad", "pleasure, arousal <-> saturation (Valdez & Mehrabian 1994)"),
    Direction("saturation", "happy", "neutral", "pleasure, arousal <-> saturation (Valdez & Mehrabian 1994)"),
    Direction("saturation", "angry", "neutral", "arousal <-> saturation (Valdez & Mehrabian 1994)"),
    Direction("warmth", "happy", "sad", "happy <-> yellow, sad <-> blue (Palmer et al. 2013)"),
    Direction("warmth", "angry", "neutral", "anger <-> red (Jonauskaite et al. 2020)"),
    Direction("warmth", "neutral", "sad", "sadness <-> blue, grey (Jonauskaite et al. 2020)"),
    Direction("redness", "angry", "neutral", "anger <-> red (Jonauskaite et al. 2020)"),
    Direction("redness", "angry", "sad", "anger <-> red (Jonauskaite et al. 2020)"),
    Direction("red_share", "angry", "happy", "anger <-> red, joy <-> yellow (Jonauskaite et al. 2020)"),
    Direction("contrast", "angry", "neutral", "arousal potential <-> contrast, complexity (Berlyne 1971)"),
    Direction("contrast", "angry", "sad", "arousal potential <-> contrast, complexity (Berlyne 1971)"),
)


def check_directions(
    images_by_label: dict[str, np.ndarray | Sequence[np.ndarray]],
    directions: Sequence[Direction] = EXPECTED_DIRECTIONS,
) -> list[tuple[Direction, float, float, bool]]:
    """For each direction whose labels are present: (direction, higher's mean, lower's mean, holds)."""
    stats = {label: colour_stats(imgs) for label, imgs in images_by_label.items() if len(imgs)}
    out = []
    for d in directions:
        if d.higher in stats and d.lower in stats:
            hi, lo = stats[d.higher][d.stat], stats[d.lower][d.stat]
            out.append((d, hi, lo, hi > lo))
    return out


# --------------------------------------------------------------------------------------------------
# A sample grid for the docs


def save_grid(
    path: str | Path,
    *,
    labels: Sequence[str] = ("angry", "happy", "sad", "neutral"),
    per_label: int = 6,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """Save a labelled grid PNG: one row per emotion, `per_label` samples each (cycling the styles)."""
    pad, label_w = 4, 72
    grid = Image.new("RGB", (label_w + per_label * (size + pad) + pad, pad + len(labels) * (size + pad)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for row, label in enumerate(labels):
        _check_label(label)
        top = pad + row * (size + pad)
        draw.text((6, top + size // 2 - 6), label, fill=(0, 0, 0), font=font)
        for col in range(per_label):
            # Cycle the styles so each row shows every vocabulary (sample_art alone picks them at random).
            v, a, _, art_seed = _sample_va(label, seed * 1000 + col, 0.25)
            img = render_art(v, a, style=STYLES[col % len(STYLES)], size=size, seed=art_seed)
            grid.paste(Image.fromarray(img), (label_w + pad + col * (size + pad), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)
    return path
