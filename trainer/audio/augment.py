"""Gallery-microphone augmentation on waveforms, and SpecAugment on log-mel features.

The waveform chain follows the path sound takes to an installation's microphone: the clip starts at a
random moment (time shift), plays in a room (reverberation), the microphone or phone band-limits it,
the room adds noise (white hiss, pink rumble, babble of other voices) at a chosen SNR, and the input
gain is whatever the technician set. Noise comes after the band limit so `snr_db` is the SNR of the
output exactly. Every function takes [samples] or [batch, samples] float arrays and a seeded
`np.random.Generator`; outputs are float32, finite and within [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.signal import butter, fftconvolve, sosfilt

NoiseKind = Literal["white", "pink", "babble"]
_EPS = 1e-12


def _as_batch(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be [samples] or [batch, samples], got shape {x.shape}")
    return (x[None, :] if x.ndim == 1 else x), x.ndim == 1


def _per_row(value: float | np.ndarray, rows: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (rows,))


def _power(x: np.ndarray) -> np.ndarray:
    return np.mean(np.square(x, dtype=np.float64), axis=-1)


# -- elementary operations -----------------------------------------------------------------------------


def apply_gain(audio: np.ndarray, gain_db: float | np.ndarray) -> np.ndarray:
    """Scale by `gain_db` (scalar or one per row). No clipping here: see `protect_peaks`."""
    x, single = _as_batch(audio)
    out = x * (10.0 ** (_per_row(gain_db, x.shape[0]) / 20.0))[:, None]
    return out[0] if single else out.astype(np.float32)


def protect_peaks(audio: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Scale rows whose peak exceeds `peak` back to it, and zero non-finite samples.

    Scaling rather than clipping: augmentation should not add distortion the label does not explain.
    """
    x, single = _as_batch(audio)
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    top = np.max(np.abs(x), axis=-1, keepdims=True)
    out = np.where(top > peak, x * (peak / np.maximum(top, _EPS)), x).astype(np.float32)
    return out[0] if single else out


