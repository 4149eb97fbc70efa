"""Sliding analysis windows over a RingBuffer: the last `window` samples, every `hop` samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.audio.ringbuffer import RingBuffer


@dataclass(frozen=True)
class WindowMark:
    """Where a window lies in the stream."""

    end: int  # absolute index one past its last sample
    captured_at: float  # time.monotonic() when its last sample reached the ring
    skipped: int  # hops dropped just before this one because the reader fell behind
    length: int = 0  # samples of audio in it: the window, or fewer for an early window (then zero-padded)


class SlidingWindows:
    """Stage: `__call__(out, timeout)` waits for the next hop and fills `out` (len = window) with the window.

    Window ends lie on a grid: `window`, `window + hop`, ... (in absolute samples). A reader that falls more
    than one hop behind jumps to the newest window (live audio is worth more than stale audio) and the
    skipped hops are counted. Each read marks the ring as consumed up to the window's end, which is what
    free-running (not real-time) sources use to wait instead of overwriting unread audio.

    With `early` samples (> 0), the grid also runs below the first full window, from the first grid point
    at or after `early`: such a window holds the whole stream so far, zero-padded at the end exactly as a
    file shorter than the window is analysed offline, so the first emotion arrives after `early` samples of
    audio instead of a whole window (1 s instead of 3 s at start-up and after the ring is reset).
    """

    def __init__(self, ring: RingBuffer, window: int, hop: int, early: int = 0) -> None:
        if window <= 0 or hop <= 0:
            raise ValueError("window and hop must be > 0")
        if window > ring.capacity:
            raise ValueError(f"window {window} is longer than the ring ({ring.capacity})")
        if early < 0:
            raise ValueError("early must be >= 0")
        self.ring = ring
        self.window = int(window)
        self.hop = int(hop)
        # the first end on the grid (window - k*hop) that holds at least `early` samples; `window` when off
        self.first_end = self.window
        if early:
            self.first_end = max(self.window - ((self.window - early) // self.hop) * self.hop, 1)
        self.skipped_total = 0
        self.reset()

    def reset(self) -> None:
        """Start again at the newest grid point (after a ring reset, at the first (early) window)."""
        written = self.ring.written
        self._next_end = self.first_end if written < self.first_end else self._grid_at_or_before(written)
        self.ring.mark_consumed(max(0, self._next_end - self.hop))

    def _grid_at_or_before(self, index: int) -> int:
        return self.window + ((index - self.window) // self.hop) * self.hop

    @property
    def next_end(self) -> int:
        return self._next_end

    def __call__(self, out: np.ndarray, timeout: float = 1.0) -> WindowMark | None:
        """Fill `out` with the next window; None when its last sample has not arrived within `timeout`."""
        if out.shape[0] != self.window:
            raise ValueError(f"out must hold {self.window} samples, got {out.shape[0]}")
        if not self.ring.wait_for(self._next_end, timeout):
            return None
        written = self.ring.written
        skipped = 0
        if written - self._next_end >= self.hop:
            newest = self._grid_at_or_before(written)
            skipped = (newest - self._next_end) // self.hop
            self._next_end = newest
        end = self._next_end
        if end >= self.window:
            self.ring.read_ending_at(end, out)
        else:  # an early window: the stream from its start, then zeros (offline's short-file layout)
            self.ring.read_ending_at(end, out[:end])
            out[end:] = 0.0
        self.ring.mark_consumed(end)
        self._next_end = end + self.hop
        self.skipped_total += skipped
        return WindowMark(end=end, captured_at=self.ring.time_of(end), skipped=skipped, length=min(end, self.window))
