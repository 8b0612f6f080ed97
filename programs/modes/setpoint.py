"""Modes driven by a setpoint from outside: passive, external control (tags or schedule), local."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blocks import TON
from plc.program import TagLookup
from programs.modes.base import Measurements, ModeBase
from programs.schedule import Schedule, ScheduleEntry, power_to_reach

if TYPE_CHECKING:
    from programs.site_control import Params


class Heartbeat:
    """OK while the watched counter keeps changing; lost after `timeout_s` without a change."""

    def __init__(self, timeout_s: float):
        self.timer = TON(pt_s=timeout_s)
        self.last: object = None
        self.seen = False

    def step(self, value: object, dt: float) -> bool:
        changed = value != self.last
        if changed and self.last is not None:
            self.seen = True
        self.last = value
        timed_out = self.timer.step(not changed, dt)
        return self.seen and not timed_out


class Passive(ModeBase):
    """No power: monitoring only."""

    def request(self, m: Measurements) -> float:
        return 0.0


class External(ModeBase):
    """P and Q from the active schedule entry, else from the control tags (with a heartbeat)."""

    sleep_ok = False
    respects_reserve = False

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.p_tag = tags["ext_p_setpoint_w"]
        self.q_tag = tags["ext_q_setpoint_var"]
        self.schedule_enabled = tags["schedule_enabled"]
        self.capacity_wh = params.battery_capacity_wh
        self.schedule = Schedule()
        self.entry: ScheduleEntry | None = None

    def heartbeat_needed(self, m: Measurements) -> bool:
        """A schedule entry in force runs on its own; setpoints from tags need their heartbeat."""
        self.entry = self.schedule.at(m.wall_s) if self.schedule_enabled.value else None
        return self.entry is None

    def request(self, m: Measurements) -> float:
        entry = self.entry
        if entry is None:
            return self.p_tag.value
        if entry.soc_target_pct is not None:
            return power_to_reach(m.soc_pct, entry.soc_target_pct, self.capacity_wh, entry.end_s - m.wall_s)
        return entry.p_w

    def q_request(self, m: Measurements) -> float:
        return self.entry.q_var if self.entry is not None else self.q_tag.value


class Local(ModeBase):
    """A manual setpoint from the local panel; needs its heartbeat like external control."""

    sleep_ok = False
    respects_reserve = False
    needs_heartbeat = True

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.p_tag = tags["local_p_setpoint_w"]

    def request(self, m: Measurements) -> float:
        return self.p_tag.value