def time_shift(audio: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """Delay (shift > 0) or advance (< 0) each row by whole samples, filling with silence (not wrapping)."""
    x, single = _as_batch(audio)
    n = x.shape[1]
    shifts = np.clip(np.broadcast_to(np.asarray(shift, dtype=np.int64), (x.shape[0],)), -n, n)
    src = np.arange(n)[None, :] - shifts[:, None]  # output[i] = input[i - shift]
    valid = (src >= 0) & (src < n)
    out = np.where(valid, np.take_along_axis(x, np.clip(src, 0, n - 1), axis=1), 0.0).astype(np.float32)
    return out[0] if single else out


def white_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS Gaussian noise."""
    noise = rng.standard_normal(shape)
    return noise / np.sqrt(np.maximum(_power(noise), _EPS))[:, None]


def pink_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise: white spectrum shaped by 1/sqrt(f) (power falls 3 dB per octave)."""
    rows, n = shape
    bins = n // 2 + 1
    spectrum = rng.standard_normal((rows, bins)) + 1j * rng.standard_normal((rows, bins))
    f = np.arange(bins, dtype=np.float64)
    f[0] = 1.0  # the DC bin gets the lowest band's weight instead of infinity
    noise = np.fft.irfft(spectrum / np.sqrt(f), n=n, axis=-1)
    return noise / np.sqrt(np.maximum(_power(noise), _EPS))[:, None]


def babble_noise(
    shape: tuple[int, int], rng: np.random.Generator, bank: Sequence[np.ndarray], talkers: tuple[int, int] = (3, 7)
) -> np.ndarray:
    """Unit-RMS babble: a few random excerpts of other clips summed, each looped to length and levelled."""
    rows, n = shape
    usable = [np.asarray(c, dtype=np.float64) for c in bank if np.size(c) > 0 and np.any(c)]
    if not usable:
        raise ValueError("babble noise needs at least one non-silent clip in the noise bank")
    out = np.zeros(shape)
    for row in range(rows):
        for _ in range(int(rng.integers(talkers[0], talkers[1]))):
            clip = usable[int(rng.integers(len(usable)))]
            start = int(rng.integers(clip.size))
            piece = np.resize(np.roll(clip, -start), n)  # np.resize repeats the clip to fill n samples
            out[row] += piece / np.sqrt(max(float(np.mean(piece**2)), _EPS))
    return out / np.sqrt(np.maximum(_power(out), _EPS))[:, None]


def add_noise(
    audio: np.ndarray,
    snr_db: float | np.ndarray,
    rng: np.random.Generator,
    kind: NoiseKind = "white",
    bank: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Add noise of `kind` at `snr_db` (scalar or per row), measured over the whole clip.

    Silent rows are returned unchanged: an SNR relative to nothing has no meaning.
    """
    x, single = _as_batch(audio)
    shape = (x.shape[0], x.shape[1])
    if kind == "white":
        noise = white_noise(shape, rng)
    elif kind == "pink":
        noise = pink_noise(shape, rng)
    elif kind == "babble":
        noise = babble_noise(shape, rng, bank or [])
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    signal_power = _power(x)
    scale = np.sqrt(signal_power / (10.0 ** (_per_row(snr_db, x.shape[0]) / 10.0)))  # noise is unit power
    out = (x + noise * scale[:, None]).astype(np.float32)
    out = np.where((signal_power > 0)[:, None], out, x)
    return out[0] if single else out


def room_impulse_response(
    rt60_s: float, sample_rate: int, rng: np.random.Generator, drr_db: float = 0.0, pre_delay_s: float = 0.004
) -> np.ndarray:
    """Synthetic room response: a unit direct path, then Gaussian noise decaying 60 dB in `rt60_s`.

    `drr_db` is the direct-to-reverberant energy ratio (lower: a farther, more diffuse microphone).
    The tail starts after `pre_delay_s` (the first reflections) and runs to -60 dB.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be > 0, got {rt60_s}")
    delay = max(1, round(pre_delay_s * sample_rate))
    n_tail = max(1, round(rt60_s * sample_rate))
    t = np.arange(n_tail) / sample_rate
    # amplitude falls by 10^(-3) (energy by 60 dB) at t = rt60
    tail = rng.standard_normal(n_tail) * 10.0 ** (-3.0 * t / rt60_s)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(float(np.sum(tail**2)), _EPS))
    ir = np.zeros(delay + n_tail)
    ir[0] = 1.0
    ir[delay:] = tail
    return ir


def reverberate(
    audio: np.ndarray,
    rt60_s: float | np.ndarray,
    rng: np.random.Generator,
    sample_rate: int,
    drr_db: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Convolve each row with its own synthetic room response (FFT), keep the length and the RMS level."""
    x, single = _as_batch(audio)
    rows, n = x.shape
    rt60 = _per_row(rt60_s, rows)
    drr = _per_row(drr_db, rows)
    irs = [room_impulse_response(float(rt60[i]), sample_rate, rng, float(drr[i])) for i in range(rows)]
    bank = np.zeros((rows, max(ir.size for ir in irs)))
    for i, ir in enumerate(irs):
        bank[i, : ir.size] = ir
    wet = fftconvolve(x.astype(np.float64), bank, mode="full", axes=-1)[:, :n]
    # keep the level: reverberation should change the timbre, not how loud the clip is
    gain = np.sqrt(_power(x) / np.maximum(_power(wet), _EPS))
    out = (wet * gain[:, None]).astype(np.float32)
    return out[0] if single else out


def band_limit(
    audio: np.ndarray,
    sample_rate: int,
    highpass_hz: float | np.ndarray | None = None,
    lowpass_hz: float | np.ndarray | None = None,
    order: int = 4,
) -> np.ndarray:
    """Butterworth high-pass and/or low-pass (per row), like a cheap microphone or a phone line."""
    x, single = _as_batch(audio)
    rows = x.shape[0]
    nyquist = sample_rate / 2.0
    high = None if highpass_hz is None else _per_row(highpass_hz, rows)
    low = None if lowpass_hz is None else _per_row(lowpass_hz, rows)
    out = np.empty_like(x, dtype=np.float32)
    for i in range(rows):  # each row has its own cut-offs, hence its own filter
        y = x[i].astype(np.float64)
        if high is not None and 0 < high[i] < nyquist:
            y = sosfilt(butter(order, high[i], btype="highpass", fs=sample_rate, output="sos"), y)
        if low is not None and 0 < low[i] < nyquist * 0.98:
            y = sosfilt(butter(order, low[i], btype="lowpass", fs=sample_rate, output="sos"), y)
        out[i] = y
    return out[0] if single else out


def change_speed(audio: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """Play each row `factor` times faster (tempo and pitch together, as a tape or Kaldi's speed
    perturbation), keeping the length: linear interpolation at i * factor, silence past the end.
    Vectorised over the batch; factor 1 returns the row unchanged."""
    x, single = _as_batch(audio)
    rows, n = x.shape
    f = _per_row(factor, rows)
    if np.any(f <= 0):
        raise ValueError("speed factors must be > 0")
    pos = np.arange(n)[None, :] * f[:, None]  # [rows, n] source positions
    left = np.floor(pos).astype(np.int64)
    frac = (pos - left).astype(np.float32)
    inside = left < n - 1
    lo = np.take_along_axis(x, np.clip(left, 0, n - 1), axis=1)
    hi = np.take_along_axis(x, np.clip(left + 1, 0, n - 1), axis=1)
    out = np.where(inside, lo * (1 - frac) + hi * frac, np.where(left == n - 1, lo, 0.0)).astype(np.float32)
    return out[0] if single else out


def shift_pitch(audio: np.ndarray, semitones: float | np.ndarray, sample_rate: int) -> np.ndarray:
    """Shift each row's pitch by `semitones` without changing its tempo (librosa's phase vocoder +
    resampling). Rows sharing a shift are processed as one multichannel array, so a batch drawn from a few
    steps costs a few calls."""
    import librosa

    x, single = _as_batch(audio)
    steps = _per_row(semitones, x.shape[0])
    out = x.copy()
    for step in np.unique(steps):
        rows = np.flatnonzero(steps == step)
        if step == 0:
            continue
        shifted = librosa.effects.pitch_shift(x[rows], sr=sample_rate, n_steps=float(step))
        out[rows] = shifted[:, : x.shape[1]]
    return out[0] if single else out.astype(np.float32)


# -- the augmenter -------------------------------------------------------------------------------------

Range = tuple[float, float]


class AugmentConfig(BaseModel):
    """Probabilities and parameter ranges of the waveform augmentations (each drawn per clip)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(22050, gt=0)
    p_shift: float = Field(0.5, ge=0, le=1)
    max_shift_s: float = Field(0.25, ge=0)
    p_reverb: float = Field(0.3, ge=0, le=1)
    rt60_s: Range = (0.2, 1.2)
    drr_db: Range = (-3.0, 12.0)
    p_band: float = Field(0.3, ge=0, le=1)
    highpass_hz: Range = (60.0, 400.0)
    lowpass_hz: Range = (3000.0, 8000.0)
    p_noise: float = Field(0.5, ge=0, le=1)
    snr_db: Range = (5.0, 30.0)
    noise_kinds: tuple[NoiseKind, ...] = ("white", "pink", "babble")
    p_gain: float = Field(0.5, ge=0, le=1)
    gain_db: Range = (-20.0, 6.0)
    # voice-shift perturbations (off by default: the ablation turns them on)
    p_speed: float = Field(0.0, ge=0, le=1)
    speed: Range = (0.9, 1.1)
    p_pitch: float = Field(0.0, ge=0, le=1)
    pitch_steps: tuple[float, ...] = (-2.0, -1.0, 1.0, 2.0)

    @model_validator(mode="after")
    def _ranges_ordered(self) -> AugmentConfig:
        for name in ("rt60_s", "drr_db", "highpass_hz", "lowpass_hz", "snr_db", "gain_db", "speed"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: low {low} > high {high}")
        if self.rt60_s[0] <= 0:
            raise ValueError("rt60_s must be > 0")
        if not self.noise_kinds:
            raise ValueError("noise_kinds must name at least one kind")
        return self


class Augmenter:
    """Applies `AugmentConfig` to a clip or a batch: `augmenter(audio, rng)`.

    `noise_bank` holds other clips (mono float at the same rate) for babble noise; without it babble is
    not drawn. Deterministic for a given generator state.
    """

    def __init__(self, config: AugmentConfig | None = None, noise_bank: Sequence[np.ndarray] | None = None) -> None:
        self.config = config or AugmentConfig()
        self.noise_bank = [np.asarray(c, dtype=np.float32) for c in noise_bank or [] if np.size(c) and np.any(c)]
        kinds = [k for k in self.config.noise_kinds if k != "babble" or self.noise_bank]
        self.noise_kinds: tuple[NoiseKind, ...] = tuple(kinds) or ("white",)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        x, single = _as_batch(audio)
        x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
        rows = x.shape[0]

        def pick(p: float) -> np.ndarray:
            return np.flatnonzero(rng.random(rows) < p)

        def draw(bounds: Range, size: int) -> np.ndarray:
            return rng.uniform(bounds[0], bounds[1], size)

        # drawn only when on, so the default chain's random stream is the one it always was
        if cfg.p_speed and (sel := pick(cfg.p_speed)).size:
            x[sel] = change_speed(x[sel], draw(cfg.speed, sel.size))
        if cfg.p_pitch and cfg.pitch_steps and (sel := pick(cfg.p_pitch)).size:
            steps = np.asarray(cfg.pitch_steps)[rng.integers(len(cfg.pitch_steps), size=sel.size)]
            x[sel] = shift_pitch(x[sel], steps, cfg.sample_rate)
        if (sel := pick(cfg.p_shift)).size:
            limit = round(cfg.max_shift_s * cfg.sample_rate)
            x[sel] = time_shift(x[sel], rng.integers(-limit, limit + 1, sel.size))
        if (sel := pick(cfg.p_reverb)).size:
            x[sel] = reverberate(x[sel], draw(cfg.rt60_s, sel.size), rng, cfg.sample_rate, draw(cfg.drr_db, sel.size))
        if (sel := pick(cfg.p_band)).size:
            high, low = draw(cfg.highpass_hz, sel.size), draw(cfg.lowpass_hz, sel.size)
            x[sel] = band_limit(x[sel], cfg.sample_rate, high, low)
        if (sel := pick(cfg.p_noise)).size:
            kinds = rng.integers(len(self.noise_kinds), size=sel.size)
            snr = draw(cfg.snr_db, sel.size)
            for k, kind in enumerate(self.noise_kinds):
                rows_k = sel[kinds == k]
                if rows_k.size:
                    x[rows_k] = add_noise(x[rows_k], snr[kinds == k], rng, kind, self.noise_bank)
        if (sel := pick(cfg.p_gain)).size:
            x[sel] = apply_gain(x[sel], draw(cfg.gain_db, sel.size))
        x = protect_peaks(x)
        return x[0] if single else x


# -- SpecAugment ---------------------------------------------------------------------------------------


class SpecAugmentConfig(BaseModel):
    """Frequency and time masks on log-mel features (Park et al., 2019), without time warping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p: float = Field(0.5, ge=0, le=1, description="chance that a sample is masked at all")
    freq_masks: int = Field(2, ge=0)
    max_freq_width: int = Field(16, ge=0)
    time_masks: int = Field(2, ge=0)
    max_time_width: int = Field(20, ge=0)
    mask_value: float = Field(0.0, description="0 is the mean of z-scored features")


def _band_masks(
    batch: int, n: int, count: int, max_width: int, active: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """[batch, n] bool: `count` random bands of width 0..max_width per active row."""
    if count == 0 or max_width == 0:
        return torch.zeros(batch, n, dtype=torch.bool)
    widths = torch.randint(0, min(max_width, n) + 1, (batch, count), generator=generator)
    widths = widths * active[:, None]
    starts = (torch.rand(batch, count, generator=generator) * (n - widths + 1)).long()
    idx = torch.arange(n)[None, None, :]
    inside = (idx >= starts[..., None]) & (idx < (starts + widths)[..., None])
    return inside.any(dim=1)


def spec_augment(
    features: torch.Tensor, config: SpecAugmentConfig | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mask random frequency bands and time spans of `features` [..., mels, frames]; a new tensor.

    Masks differ per sample (all leading dimensions flattened into the batch) and are drawn on the CPU
    with `generator`, so a seed gives the same masks on any device.
    """
    cfg = config or SpecAugmentConfig()
    if features.ndim < 2:
        raise ValueError(f"features must be [..., mels, frames], got shape {tuple(features.shape)}")
    *lead, n_mels, n_frames = features.shape
    batch = int(np.prod(lead)) if lead else 1
    active = torch.rand(batch, generator=generator) < cfg.p
    freq = _band_masks(batch, n_mels, cfg.freq_masks, cfg.max_freq_width, active, generator)
    time = _band_masks(batch, n_frames, cfg.time_masks, cfg.max_time_width, active, generator)
    mask = (freq[:, :, None] | time[:, None, :]).reshape(*lead, n_mels, n_frames).to(features.device)
    return features.masked_fill(mask, cfg.mask_value)
