"""Time as a value passed in, the way SimPy's ``Environment`` owns ``now``.

Why: a service that calls ``time.time()`` itself can only be tested by sleeping, and a test that sleeps is
slow and flaky on a loaded machine.  Services take a :class:`Clock` (the composition root, ``create_app``,
gives the system clock); a test gives a :class:`ManualClock` and moves it instead of waiting.

``time()`` is Unix seconds (what rows and transfers record); ``monotonic()`` never goes back and is for
intervals and cache ages only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Unix seconds now."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, time-to-live)."""
        ...


class SystemClock:
    """The machine's clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A test clock: it stands still until the test moves it (``advance`` or ``now = ...``)."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now
        self._elapsed = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds
        self._elapsed += seconds


SYSTEM_CLOCK = SystemClock()


def utc_now(clock: Clock) -> datetime:
    """``clock``'s now as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.time(), UTC)
