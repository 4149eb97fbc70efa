"""Ring buffer, sliding windows and per-frame audio features."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.audio.features import AudioFeatures
from engine.audio.ringbuffer import RingBuffer
from engine.audio.windows import SlidingWindows

SR = 22050


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_write_wraps_and_read_last_returns_newest_in_order() -> None:
    ring = RingBuffer(10)
    ring.write(ramp(0, 7))
    ring.write(ramp(7, 7))  # wraps
    out = np.zeros(6, np.float32)
    assert ring.read_last(out) == 14
    assert out.tolist() == list(range(8, 14))
    assert ring.written == 14


def test_block_longer_than_capacity_keeps_the_newest_and_counts_all() -> None:
    ring = RingBuffer(8)
    ring.write(ramp(0, 20))
    out = np.zeros(8, np.float32)
    ring.read_last(out)
    assert out.tolist() == list(range(12, 20))
    assert ring.written == 20


def test_read_ending_at_pads_before_the_stream_and_overwritten_samples() -> None:
    ring = RingBuffer(10)
    ring.write(ramp(1, 4))
    out = np.full(6, -1.0, np.float32)
    assert ring.read_ending_at(4, out) == 4
    assert out.tolist() == [0, 0, 1, 2, 3, 4]
    ring.write(ramp(5, 10))  # written = 14, oldest kept = 4
    assert ring.read_ending_at(8, out) == 4  # samples 2 and 3 are gone
    assert out.tolist() == [0, 0, 5, 6, 7, 8]


def test_write_does_not_allocate_per_call() -> None:
    ring = RingBuffer(4096)
    data = ring._data
    block = np.ones((256, 2), np.float32)[:, 0]  # a strided view, as the capture callback passes
    for _ in range(100):
        ring.write(block)
    assert ring._data is data and ring.written == 25600


def test_time_of_maps_indices_to_capture_time() -> None:
    ring = RingBuffer(SR * 2, SR)
    ring.write(np.zeros(SR, np.float32), t=100.0)
    assert ring.time_of(SR) == pytest.approx(100.0)
    assert ring.time_of(SR // 2) == pytest.approx(99.5)


def test_wait_for_wakes_on_write_and_times_out() -> None:
    ring = RingBuffer(100)
    assert not ring.wait_for(10, timeout=0.05)
    threading.Timer(0.05, lambda: ring.write(np.zeros(10, np.float32))).start()
    assert ring.wait_for(10, timeout=5.0)


def test_windows_on_the_hop_grid_with_their_end_index() -> None:
    ring = RingBuffer(100)
    win = SlidingWindows(ring, window=10, hop=5)
    out = np.zeros(10, np.float32)
    ring.write(ramp(0, 9))
    assert win(out, timeout=0.01) is None  # not a full window yet
    ends = []
    for upto in (12, 17, 20):
        ring.write(ramp(ring.written, upto - ring.written))
        ends.append(win(out, timeout=0.01).end)
    assert ends == [10, 15, 20] and win.skipped_total == 0
    assert out.tolist() == list(range(10, 20))
    assert win(out, timeout=0.01) is None


def test_early_windows_hold_the_stream_so_far_padded_at_the_end() -> None:
    ring = RingBuffer(100)
    win = SlidingWindows(ring, window=12, hop=3, early=4)  # grid 6, 9 (early), 12, 15 (full)
    out = np.full(12, -1.0, np.float32)
    ring.write(ramp(0, 5))
    assert win(out, timeout=0.01) is None  # 5 samples: below the first early end
    ring.write(ramp(5, 1))
    mark = win(out, timeout=0.01)
    assert (mark.end, mark.length) == (6, 6)
    assert out.tolist() == [0, 1, 2, 3, 4, 5] + [0] * 6  # the offline layout of a 6-sample file
    marks = []
    for _ in range(3):
        ring.write(ramp(ring.written, 3))
        marks.append(win(out, timeout=0.01))
    assert [(m.end, m.length) for m in marks] == [(9, 9), (12, 12), (15, 12)]
    assert out.tolist() == list(range(3, 15))
    # without `early` the first window is the first full one
    ring2 = RingBuffer(100)
    plain = SlidingWindows(ring2, window=12, hop=3)
    ring2.write(ramp(0, 9))
    assert plain(out, timeout=0.01) is None
    ring2.write(ramp(9, 3))
    assert plain(out, timeout=0.01).end == 12


def test_a_reader_that_falls_behind_jumps_to_the_newest_window_and_counts() -> None:
    ring = RingBuffer(1000)
    win = SlidingWindows(ring, window=10, hop=5)
    out = np.zeros(10, np.float32)
    ring.write(ramp(0, 42))
    mark = win(out, timeout=0.01)
    assert mark.end == 40 and mark.skipped == 6
    assert win.skipped_total == 6
    assert out.tolist() == list(range(30, 40))


def test_free_running_writer_waits_for_the_reader_so_no_window_is_skipped() -> None:
    ring = RingBuffer(SR * 4, SR)
    win = SlidingWindows(ring, window=SR, hop=SR // 4)
    signal = np.random.default_rng(0).standard_normal(SR * 6).astype(np.float32)
    stop = threading.Event()

    def writer() -> None:
        pos = 0
        while pos < signal.size and not stop.is_set():
            if ring.wait_room(win.hop, timeout=0.1):
                ring.write(signal[pos : pos + 1000])
                pos += 1000

    th = threading.Thread(target=writer)
    th.start()
    out = np.zeros(SR, np.float32)
    ends = []
    try:
        while (m := win(out, timeout=5.0)) is not None and m.end <= signal.size - win.hop:
            ends.append(m.end)
            assert np.array_equal(out, signal[m.end - SR : m.end])
            time.sleep(0.001)  # a slow reader
    finally:
        stop.set()
        th.join(5)
    assert win.skipped_total == 0
    assert ends == list(range(SR, ends[-1] + 1, SR // 4)) and len(ends) >= 18


def test_reset_restarts_at_the_newest_grid_point() -> None:
    ring = RingBuffer(100)
    win = SlidingWindows(ring, window=10, hop=5)
    ring.write(ramp(0, 33))
    win.reset()
    assert win.next_end == 30


def test_audio_features_rms_centroid_onset() -> None:
    feats = AudioFeatures(SR)
    t = np.arange(4096) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    quiet = feats.from_samples(np.zeros(4096, np.float32))
    assert (quiet.rms, quiet.onset, quiet.centroid) == (0.0, 0.0, 0.0)
    first = feats.from_samples(tone)  # from silence to a tone: an onset
    steady = feats.from_samples(tone)  # the same again: none
    assert first.rms == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert first.onset > 0.5 and steady.onset < 0.05
    assert steady.centroid == pytest.approx(1000, rel=0.1)
    bad = tone.copy()
    bad[::7] = np.nan
    assert np.isfinite(feats.from_samples(bad).rms)


def test_audio_features_read_the_newest_samples_of_the_ring() -> None:
    ring = RingBuffer(SR, SR)
    ring.write(np.zeros(SR // 2, np.float32))
    feats = AudioFeatures(SR)
    assert feats(ring).rms == 0.0
    ring.write(np.full(2048, 0.25, np.float32))
    assert feats(ring).rms == pytest.approx(0.25, rel=1e-3)
