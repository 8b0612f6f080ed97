"""Clocks for the scan engine: real time on a Pi, virtual time in simulations and tests.

Both expose the same interface. `now()` is monotonic seconds (the scan's timebase, used for
deadlines, dt, staleness and timers); `wall()` is the calendar time (epoch seconds), used for
schedules, tariffs and the timestamps of events and telemetry. Blocks never read either: the
engine hands them `t` and `dt`, and programs the scan's `wall_s`.

The two are separate on purpose. A Pi has no battery-backed clock: it boots with a wrong
calendar (the last shutdown's, or one far off) and NTP steps it later. The real clock therefore
reads the system's wall clock on every call (never "monotonic plus the offset at start"), so a
step reaches the schedules in the next scan, while deadlines stay on the monotonic grid and do
not move. `ClockWatch` notices the step (the wall clock advanced more or less than the
monotonic one, by more than `STEP_THRESHOLD_S`), logs it, counts it and tells its listeners
(the event log); it also reads the kernel's synchronisation state (`sync()`), which decides
whether history may be pruned by age (runtime/events.py, runtime/grid_log.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import attrs

log = logging.getLogger(__name__)

STEP_THRESHOLD_S = 1.0  # wall minus monotonic advance between two scans above this: a step
SYNC_EVERY_S = 1.0  # how often the watch asks the clock for its synchronisation state


@attrs.frozen
class ClockSync:
    """The wall clock's synchronisation as the kernel keeps it (adjtimex)."""

    synced: bool  # an NTP (or PTP, GPS) daemon disciplines the clock and its error is bounded
    offset_s: float = 0.0  # the daemon's last measured offset that the kernel is still slewing away
    max_error_s: float = 16.0  # the kernel's bound on the clock's error (16 s: unsynchronised)


UNKNOWN_SYNC = ClockSync(False)


class Clock(Protocol):
    virtual: bool

    def now(self) -> float: ...

    def wall(self) -> float: ...

    def sleep_until(self, deadline: float) -> float:
        """Return once `now() >= deadline` (or at once if already past); returns `now()`."""
        ...

    def sync(self) -> ClockSync: ...


class RealClock:
    """Monotonic time for deadlines (sleeps to absolute deadlines so that periods never drift)
    and the system's wall clock, read on every call, for calendar time.

    Tests inject `wall` (and `sync`) to move the calendar without touching the machine.
    """

    virtual = False

    def __init__(self, wall: Callable[[], float] = time.time,
                 sync: Callable[[], ClockSync] | None = None):
        self._wall = wall
        self._sync = sync or kernel_clock_sync

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return self._wall()

    def sleep_until(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return time.monotonic()

    def sync(self) -> ClockSync:
        return self._sync()


class VirtualClock:
    """Time that advances only when the engine sleeps: each period costs no wall time.

    `step_wall` moves the calendar alone, as NTP stepping the system clock would; `synced`
    is what `sync()` reports (a simulation's calendar is right by construction).
    """

    virtual = True

    def __init__(self, start_wall_s: float = 1_767_225_600.0, start_s: float = 0.0, synced: bool = True):
        # Default start: 2026-01-01T00:00:00Z, so that simulated days begin at midnight.
        self._t = start_s
        self._wall_offset = start_wall_s - start_s
        self.synced = synced

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

    def step_wall(self, seconds: float) -> None:
        """Step the calendar by `seconds` (either way); monotonic time does not move."""
        self._wall_offset += seconds

    def sync(self) -> ClockSync:
        return ClockSync(self.synced, 0.0, 0.0) if self.synced else UNKNOWN_SYNC


# --- the kernel's view (Linux adjtimex) ----------------------------------------------------------
class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (the `long` layout glibc's adjtimex takes, 32 and 64 bit)."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_reserved", ctypes.c_int * 11),
    ]


STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_ERROR = 5
_adjtimex: Any = None


def parse_timex(state: int, status: int, offset: int, maxerror_us: int) -> ClockSync:
    """What adjtimex's answer means: synchronised unless the clock state is TIME_ERROR or the
    status has STA_UNSYNC; the offset in ns with STA_NANO, else in us; maxerror in us."""
    synced = state != TIME_ERROR and not status & STA_UNSYNC
    offset_s = offset * (1e-9 if status & STA_NANO else 1e-6)
    return ClockSync(synced, offset_s, maxerror_us * 1e-6)


def kernel_clock_sync() -> ClockSync:
    """The kernel's synchronisation state of the system clock (read-only adjtimex: no
    privileges, about 2 us). Not synchronised wherever it cannot be read (not Linux)."""
    global _adjtimex
    if _adjtimex is None:
        _adjtimex = False
        if sys.platform.startswith("linux"):
            try:
                _adjtimex = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).adjtimex
            except (OSError, AttributeError) as exc:
                log.warning("cannot read the clock's synchronisation (adjtimex: %s): taken as not synchronised", exc)
    if not _adjtimex:
        return UNKNOWN_SYNC
    timex = _Timex()  # modes 0: read only
    state = _adjtimex(ctypes.byref(timex))
    if state < 0:
        return UNKNOWN_SYNC
    return parse_timex(state, timex.status, timex.offset, timex.maxerror)


