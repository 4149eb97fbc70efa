"""The analysis thread: every hop, window -> front end -> encoder -> tracker -> latest-value slot + sender.

A stage failing on one window with a recoverable error (`RECOVERABLE`: bad input, a failed inference
call) is logged rate-limited (first time with its traceback, then once a minute), counted per stage and
shown in `stats()`; the loop goes on with the next window. After `FALLBACK_AFTER` encoder failures in a
row the `fallback` callback may hand over another runner (a backend that fails falls back loudly). Any
other exception is a real failure: it ends the thread (`failure` says why) so a supervisor can restart the
stage (the Engine does, engine/kiosk.py) instead of a loop spinning on a broken state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar

import numpy as np

from engine.analysis.nearest import ArtIndex
from engine.analysis.predict import WindowPredictor
from engine.analysis.state import EmotionState, EmotionTracker
from engine.audio.windows import SlidingWindows
from engine.inference.base import Runner
from engine.io.schema import OscAddresses, Topic, emotion_json, emotion_osc
from engine.io.sender import Sender
from engine.ratelog import RateLimitedLog
from engine.threads import OwnedThread
from engine.timing import StageTimer

log = logging.getLogger("synesthesia.analysis")

T = TypeVar("T")
ANALYSIS_TORCH_THREADS = 1  # see AnalysisLoop: the analysis thread runs torch single-threaded
FALLBACK_AFTER = 3
CLIPPED_SHARE = 0.001  # a window with more full-scale samples than this counts as clipped
LOG_EVERY_S = 60.0
# per-window errors: bad input (ValueError, ArithmeticError) and failed inference calls (torch and ONNX
# Runtime raise RuntimeError); the fallback runner covers a backend that keeps failing
RECOVERABLE: tuple[type[Exception], ...] = (ValueError, ArithmeticError, RuntimeError)


def with_torch_threads(n: int, fn: Callable[[], T]) -> T:
    """Run `fn` with `n` torch intra-op threads on this thread (restored after), e.g. to warm up and time a
    backend the way the analysis thread will run it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


class LatestSlot(Generic[T]):
    """Latest-value slot: the writer replaces, readers take the newest. Nothing queues up, nobody blocks
    (a render loop that is slower than the analysis simply skips states; one that is faster sees repeats)."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._version = 0
        self._cond = threading.Condition()

    def publish(self, value: T) -> None:
        with self._cond:
            self._value = value
            self._version += 1
            self._cond.notify_all()

    def get(self) -> T | None:
        return self._value

    @property
    def version(self) -> int:
        return self._version

    def wait_newer(self, version: int, timeout: float) -> tuple[T | None, int]:
        """Block until the version passes `version` (or `timeout`); returns (value, version)."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > version, timeout)
            return self._value, self._version


