"""Power schedules: timed entries of P and Q, or of a SOC to reach by the entry's end."""

from __future__ import annotations

import bisect
import itertools
import math

import attrs


@attrs.frozen
class ScheduleEntry:
    """From `start_s` to `end_s` (epoch seconds): hold `p_w`/`q_var`, or reach `soc_target_pct`."""

    start_s: float
    end_s: float
    p_w: float = 0.0
    q_var: float = 0.0
    soc_target_pct: float | None = None

    def __attrs_post_init__(self) -> None:
        if not self.end_s > self.start_s:
            raise ValueError(f"schedule entry ends ({self.end_s}) before it starts ({self.start_s})")


@attrs.frozen
class Schedule:
    """Entries sorted by start, without overlaps; `at(t)` finds the one in force in O(log n)."""

    entries: tuple[ScheduleEntry, ...] = ()
    _starts: tuple[float, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        entries = tuple(sorted(self.entries, key=lambda e: e.start_s))
        for a, b in itertools.pairwise(entries):
            if b.start_s < a.end_s:
                raise ValueError(f"schedule entries overlap: one ends at {a.end_s}, the next starts at {b.start_s}")
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "_starts", tuple(e.start_s for e in entries))

    def at(self, wall_s: float) -> ScheduleEntry | None:
        i = bisect.bisect_right(self._starts, wall_s) - 1
        if i >= 0 and wall_s < self.entries[i].end_s:
            return self.entries[i]
        return None


def power_to_reach(soc_pct: float, target_pct: float, capacity_wh: float, remaining_s: float) -> float:
    """Battery power (+ discharge) that moves SOC to the target in the remaining time."""
    energy_wh = (soc_pct - target_pct) / 100.0 * capacity_wh
    if abs(soc_pct - target_pct) < 0.2:
        return 0.0
    return energy_wh * 3600.0 / max(remaining_s, 60.0) if remaining_s > 0 else math.copysign(math.inf, energy_wh)
