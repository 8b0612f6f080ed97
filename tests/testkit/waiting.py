"""Waiting in tests: on the condition the test needs, with a timeout; never a fixed delay.

`wait_until` polls a condition until it holds and fails the test with a clear message when the
timeout passes. The timeout is only paid on failure, so make it generous: the machines that run
the tests are loaded. `holds_for` is for the tests that check that something does NOT happen:
it checks, for a bounded time, that a condition stays true, and fails as soon as it does not.
Both sleep `poll_s` between checks; that is polling, not a fixed wait.
"""

from __future__ import annotations

import linecache
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 0.02


def wait_until(condition: Callable[[], Any], timeout_s: float = 5.0, what: str | None = None,
               poll_s: float = POLL_S) -> Any:
    """Poll `condition` until it returns something truthy and return that; fail the test with
    `what` (by default the condition's source line) when it has not within `timeout_s`."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            raise AssertionError(f"not within {timeout_s} s ({now - started:.1f} s waited): "
                                 f"{what or _describe(condition)}")
        time.sleep(min(poll_s, max(deadline - now, 0.0)))


def holds_for(condition: Callable[[], Any], duration_s: float, what: str | None = None,
              poll_s: float = POLL_S) -> None:
    """Check that `condition` stays truthy, polled, for `duration_s`; fail at the first check it
    does not. A condition may also assert itself, for a more precise message."""
    started = time.monotonic()
    deadline = started + duration_s
    while True:
        if not condition():
            raise AssertionError(f"stopped holding after {time.monotonic() - started:.2f} of {duration_s} s: "
                                 f"{what or _describe(condition)}")
        now = time.monotonic()
        if now >= deadline:
            return
        time.sleep(min(poll_s, deadline - now))


def _describe(condition: Callable[[], Any]) -> str:
    """The line a condition was written on, e.g. `wait_until(lambda: driver.poll_count > 0)`."""
    code = getattr(condition, "__code__", None)
    if code is None:
        return repr(condition)
    line = linecache.getline(code.co_filename, code.co_firstlineno).strip()
    return f"{line or condition.__qualname__} ({Path(code.co_filename).name}:{code.co_firstlineno})"
