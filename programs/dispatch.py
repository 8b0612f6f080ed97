"""Dispatch: the inverter's setpoints from the baseline plus grid services, within the limits.

Grid-service power is added here, after the baseline's ramp, so that frequency response is
never slowed by it. Outside Run the inverter is told to stop and its setpoint is 0 W.
The contactor opens (in Error, Reboot, Restart) only once the measured power, and the
battery current where it is measured, are down: never under load, however long that takes
(an emergency stop is the safety program's, and may).
"""

from __future__ import annotations

import attrs
from attrs import validators as v

from plc.program import Program, ScanContext, TagLookup
from programs.enums import SiteState

RUN_STATES = (SiteState.RUN,)
OPEN_STATES = (SiteState.ERROR, SiteState.REBOOT, SiteState.RESTART)


@attrs.frozen
class Params:
    contactor_open_below_w: float = attrs.field(default=100.0, validator=v.ge(0))
    contactor_open_below_a: float = attrs.field(default=5.0, validator=v.ge(0))


class Dispatch(Program):
    kind = "dispatch"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params

    def bind(self, tags: TagLookup) -> None:
        self.baseline = tags["baseline_p_w"]
        self.q_request = tags["q_request_var"]
        self.limit_charge = tags["limit_charge_w"]
        self.limit_discharge = tags["limit_discharge_w"]
        self.state = tags["site_state"]
        self.mode_hold = tags["control_hold"]
        self.service = tags.get("service_p_w")
        self.p_out = tags["inverter_p_setpoint_w"]
        self.q_out = tags["inverter_q_setpoint_var"]
        self.run_out = tags.get("inverter_run_cmd")
        self.contactor_out = tags.get("bms_contactor_cmd")
        self.inverter_p = tags["inverter_p_w"]
        self.battery_i = tags.get("battery_current_a")

    def execute(self, ctx: ScanContext) -> None:
        state = SiteState(self.state.value)
        running = state in RUN_STATES or (state is SiteState.MAINTENANCE and not self.mode_hold.value)
        p = self.baseline.value
        if self.service is not None and self.service.good:
            p += self.service.value
        lo, hi = -self.limit_charge.value, self.limit_discharge.value
        p = lo if p < lo else (hi if p > hi else p)
        if not running:
            p = 0.0
        self.p_out.set(p)
        self.q_out.set(self.q_request.value if running else 0.0)
        if self.run_out is not None:
            self.run_out.set(running)
        if self.contactor_out is not None:
            self.contactor_out.set(state not in OPEN_STATES or not self._no_load())

    def _no_load(self) -> bool:
        """The inverter's power (and the battery current, where measured) read GOOD and near 0."""
        if not (self.inverter_p.good and abs(self.inverter_p.value) < self.p.contactor_open_below_w):
            return False
        current = self.battery_i
        return current is None or (current.good and abs(current.value) < self.p.contactor_open_below_a)
