"""Waveform augmentation measured, not just run: SNR, RT60, band limits, shifts, bounds, seeds; SpecAugment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.audio.augment import (
    AugmentConfig,
    Augmenter,
    SpecAugmentConfig,
    add_noise,
    band_limit,
    protect_peaks,
    reverberate,
    room_impulse_response,
    spec_augment,
    time_shift,
)

SR = 22050


def _voice(seconds: float = 1.0, seed: int = 0, rows: int | None = None) -> np.ndarray:
    """A speech-like test signal: harmonics of a wobbling pitch with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 3 * t) + rng.uniform(-20, 20, size=(rows, 1) if rows else 1)
    phase = 2 * np.pi * np.cumsum(f0, axis=-1) / SR
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * tone * envelope).astype(np.float32)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    noise = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2, axis=-1) / np.mean(noise**2, axis=-1))


def _band_energy(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spectrum[(f >= low) & (f < high)].sum())


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_requested_snr(kind: str, snr: float) -> None:
    rng = np.random.default_rng(1)
    clean = _voice()
    bank = [_voice(0.7, seed=s) for s in range(2, 6)]
    noisy = add_noise(clean, snr, rng, kind, bank)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert abs(_snr_db(clean, noisy) - snr) < 0.5


def test_noise_kinds_differ_in_colour_and_batches_take_per_row_snr() -> None:
    rng = np.random.default_rng(2)
    silent = np.zeros(SR, dtype=np.float32)
    ones = np.full(SR, 0.1, dtype=np.float32)
    white = add_noise(ones, 0.0, rng, "white") - ones
    pink = add_noise(ones, 0.0, rng, "pink") - ones
    low_high = [_band_energy(n, 50, 500) / _band_energy(n, 5000, 10000) for n in (white, pink)]
    assert low_high[1] > 5 * low_high[0]  # pink noise is heavier in the low band
    batch = _voice(rows=3)
    snrs = np.array([3.0, 12.0, 20.0])
    np.testing.assert_allclose(_snr_db(batch, add_noise(batch, snrs, rng, "pink")), snrs, atol=0.5)
    np.testing.assert_array_equal(add_noise(silent, 10.0, rng), silent)  # no SNR relative to silence
    with pytest.raises(ValueError, match="babble"):
        add_noise(ones, 10.0, rng, "babble", [])


