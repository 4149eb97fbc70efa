"""Preallocated mono float32 ring buffer between a capture thread (one writer) and readers.

`write` is what a PortAudio callback may call: one or two slice copies into the preallocated array, an
integer update and, only when someone is waiting, a short notify. No allocation, no logging.

Readers ask for the last N samples into their own buffer (`read_last`), or for the N samples that end at
a given absolute index (`read_ending_at`), so a window's time is known exactly: `written` counts every
sample ever written, and `time_of(index)` converts an absolute index to the monotonic clock using the
time of the latest write. Data is consistent as long as a reader copies before the writer laps it
(`capacity - N` samples later; seconds at the sizes the engine uses).
"""

from __future__ import annotations

import threading
import time

import numpy as np


class RingBuffer:
    """Single-writer, many-reader ring of float32 samples with an absolute write counter."""

    def __init__(self, capacity: int, sample_rate: int = 22050) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = int(capacity)
        self.sample_rate = int(sample_rate)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0  # total samples ever written; updated after the copy so readers never see stale data
        self._last_write_t = 0.0  # time.monotonic() of the latest write (its last sample)
        self._cond = threading.Condition(threading.Lock())
        self._waiters = 0
        self._consumed = 0  # absolute index up to which the window reader is done (see `wait_room`)

    @property
    def written(self) -> int:
        """Total samples written since construction or `reset` (the absolute index of the next sample)."""
        return self._written

    @property
    def last_write_time(self) -> float:
        return self._last_write_t

    def write(self, block: np.ndarray, t: float | None = None) -> None:
        """Append samples (a 1-D float32 array or view). `t`: monotonic time of its last sample (default now)."""
        n = block.shape[0]
        if n == 0:
            return
        skipped = max(0, n - self.capacity)  # only the newest `capacity` samples can be kept
        if skipped:
            block = block[skipped:]
            n = self.capacity
        start = (self._written + skipped) % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = block[:first]
        if first < n:
            self._data[: n - first] = block[first:]
        self._last_write_t = time.monotonic() if t is None else t
        self._written += n + skipped
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, index: int, timeout: float) -> bool:
        """Block until `written >= index` or `timeout` seconds pass; True when the samples are there."""
        if self._written >= index:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            try:
                while self._written < index:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    # bounded wait: a writer that checked `_waiters` just before we registered is caught here
                    self._cond.wait(min(left, 0.05))
            finally:
                self._waiters -= 1
        return True

    @property
    def consumed(self) -> int:
        return self._consumed

    def mark_consumed(self, index: int) -> None:
        """The window reader is done with everything before `index` (wakes a free-running writer)."""
        self._consumed = index
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    def wait_room(self, ahead: int, timeout: float) -> bool:
        """For free-running writers: block until `written - consumed < ahead` (True) or `timeout` (False).

        Keeps a file read faster than real time from overwriting, or racing past, unread windows.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            try:
                while self._written - self._consumed >= ahead:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.05))
            finally:
                self._waiters -= 1
        return True

    def read_ending_at(self, end: int, out: np.ndarray) -> int:
        """Copy the `len(out)` samples ending at absolute index `end` into `out`.

        Samples from before the start of the stream, or already overwritten, are zeros. Returns how many
        of them were real (len(out) when all were).
        """
        n = out.shape[0]
        if n > self.capacity:
            raise ValueError(f"cannot read {n} samples from a ring of {self.capacity}")
        end = min(end, self._written)
        oldest = max(0, self._written - self.capacity)
        start = end - n
        valid_from = max(start, oldest)
        pad = valid_from - start
        if pad >= n:
            out[:] = 0.0
            return 0
        if pad:
            out[:pad] = 0.0
        i = valid_from % self.capacity
        count = n - pad
        first = min(count, self.capacity - i)
        out[pad : pad + first] = self._data[i : i + first]
        if first < count:
            out[pad + first :] = self._data[: count - first]
        return count

    def read_last(self, out: np.ndarray) -> int:
        """Copy the newest `len(out)` samples into `out`; returns the absolute index of the end (exclusive)."""
        end = self._written
        self.read_ending_at(end, out)
        return end

    def time_of(self, index: int) -> float:
        """Monotonic time at which absolute sample `index` was (or will be) captured, from the latest write."""
        return self._last_write_t - (self._written - index) / self.sample_rate

    def reset(self) -> None:
        """Forget everything (zeros, counter back to 0). Only while no writer is running."""
        self._data[:] = 0.0
        self._written = 0
        self._last_write_t = 0.0
        self._consumed = 0
