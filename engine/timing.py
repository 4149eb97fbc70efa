"""Rolling per-stage timings (p50/p95/max over the last N samples), published in `status`."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class StageTimer:
    """Milliseconds per named stage; `add` from the stage's thread, `summary` from any thread.

    Each stage keeps its last `window` samples (a bounded deque: old samples fall off), so the numbers
    describe the recent past of a show that runs for weeks, not its whole life.
    """

    def __init__(self, window: int = 256) -> None:
        self.window = window
        self._samples: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        q = self._samples.get(stage)
        if q is None:
            with self._lock:
                q = self._samples.setdefault(stage, deque(maxlen=self.window))
        q.append(float(ms))
        self._counts[stage] = self._counts.get(stage, 0) + 1

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {p50, p95, max, n}} in ms (n: samples ever recorded)."""
        with self._lock:
            items = list(self._samples.items())
        out = {}
        for stage, q in items:
            values = np.fromiter(tuple(q), dtype=np.float64)
            if values.size == 0:
                continue
            p50, p95 = np.percentile(values, [50, 95])
            out[stage] = {
                "p50": round(float(p50), 3),
                "p95": round(float(p95), 3),
                "max": round(float(values.max()), 3),
                "n": self._counts.get(stage, 0),
            }
        return out

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._counts.clear()
