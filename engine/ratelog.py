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
    """At most one line per key every `interval_s`; the next one says how many were suppressed."""

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
            msg += f" (+{suppressed} similar in the last {self.interval_s:.0f} s)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, *args: Any, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def error(self, key: str, msg: str, *args: Any, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def suppressed(self) -> dict[str, int]:
        """Lines held back since each key was last written."""
        with self._lock:
            return dict(self._suppressed)
