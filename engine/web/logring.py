"""`LogRing`: a logging.Handler that keeps the last lines of the engine's log for the web console."""

from __future__ import annotations

import logging
import threading
from collections import deque

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogRing(logging.Handler):
    """The newest `size` formatted records; `lines()` and `seq` (records seen) are safe from any thread."""

    def __init__(self, size: int = 50, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
        self._lines: deque[str] = deque(maxlen=size)
        self._ring_lock = threading.Lock()
        self.seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is dropped, as logging itself would report
            self.handleError(record)
            return
        with self._ring_lock:
            self._lines.append(line.split("\n", 1)[0][:500])  # one line each; tracebacks stay in the log file
            self.seq += 1

    def add_line(self, line: str) -> None:
        """An operator line (engine.console.say) shown beside the log records."""
        with self._ring_lock:
            self._lines.append(line[:500])
            self.seq += 1

    def lines(self) -> list[str]:
        with self._ring_lock:
            return list(self._lines)