# --- step detection ------------------------------------------------------------------------------
@attrs.frozen
class ClockEvent:
    """A clock step or a change of synchronisation, in the shape the event log records."""

    t_s: float
    wall_s: float
    name: str  # clock_step, clock_synchronized, clock_unsynchronized
    message: str
    severity: int = 1  # warning
    step_s: float = 0.0
    kind: str = "clock"
    source: str = "raspberry_pi"
    code: int = 0


def utc_text(wall_s: float) -> str:
    try:
        return datetime.fromtimestamp(wall_s, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{wall_s:.0f}"


class ClockWatch:
    """Once per scan: did the wall clock step, and is it synchronised?

    Between two scans the wall clock must advance as much as the monotonic clock (NTP slews at
    most 0.5 ms/s); a difference above `threshold_s` is a step. Each step is logged, counted and
    handed to the listeners as a `ClockEvent`; so is every change of the synchronisation state,
    read from the clock every `sync_every_s` of monotonic time. The figures go to the runtime
    tags `clock_synced`, `clock_offset_s`, `clock_max_error_s`, `clock_steps` and
    `clock_last_step_s` when the image has them.
    """

    def __init__(self, clock: Clock, tags: Any = None, threshold_s: float = STEP_THRESHOLD_S,
                 sync_every_s: float = SYNC_EVERY_S):
        self.clock = clock
        self.threshold_s = threshold_s
        self.sync_every_s = sync_every_s
        self.steps = 0
        self.last_step_s = 0.0
        self.state: ClockSync | None = None  # the last synchronisation read (None before the first scan)
        self.listeners: list[Callable[[ClockEvent], None]] = []
        self._t: float | None = None
        self._wall = 0.0
        self._sync_due = -math.inf
        get = getattr(tags, "get", lambda name: None)
        self._tags = {name: get(name) for name in
                      ("clock_synced", "clock_offset_s", "clock_max_error_s", "clock_steps", "clock_last_step_s")}

    @property
    def synced(self) -> bool:
        """Whether the clock was synchronised at the last read (asks the clock before the first scan)."""
        state = self.state
        return self.clock.sync().synced if state is None else state.synced

    def observe(self, t_s: float, wall_s: float) -> float:
        """Monotonic and wall time read together at a scan's start; returns the step (0.0 if none)."""
        step = 0.0
        if self._t is not None:
            step = round((wall_s - self._wall) - (t_s - self._t), 6)  # to the us: epoch floats carry 0.2 us
            if abs(step) > self.threshold_s:
                self._stepped(t_s, wall_s, step)
            else:
                step = 0.0
        self._t, self._wall = t_s, wall_s
        if t_s >= self._sync_due:
            self._sync_due = t_s + self.sync_every_s
            self._read_sync(t_s, wall_s)
        return step

    def _stepped(self, t_s: float, wall_s: float, step: float) -> None:
        self.steps += 1
        self.last_step_s = step
        expected = wall_s - step
        message = (f"wall clock stepped {step:+.3f} s ({utc_text(expected)} -> {utc_text(wall_s)} UTC); schedules, "
                   "tariffs and timestamps follow the new time from this scan on")
        log.warning("%s (step %d)", message, self.steps)
        for name, value in (("clock_steps", self.steps), ("clock_last_step_s", step)):
            tag = self._tags[name]
            if tag is not None:
                tag.set(value)
        self._tell(ClockEvent(t_s, wall_s, "clock_step", message, step_s=step))
        self._sync_due = -math.inf  # a step usually comes with a new synchronisation state: read it now

    def _read_sync(self, t_s: float, wall_s: float) -> None:
        try:
            state = self.clock.sync()
        except Exception as exc:  # noqa: BLE001 - the clock's diagnostics must never stop a scan
            log.warning("cannot read the clock's synchronisation: %s", exc)
            state = UNKNOWN_SYNC
        before, self.state = self.state, state
        tags = self._tags
        for name, value in (("clock_synced", state.synced), ("clock_offset_s", state.offset_s),
                            ("clock_max_error_s", state.max_error_s)):
            tag = tags[name]
            if tag is not None:
                tag.set(value)
        if before is not None and before.synced == state.synced:
            return
        if state.synced:
            message = (f"wall clock synchronized at {utc_text(wall_s)} UTC (offset {state.offset_s * 1e3:+.3f} ms, "
                       f"max error {state.max_error_s * 1e3:.1f} ms)")
            log.info("%s", message)
            if before is not None:
                self._tell(ClockEvent(t_s, wall_s, "clock_synchronized", message, severity=0))
        else:
            message = (f"wall clock not synchronized (reads {utc_text(wall_s)} UTC): schedules and timestamps "
                       "may be off, and no history is pruned by age until it is")
            log.warning("%s", message)
            self._tell(ClockEvent(t_s, wall_s, "clock_unsynchronized", message))

    def _tell(self, event: ClockEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener (the event log) must never stop the scan
                log.exception("clock event %s not delivered", event.name)
