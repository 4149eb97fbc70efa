"""`NativeStderr`: what PortAudio and ALSA print from C while a missing device is reopened, rate-limited.

PortAudio (its `PA_ENSURE` debug lines) and ALSA's plugins write straight to the process's fd 2 from C;
Debian's libportaudio exports no hook to redirect that, so the only way to keep it out of the operator's
console is to point fd 2 elsewhere while the call runs. `capture(what)` does exactly that around one
bounded native call (open a stream, re-initialise PortAudio): fd 2 goes into an anonymous temporary file
(a file, not a pipe, so a chatty library can never block on a full pipe), is restored right after, and
the text is sorted: lines that look native (`ALSA lib`, `Expression '…' failed`, `PaAlsa…`) go through a
`RateLimitedLog` (one line per `interval_s`, the rest counted), every other line — the engine's own
logging from other threads during those milliseconds — is written back to the real stderr unchanged, so
nothing of ours is lost, only delayed by the length of the call.

Why a process-wide fd-2 swap is acceptable here: it lasts one PortAudio open call (a few ms to a few
hundred ms against a missing PulseAudio source; `max_capture_s` in `stats()` shows the longest), only the
mic pump thread makes such calls, captures are serialised by a lock, and the engine starts no subprocesses
that could inherit the temporary fd. What PortAudio prints from its own callback thread when a stream dies
(three lines once per outage) happens outside any capture and still reaches stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from engine.ratelog import RateLimitedLog

log = logging.getLogger("synesthesia.audio")

NATIVE_LINE = re.compile(r"^(ALSA lib |Expression '|PaAlsa|ALSA |Cannot connect to server|jack)")
STDERR_FD = 2


class NativeStderr:
    """Capture fd 2 around native audio calls; native lines rate-limited into the log, the rest passed on."""

    _lock = threading.Lock()  # one capture at a time in the process: fd 2 is process-wide

    def __init__(self, interval_s: float = 30.0, logger: logging.Logger = log) -> None:
        self._log = RateLimitedLog(logger, interval_s)
        self.lines = 0  # native lines captured (and logged or counted)
        self.passed_on = 0  # other lines written back to stderr
        self.captures = 0
        self.max_capture_s = 0.0

    @contextlib.contextmanager
    def capture(self, what: str) -> Iterator[None]:
        """Redirect fd 2 while the block runs (one native call); sort and re-emit what it printed."""
        with self._lock:
            try:
                saved = os.dup(STDERR_FD)
            except OSError:  # no fd 2 at all (a daemon without stderr): nothing to protect
                saved = None
            if saved is None:
                yield
                return
            t0 = time.monotonic()
            with tempfile.TemporaryFile() as sink:
                _flush_stderr()
                os.dup2(sink.fileno(), STDERR_FD)
                try:
                    yield
                finally:
                    _flush_stderr()
                    os.dup2(saved, STDERR_FD)
                    os.close(saved)
                    self.captures += 1
                    self.max_capture_s = max(self.max_capture_s, time.monotonic() - t0)
                    sink.seek(0)
                    self._sort(what, sink.read().decode("utf-8", "replace"))

    def _sort(self, what: str, text: str) -> None:
        others: list[str] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            if NATIVE_LINE.match(line):
                self.lines += 1
                self._log.warning("native", "PortAudio/ALSA while %s: %s", what, line.strip())
            else:
                others.append(line)
        if others:
            self.passed_on += len(others)
            sys.stderr.write("\n".join(others) + "\n")
            _flush_stderr()

    def stats(self) -> dict[str, float | int]:
        return {
            "native_lines": self.lines,
            "held_back": sum(self._log.suppressed().values()),
            "captures": self.captures,
            "max_capture_s": round(self.max_capture_s, 3),
        }


def _flush_stderr() -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr must not break the pump
        sys.stderr.flush()