def _rt60_from_ir(ir: np.ndarray, start: int) -> float:
    """Schroeder backward integration, line fit from -5 to -35 dB, extrapolated to -60 dB."""
    tail = ir[start:] ** 2
    edc = np.cumsum(tail[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    t = np.arange(tail.size) / SR
    fit = (edc_db <= -5) & (edc_db >= -35)
    slope = np.polyfit(t[fit], edc_db[fit], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_room_impulse_response_decays_as_asked(rt60: float) -> None:
    ir = room_impulse_response(rt60, SR, np.random.default_rng(3), drr_db=0.0)
    assert ir[0] == 1.0
    start = int(np.flatnonzero(ir[1:])[0]) + 1
    assert abs(_rt60_from_ir(ir, start) - rt60) < 0.1 * rt60
    assert np.sum(ir[start:] ** 2) == pytest.approx(1.0, rel=1e-6)  # DRR 0 dB: tail energy = direct energy


def test_reverberation_keeps_length_and_level_and_adds_a_tail() -> None:
    rng = np.random.default_rng(4)
    click = np.zeros(SR, dtype=np.float32)
    click[1000] = 0.5
    wet = reverberate(click, 0.5, rng, SR, drr_db=0.0)
    assert wet.shape == click.shape and wet.dtype == np.float32
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(click**2)), rel=1e-4)
    late = wet[1000 + int(0.05 * SR) : 1000 + int(0.15 * SR)]
    assert np.sqrt(np.mean(late**2)) > 1e-4  # sound persists 50-150 ms after the click
    assert np.max(np.abs(wet[:999])) < 1e-6  # and nothing before it (FFT round-off only)


def test_band_limit_attenuates_out_of_band_energy() -> None:
    noise = np.random.default_rng(5).standard_normal(2 * SR).astype(np.float32) * 0.1
    high_passed = band_limit(noise, SR, highpass_hz=400.0)
    assert _band_energy(high_passed, 20, 150) < _band_energy(noise, 20, 150) / 100  # > 20 dB down
    assert _band_energy(high_passed, 1000, 3000) == pytest.approx(_band_energy(noise, 1000, 3000), rel=0.1)
    low_passed = band_limit(noise, SR, lowpass_hz=3000.0)
    assert _band_energy(low_passed, 6000, 11000) < _band_energy(noise, 6000, 11000) / 100
    assert _band_energy(low_passed, 300, 2000) == pytest.approx(_band_energy(noise, 300, 2000), rel=0.1)
    phone = band_limit(np.stack([noise, noise]), SR, highpass_hz=[300.0, 100.0], lowpass_hz=[3400.0, 8000.0])
    assert _band_energy(phone[0], 5000, 8000) < _band_energy(phone[1], 5000, 8000) / 10  # per-row cut-offs


def test_time_shift_moves_content_and_fills_with_silence() -> None:
    x = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(time_shift(x, 3), [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(time_shift(x, -2), [3, 4, 5, 6, 7, 8, 9, 10, 0, 0])
    batch = time_shift(np.stack([x, x]), np.array([1, -1]))
    np.testing.assert_array_equal(batch[:, :3], [[0, 1, 2], [2, 3, 4]])


def test_augmenter_is_deterministic_bounded_and_finite() -> None:
    config = AugmentConfig(p_shift=1, p_reverb=1, p_band=1, p_noise=1, p_gain=1, gain_db=(6.0, 12.0))
    augmenter = Augmenter(config, noise_bank=[_voice(0.5, seed=9)])
    loud = np.clip(_voice(seed=1) * 4, -1, 1)
    loud[100] = np.nan
    a = augmenter(loud, np.random.default_rng(11))
    b = augmenter(loud, np.random.default_rng(11))
    c = augmenter(loud, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for out in (a, c):
        assert out.shape == loud.shape and out.dtype == np.float32
        assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    batch = augmenter(np.stack([_voice(seed=s) for s in range(4)]), np.random.default_rng(13))
    assert batch.shape == (4, SR) and np.max(np.abs(batch)) <= 1.0
    assert not np.allclose(batch[0], batch[1])
    untouched = Augmenter(AugmentConfig(p_shift=0, p_reverb=0, p_band=0, p_noise=0, p_gain=0))
    np.testing.assert_array_equal(untouched(_voice(), np.random.default_rng(0)), _voice())


def test_augmenter_without_bank_never_draws_babble_and_config_validates() -> None:
    assert Augmenter().noise_kinds == ("white", "pink")
    assert Augmenter(noise_bank=[np.zeros(10)]).noise_kinds == ("white", "pink")  # silent clips are no bank
    with pytest.raises(ValueError, match="snr_db"):
        AugmentConfig(snr_db=(30.0, 5.0))
    with pytest.raises(ValueError):
        AugmentConfig(p_noise=1.5)
    assert np.max(np.abs(protect_peaks(np.array([0.5, -2.0, 1.0])))) == 1.0


def test_spec_augment_masks_bands_and_spans_per_sample() -> None:
    features = torch.randn(8, 1, 128, 130) + 5.0  # offset: a mask value of 0 cannot occur by chance
    cfg = SpecAugmentConfig(p=1.0, freq_masks=1, max_freq_width=20, time_masks=1, max_time_width=25)
    out = spec_augment(features, cfg, torch.Generator().manual_seed(0))
    assert out.shape == features.shape and not torch.equal(out, features)
    masked = out == 0.0
    assert torch.equal(out[~masked], features[~masked])  # everything else untouched
    full_rows = masked.all(dim=-1)[:, 0]  # [8, 128] mel bins masked over all frames
    full_cols = masked.all(dim=-2)[:, 0]  # [8, 130] frames masked over all bins
    for i in range(8):
        rows, cols = torch.nonzero(full_rows[i]).flatten(), torch.nonzero(full_cols[i]).flatten()
        assert rows.numel() <= 20 and cols.numel() <= 25
        for band in (rows, cols):  # one mask each: a contiguous band
            if band.numel():
                assert int(band[-1] - band[0]) + 1 == band.numel()
        # a masked point lies in a masked bin or frame
        assert torch.equal(masked[i, 0], full_rows[i][:, None] | full_cols[i][None, :])
    assert len({tuple(torch.nonzero(full_rows[i]).flatten().tolist()) for i in range(8)}) > 1  # masks differ per sample


def test_spec_augment_is_seeded_and_respects_p() -> None:
    features = torch.randn(4, 128, 130)
    a = spec_augment(features, generator=torch.Generator().manual_seed(5))
    b = spec_augment(features, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(spec_augment(features, SpecAugmentConfig(p=0.0)), features)
    copy = features.clone()
    spec_augment(features, SpecAugmentConfig(p=1.0))
    assert torch.equal(features, copy)  # the input is not modified


def test_speed_change_resamples_each_row_and_keeps_the_length() -> None:
    from trainer.audio.augment import change_speed

    sr = 8000
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    out = change_speed(np.stack([tone, tone]), np.array([1.0, 1.25]))
    assert out.shape == (2, sr) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], tone, atol=1e-6)  # factor 1: unchanged
    peak = np.argmax(np.abs(np.fft.rfft(out[1][: int(sr / 1.25) - 10]))) * sr / (int(sr / 1.25) - 10)
    assert abs(peak - 250) < 5  # 25% faster: 25% higher
    assert np.all(out[1][int(sr / 1.25) + 2 :] == 0)  # then silence, not a wrap-around


def test_pitch_shift_moves_the_pitch_not_the_tempo() -> None:
    from trainer.audio.augment import shift_pitch

    sr = 8000
    t = np.arange(sr) / sr
    tone = (np.sin(2 * np.pi * 300 * t) * np.minimum(1, 10 * (1 - t))).astype(np.float32)
    out = shift_pitch(np.stack([tone, tone]), np.array([0.0, 12.0]), sr)
    assert out.shape == (2, sr)
    np.testing.assert_array_equal(out[0], tone)
    peak = np.argmax(np.abs(np.fft.rfft(out[1]))) * sr / sr
    assert abs(peak - 600) < 10  # an octave up


def test_voice_perturbations_are_off_by_default_and_drawn_when_on() -> None:
    x = np.stack([_voice(0.5, seed=s) for s in range(4)])
    quiet = dict(p_shift=0, p_reverb=0, p_band=0, p_noise=0, p_gain=0)
    assert np.array_equal(Augmenter(AugmentConfig(**quiet))(x, np.random.default_rng(0)), x)
    on = Augmenter(AugmentConfig(**quiet, p_speed=1.0, p_pitch=1.0))(x, np.random.default_rng(0))
    assert on.shape == x.shape and not np.allclose(on, x) and np.isfinite(on).all()
