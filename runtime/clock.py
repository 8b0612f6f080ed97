"""Clocks for the scan engine: real time on a Pi, virtual time in simulations and tests.

Both expose the same interface. `now()` is monotonic seconds (the scan's timebase, used for
dt, staleness and timers); `wall()` is the calendar time (epoch seconds) matching `now()`,
used for schedules and tariffs. Blocks never read either: the engine hands them `t` and `dt`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    virtual: bool

    def now(self) -> float: ...

    def wall(self) -> float: ...

    def sleep_until(self, deadline: float) -> float:
        """Return once `now() >= deadline` (or at once if already past); returns `now()`."""
        ...


class RealClock:
    """Monotonic time; sleeps to absolute deadlines so that periods never drift."""

    virtual = False

    def __init__(self) -> None:
        self._wall_offset = time.time() - time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.monotonic() + self._wall_offset

    def sleep_until(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return time.monotonic()


class VirtualClock:
    """Time that advances only when the engine sleeps: each period costs no wall time."""

    virtual = True

    def __init__(self, start_wall_s: float = 1_767_225_600.0, start_s: float = 0.0):
        # Default start: 2026-01-01T00:00:00Z, so that simulated days begin at midnight.
        self._t = start_s
        self._wall_offset = start_wall_s - start_s

    def now(self) -> float:
        return self._t

    def wall(self) -> float:
        return self._t + self._wall_offset

    def sleep_until(self, deadline: float) -> float:
        if deadline > self._t:
            self._t = deadline
        return self._t

    def advance(self, seconds: float) -> None:
        """Let time pass outside the scan (tests use it to age inputs)."""
        self._t += seconds
