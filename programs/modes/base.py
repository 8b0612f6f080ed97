"""What every mode receives each scan, and the interface it implements."""

from __future__ import annotations

import math

import attrs


@attrs.define(slots=True)
class Measurements:
    """This scan's view of the site, already checked for quality by the mode manager.

    Powers in W with the project's signs: grid + import, battery + discharge.
    `net_load_w` is what the site needs from battery and grid together (load - pv).
    """

    dt_s: float = 0.1
    wall_s: float = 0.0
    day_s: float = 0.0  # seconds since local midnight
    grid_w: float = 0.0
    battery_w: float = 0.0
    net_load_w: float = 0.0
    soc_pct: float = 50.0
    limit_charge_w: float = 0.0
    limit_discharge_w: float = 0.0
    baseline_w: float = 0.0  # what the site commanded last scan
    constrained: bool = False  # last scan's request was cut by a limit, a constraint or the ramp


class ModeBase:
    """A power-control mode. `start` is called when it becomes active (bumpless handover)."""

    sleep_ok = True  # the site may go Idle while this mode asks for (almost) nothing
    respects_reserve = True  # discharge stops at the backup reserve, not only at soc_min
    may_charge = True
    may_discharge = True
    needs_heartbeat = False  # falls back when its controller stops beating

    def start(self, present_w: float, m: Measurements) -> None:
        """Take over from `present_w` without a jump."""

    def heartbeat_needed(self, m: Measurements) -> bool:
        """Whether this mode, now, depends on a controller that must keep its heartbeat."""
        return self.needs_heartbeat

    def request(self, m: Measurements) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement request")

    def q_request(self, m: Measurements) -> float:
        return 0.0


def in_window(day_s: float, start_s: float, end_s: float) -> bool:
    """Whether a time of day lies in [start, end), windows may wrap past midnight."""
    if start_s == end_s:
        return True
    if start_s < end_s:
        return start_s <= day_s < end_s
    return day_s >= start_s or day_s < end_s


def soc_taper(soc_pct: float, target_pct: float, band_pct: float) -> float:
    """1 far from the target, falling linearly to 0 at it: approach a SOC target without overshoot."""
    if band_pct <= 0:
        return 1.0 if soc_pct < target_pct else 0.0
    f = (target_pct - soc_pct) / band_pct
    return 0.0 if f <= 0 else (1.0 if f >= 1 else f)


NAN = math.nan
