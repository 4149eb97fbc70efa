"""Unattended operation (`--kiosk`): log file with rotation, and in-process restarts of failed stages.

A kiosk runs for weeks without anyone watching. Two things make that work here:

- `setup_kiosk_logging` sends the log to a size-rotated file (kiosk.log_file, log_max_mb, log_backups)
  as well as stderr (which systemd's journal keeps);
- `StageSupervisor` turns a stage's exception into a counted, logged restart after a backoff
  (0.5 s doubling up to 30 s; a healthy stretch resets the backoff). The render loop uses it for the
  render stage (the window stays open, showing the last image) and the Engine for the analysis thread
  (`Engine.supervise_analysis`, from every `tick()`, headless or rendering).
  Past `restart_limit` restarts the error propagates: the process exits non-zero and systemd
  (Restart=always) starts it again.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from engine.config import KioskSettings

log = logging.getLogger("synesthesia.kiosk")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_kiosk_logging(settings: KioskSettings, level: str = "INFO") -> logging.Handler:
    """Add a RotatingFileHandler for the kiosk log to the root logger; returns it (remove it to undo)."""
    path = Path(settings.log_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=int(settings.log_max_mb * 1024 * 1024), backupCount=settings.log_backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, logging.getLevelName(level)))
    log.info("kiosk log: %s (rotating at %.1f MB, %d backups)", path, settings.log_max_mb, settings.log_backups)
    return handler


class StageSupervisor:
    """Counts failures of one stage and says when to restart it (exponential backoff, limit)."""

    def __init__(self, name: str, limit: int, backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self.name = name
        self.limit = int(limit)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self.failures = 0
        self._due: float | None = None
        self._streak = 0
        self.last_error = ""

    @property
    def failed(self) -> bool:
        return self._due is not None

    def fail(self, exc: BaseException, now: float) -> None:
        """Record a failure; raises it again when the limit is spent."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.restarts >= self.limit:
            log.error("%s stage failed %d times; giving up: %s", self.name, self.failures, self.last_error)
            raise exc
        delay = min(self.max_backoff_s, self.backoff_s * 2.0**self._streak)
        self._streak += 1
        self._due = now + delay
        # not log.exception: this runs outside the except block (the analysis thread's error is read later)
        log.error("%s stage failed (%s); restarting in %.1f s", self.name, self.last_error, delay, exc_info=exc)

    def due(self, now: float) -> bool:
        return self._due is not None and now >= self._due

    def restarted(self) -> None:
        self._due = None
        self.restarts += 1
        log.warning("%s stage restarted (%d so far)", self.name, self.restarts)

    def healthy(self) -> None:
        """A frame went through: the next failure starts the backoff from the beginning."""
        self._streak = 0