class AnalysisLoop:
    """Owns the analysis thread; `step()` is one hop and can be driven directly (tests, bench)."""

    def __init__(
        self,
        windows: SlidingWindows,
        predictor: WindowPredictor,
        tracker: EmotionTracker,
        sender: Sender | None = None,
        addresses: OscAddresses | None = None,
        art: ArtIndex | None = None,
        timer: StageTimer | None = None,
        fallback: Callable[[Runner], Runner | None] | None = None,
        nearest_k: int = 3,
        torch_threads: int | None = ANALYSIS_TORCH_THREADS,
    ) -> None:
        """`torch_threads`: intra-op threads for this thread's torch work (None: leave torch's default).

        One by default: the front end is ~1 ms of work, and an intra-op pool on top of the engine's own
        threads oversubscribes small machines; on 2 busy cores two threads measured p95 ~200 ms against
        ~5 ms for one. The setting is per thread (OpenMP), so the render loop keeps its own.
        """
        self.windows = windows
        self.predictor = predictor
        self.tracker = tracker
        self.sender = sender
        self.addresses = addresses or OscAddresses()
        self.art = art
        self.timer = timer or StageTimer()
        self.fallback = fallback
        self.nearest_k = nearest_k
        self.torch_threads = torch_threads
        self.latest: LatestSlot[EmotionState] = LatestSlot()
        self._buf = np.zeros(windows.window, dtype=np.float32)
        self._thread = OwnedThread(self._run, "analysis")
        self._log = RateLimitedLog(log, LOG_EVERY_S)
        self._swap: tuple[WindowPredictor, EmotionTracker, ArtIndex | None] | None = None
        self.reset()

    def reset(self) -> None:
        self.windows_done = 0
        self.waits = 0  # hops where no audio arrived in time (source stalled or lost)
        self.nonfinite_windows = 0
        self.clipped_windows = 0
        self.silent_windows = 0
        self.errors: dict[str, int] = {}
        self.last_error: str | None = None
        self.notices: list[str] = []  # backend fallbacks and the like, shown in status
        self._encoder_fail_run = 0
        self.tracker.reset()

    # -- one hop ----------------------------------------------------------------------------------------

    def _failed(self, stage: str, exc: BaseException) -> None:
        self.errors[stage] = self.errors.get(stage, 0) + 1
        self.last_error = f"{stage}: {type(exc).__name__}: {exc}"
        self._log.error(stage, "analysis stage %s failed (%d so far)", stage, self.errors[stage], exc_info=exc)

    def _maybe_fall_back(self) -> None:
        self._encoder_fail_run += 1
        if self._encoder_fail_run < FALLBACK_AFTER or self.fallback is None:
            return
        self._encoder_fail_run = 0
        old = self.predictor.runner
        new = self.fallback(old)
        if new is not None:
            self.predictor.runner = new
            msg = f"encoder {old.describe()} failed {FALLBACK_AFTER} times in a row; fell back to {new.describe()}"
            log.warning(msg)
            self.notices.append(msg)

    def swap(self, predictor: WindowPredictor, tracker: EmotionTracker, art: ArtIndex | None) -> None:
        """Hand over another bundle's stages; the analysis thread takes them before its next window, so no
        window mixes the two (the web console's live bundle swap)."""
        self._swap = (predictor, tracker, art)

    def step(self, timeout: float = 1.0) -> EmotionState | None:
        """Wait for the next window and analyse it; None when no audio came or a stage failed."""
        if (swap := self._swap) is not None:
            self._swap = None
            self.predictor, self.tracker, self.art = swap
            self._encoder_fail_run = 0
        mark = self.windows(self._buf, timeout)
        if mark is None:
            self.waits += 1
            return None
        t0 = time.perf_counter()
        self.timer.add("capture_to_window", (time.monotonic() - mark.captured_at) * 1000.0)
        try:
            fe = self.predictor.frontend(self._buf)
        except RECOVERABLE as exc:
            self._failed("frontend", exc)
            return None
        t1 = time.perf_counter()
        try:
            pred = self.predictor.predict(fe).row(0)
        except RECOVERABLE as exc:
            self._failed("encoder", exc)
            self._maybe_fall_back()
            return None
        self._encoder_fail_run = 0
        t2 = time.perf_counter()
        try:
            state = self.tracker(pred, mark.end / self.windows.ring.sample_rate)
            state = replace(state, window_end=mark.end, captured_at=mark.captured_at)
            nearest = self.art.nearest(state.shared, self.nearest_k) if self.art is not None else None
        except RECOVERABLE as exc:
            self._failed("tracker", exc)
            return None
        t3 = time.perf_counter()
        self.windows_done += 1
        self.nonfinite_windows += pred.nonfinite > 0
        self.clipped_windows += pred.clipped > CLIPPED_SHARE
        self.silent_windows += pred.silent
        self.latest.publish(state)
        if self.sender is not None:
            a = self.addresses
            self.sender.publish(
                Topic.EMOTION,
                captured_at=mark.captured_at,
                build=lambda: (emotion_json(state, nearest), emotion_osc(a, state, nearest)),
            )
        t4 = time.perf_counter()
        for stage, ms in (("frontend", t1 - t0), ("encoder", t2 - t1), ("tracker", t3 - t2), ("publish", t4 - t3)):
            self.timer.add(stage, ms * 1000.0)
        return state

    # -- thread -----------------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        if self.torch_threads is not None:
            import torch

            torch.set_num_threads(self.torch_threads)
        while not stop.is_set():
            self.step(timeout=0.25)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop the thread; False when it is still inside a stage call after `timeout`."""
        return self._thread.stop(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.alive

    @property
    def failure(self) -> BaseException | None:
        """The exception that ended the thread (None while it runs or after a clean stop)."""
        return self._thread.error

    def stats(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "windows": self.windows_done,
            "skipped_hops": self.windows.skipped_total,
            "waits": self.waits,
            "silent_windows": self.silent_windows,
            "bad_input": {"nonfinite_windows": self.nonfinite_windows, "clipped_windows": self.clipped_windows},
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "failure": None if self.failure is None else f"{type(self.failure).__name__}: {self.failure}",
            "encoder": self.predictor.runner.describe(),
            "notices": list(self.notices[-10:]),
        }
