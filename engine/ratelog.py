"""`RateLimitedLog`: at most one line per kind of problem every `interval_s`, with a count of the rest.

For problems that can repeat at packet or window rate (a hostile OSC sender, a failing peer, a broken
stage): the first occurrence is logged in full (traceback included when given), the repeats within the
interval are counted, and the next line says how many were suppressed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """At most one line per key every `interval_s`; the next one says how many were suppressed.

    Keys name a kind of problem, never a sender: a flood from a new source port per packet must not buy a
    line per packet.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: Any, exc_info: BaseException | None = None) -> bool:
        """Log unless `key` was logged less than `interval_s` ago; True when it was written."""
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(key, 0.0):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._next[key] = now + self.interval_s
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += f" ({suppressed} more {key} suppressed in the last {self.interval_s:.0f} s)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, *args: Any, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def error(self, key: str, msg: str, *args: Any, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def flush(self) -> None:
        """One summary line per key whose interval is over and which held lines back (call it while idle)."""
        now = time.monotonic()
        with self._lock:
            due = [k for k, n in self._suppressed.items() if n and now >= self._next.get(k, 0.0)]
            counts = {k: self._suppressed.pop(k) for k in due}
            for k in due:
                self._next[k] = now + self.interval_s
        for key, n in counts.items():
            self.logger.warning("%d more %s suppressed in the last %.0f s", n, key, self.interval_s)

    def suppressed(self) -> dict[str, int]:
        """Lines held back since each key was last written."""
        with self._lock:
            return dict(self._suppressed)
