"""`OwnedThread`: the one way the engine starts and stops a thread it owns.

A stop that times out must not let a second thread start beside the first: `stop()` says whether the
thread ended, and `start()` refuses while the previous thread still lives. Each start makes a fresh stop
`Event` and hands it to the target, so an old thread that finally wakes still sees its own stop (a cleared,
shared Event would let it run on beside its successor). An exception that ends the target is kept
(`error`) for a supervisor to read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger("synesthesia.threads")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while the show runs. Its calls here are small (band energies, the colour
    grade in blocks), and on two cores a second BLAS thread only spins waiting for a core the generator or
    the analysis holds: at 1280x720 the audio features' 40-band product cost the render thread ~8 ms a frame
    with two BLAS threads. ONNX Runtime and torch keep their own pools."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


class ThreadStillRunningError(RuntimeError):
    """`start()` while the previous thread of the same owner has not ended."""


class OwnedThread:
    """One owned thread at a time running `target(stop_event)`; `wake` is called after a stop is asked for
    (to interrupt a wait on something other than the stop event)."""

    def __init__(
        self,
        target: Callable[[threading.Event], None],
        name: str,
        daemon: bool = True,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.name = name
        self.daemon = daemon
        self.wake = wake
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """Started and not (successfully) stopped since; the thread may have ended on its own."""
        return self._thread is not None

    @property
    def stop_event(self) -> threading.Event:
        """The current thread's stop event."""
        return self._stop

    def start(self) -> None:
        if self.alive:
            raise ThreadStillRunningError(f"thread {self.name!r} is still running; stop it first")
        self._stop = stop = threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._main, args=(stop,), name=self.name, daemon=self.daemon)
        self._thread.start()

    def _main(self, stop: threading.Event) -> None:
        try:
            self.target(stop)
        except Exception as exc:  # kept for the owner's supervisor; the thread ends here
            self.error = exc
            log.error("thread %s failed: %s: %s", self.name, type(exc).__name__, exc, exc_info=exc)

    def request_stop(self) -> None:
        self._stop.set()
        if self.wake is not None:
            self.wake()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to stop and wait up to `timeout`; True when it has ended (or never ran)."""
        thread = self._thread
        if thread is None:
            return True
        self.request_stop()
        if thread is not threading.current_thread():
            thread.join(timeout)
        if thread.is_alive():
            log.warning("thread %s did not stop within %.1f s", self.name, timeout)
            return False
        self._thread = None
        return True
