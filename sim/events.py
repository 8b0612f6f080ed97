"""Scripted events: a time-ordered queue of ``EventConfig`` entries.

An event with time ``t_s`` is applied at the start of the first step that
begins at or after ``t_s`` (so the state read after the step ending at
``t_s`` does not yet show it; the state after the next step does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sim.config import EventConfig
from sim.variables import VariableInfo

#: Tolerance for accumulated floating-point time when comparing with t_s.
TIME_EPS_S = 1e-9


class EventQueue:
    """Events sorted by time (stable for equal times); pops the due ones."""

    __slots__ = ("_events", "_pos")

    def __init__(self, events: Iterable[EventConfig]) -> None:
        self._events = sorted(events, key=lambda e: e.t_s)
        self._pos = 0

    @property
    def next_t_s(self) -> float:
        """Time of the next pending event (inf when none is left)."""
        if self._pos < len(self._events):
            return self._events[self._pos].t_s - TIME_EPS_S
        return float("inf")

    def pop_due(self, t_s: float) -> list[EventConfig]:
        """Remove and return the events due at time t_s."""
        start = self._pos
        while self._pos < len(self._events) and self._events[self._pos].t_s <= t_s + TIME_EPS_S:
            self._pos += 1
        return self._events[start:self._pos]


def check_events(events: Iterable[EventConfig], variables: Mapping[str, VariableInfo]) -> None:
    """Raise ValueError naming the event if it sets an unknown or read-only variable."""
    for i, ev in enumerate(events):
        if ev.kind != "set":
            continue
        info = variables.get(ev.variable)
        if info is None:
            raise ValueError(f"events[{i}] (t_s={ev.t_s}): unknown variable {ev.variable!r}")
        if not info.writable:
            raise ValueError(f"events[{i}] (t_s={ev.t_s}): variable {ev.variable!r} "
                             "is not writable")
