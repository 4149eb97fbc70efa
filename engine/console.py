"""Operator messages: one line on stderr that the operator must see whatever the log level (a fallback
taken, the source ended, where the show renders)."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """One line for the operator on stderr (independent of the log level)."""
    print(f"synesthesia: {message}", file=sys.stderr, flush=True)
