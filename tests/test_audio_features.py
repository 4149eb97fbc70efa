"""Band energies, spectral flux, beat and tempo (engine/audio/features.py) on synthetic audio through a real ring."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio.features import BEAT_DECAY_S, AudioFeatures, AudioFrame
from engine.audio.ringbuffer import RingBuffer

SR = 22050


def click_track(bpm: float, seconds: float, noise: float = 0.003, offset: float = 0.25, seed: int = 0):
    """Short decaying 1.5 kHz clicks every 60/bpm s over a faint noise floor; (audio, click times)."""
    rng = np.random.default_rng(seed)
    x = (noise * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    times = np.arange(offset, seconds - 0.05, 60.0 / bpm)
    t = np.arange(int(0.01 * SR)) / SR
    burst = (0.6 * np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.003)).astype(np.float32)
    for c in times:
        i = round(c * SR)
        x[i : i + burst.size] += burst[: x.size - i]
    return x, times


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def feed(audio: np.ndarray, rate_hz: float = 60.0, *instances: AudioFeatures) -> list[list[tuple[float, AudioFrame]]]:
    """Write `audio` into a ring in blocks of 1/rate_hz s, calling each instance after every block;
    returns per instance [(ring end time, frame)]."""
    feats = instances or (AudioFeatures(SR),)
    ring = RingBuffer(10 * SR, SR)
    block = max(1, round(SR / rate_hz))
    out: list[list[tuple[float, AudioFrame]]] = [[] for _ in feats]
    for pos in range(0, audio.size, block):
        ring.write(audio[pos : pos + block])
        for f, rows in zip(feats, out, strict=True):
            rows.append((ring.written / SR, f(ring)))
    return out


def beats_of(rows: list[tuple[float, AudioFrame]]) -> list[tuple[float, float]]:
    """(beat onset time, ring time when it was first reported) for each new beat."""
    seen, out = 0, []
    for now, fr in rows:
        if fr.beats > seen:
            seen = fr.beats
            out.append((fr.beat_t, now))
    return out


@pytest.mark.parametrize("bpm", [120.0, 90.0])
def test_click_track_tempo_and_beats(bpm: float) -> None:
    audio, clicks = click_track(bpm, 8.0)
    (rows,) = feed(audio)
    beats = beats_of(rows)
    assert len(beats) == len(clicks)  # every click, nothing between them
    for (t, seen), click in zip(beats, clicks, strict=True):
        assert abs(t - click) < 0.05  # the beat is at the click
        assert 0.0 <= seen - click < 0.08  # and known within a few frames of it
    tempos = [fr.tempo for now, fr in rows if now >= 4.0]
    assert all(abs(tp - bpm) <= 2.0 for tp in tempos), (min(tempos), max(tempos))
    early = [fr.tempo for now, fr in rows if now < 2.9]
    assert set(early) == {0.0}  # no estimate from less than 3 s


def test_beat_pulse_is_one_at_the_beat_and_decays_by_audio_time() -> None:
    audio, _ = click_track(120.0, 4.0)
    (rows,) = feed(audio, 100.0)
    values = np.array([fr.beat for _, fr in rows])
    assert values.max() == pytest.approx(1.0, abs=0.06)
    new = [i for i in range(1, len(rows)) if rows[i][1].beats > rows[i - 1][1].beats]
    for i in new:
        j = i + round(BEAT_DECAY_S * 100) + 1
        if j < len(rows):
            assert rows[j][1].beat == 0.0  # back to zero a decay time later
        assert rows[i][1].beat > 0.8


def test_beats_and_tempo_do_not_depend_on_how_often_they_are_asked() -> None:
    audio, _ = click_track(120.0, 6.0)
    fast, slow = AudioFeatures(SR), AudioFeatures(SR)
    ring = RingBuffer(10 * SR, SR)
    block = SR // 120
    fast_rows, slow_rows = [], []
    for n, pos in enumerate(range(0, audio.size, block)):
        ring.write(audio[pos : pos + block])
        fast_rows.append((ring.written / SR, fast(ring)))  # 120 Hz, like a render loop
        if n % 5 == 0:
            slow_rows.append((ring.written / SR, slow(ring)))  # 24 Hz, like the OSC tick
    fb, sb = beats_of(fast_rows), beats_of(slow_rows)
    assert [t for t, _ in fb] == [t for t, _ in sb]  # the same beats, not more for the faster caller
    # the same tempo (batched FFTs of other sizes round differently in the last bits)
    assert fast_rows[-1][1].tempo == pytest.approx(slow_rows[-1][1].tempo, rel=1e-6)
    assert slow_rows[-1][1].tempo > 0.0


@pytest.mark.parametrize(
    ("freq", "band"),
    [(100.0, "low"), (800.0, "mid"), (5000.0, "high")],
)
def test_band_energies_on_pure_tones(freq: float, band: str) -> None:
    (rows,) = feed(tone(freq, 1.0, amp=0.5))
    fr = rows[-1][1]
    levels = {"low": fr.low, "mid": fr.mid, "high": fr.high}
    # a 0.5-amplitude sine is -9 dBFS (mean square 0.125): 0.85 on the 0..1 scale (-60 dB -> 0, 0 dB -> 1)
    assert levels[band] == pytest.approx(1.0 + 10 * np.log10(0.125) / 60.0, abs=0.02)
    for other, value in levels.items():
        if other != band:
            assert value < 0.25, (other, value)


def test_silence_gives_zeros_and_a_silence_after_music_drops_the_tempo() -> None:
    (rows,) = feed(np.zeros(3 * SR, np.float32))
    for _, fr in rows:
        assert (fr.rms, fr.low, fr.mid, fr.high, fr.flux, fr.beat, fr.tempo, fr.beats) == (0, 0, 0, 0, 0, 0, 0, 0)
    audio, _ = click_track(120.0, 6.0)
    (rows,) = feed(np.concatenate([audio, np.zeros(4 * SR, np.float32)]))
    assert rows[round(5.9 * 60)][1].tempo > 100.0
    last = rows[-1][1]
    assert (last.low, last.mid, last.high, last.flux, last.beat, last.tempo) == (0, 0, 0, 0, 0, 0)


def test_nan_and_inf_input_gives_finite_features() -> None:
    audio, _ = click_track(120.0, 5.0)
    audio[::97] = np.nan
    audio[5::211] = np.inf
    (rows,) = feed(audio)
    for _, fr in rows:
        values = [fr.rms, fr.onset, fr.centroid, fr.low, fr.mid, fr.high, fr.flux, fr.beat, fr.tempo]
        assert all(np.isfinite(v) for v in values)
        assert all(0.0 <= v <= 1.0 for v in (fr.low, fr.mid, fr.high, fr.flux, fr.beat))


def test_reset_and_a_restarted_ring_start_over() -> None:
    audio, _ = click_track(120.0, 5.0)
    f = AudioFeatures(SR)
    (rows,) = feed(audio, 60.0, f)
    assert rows[-1][1].tempo > 0.0 and rows[-1][1].beats > 0
    f.reset()
    ring = RingBuffer(10 * SR, SR)  # a fresh stream: the counter starts at 0 again
    ring.write(np.zeros(SR, np.float32))
    fr = f(ring)
    assert (fr.tempo, fr.beats, fr.beat, fr.flux) == (0.0, 0, 0.0, 0.0)


def test_flux_follows_onsets() -> None:
    audio, clicks = click_track(60.0, 4.0, noise=0.0)
    (rows,) = feed(audio, 200.0)
    at_click = [fr.flux for now, fr in rows if any(0.0 <= now - c <= 0.04 for c in clicks)]
    between = [fr.flux for now, fr in rows if all(abs(now - c) > 0.2 for c in clicks)]
    assert max(at_click) == 1.0 and max(between) == 0.0


def test_autocorrelation_is_librosas_without_importing_it() -> None:
    import librosa

    from engine.audio.features import autocorrelate

    x = np.random.default_rng(1).standard_normal(777)
    assert np.allclose(autocorrelate(x), librosa.autocorrelate(x), atol=1e-9)
