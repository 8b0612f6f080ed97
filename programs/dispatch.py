"""Dispatch: the inverter's setpoints from the baseline plus grid services, within the limits.

Grid-service power is added here, after the baseline's ramp, so that frequency response is
never slowed by it. Outside Run the inverter is told to stop and its setpoint is 0 W.
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
    contactor_open_after_s: float = attrs.field(default=2.0, validator=v.ge(0))


class Dispatch(Program):
    kind = "dispatch"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params
        self.stopping_s = 0.0

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
            self.contactor_out.set(self._contactor(state, ctx.dt_s))

    def _contactor(self, state: SiteState, dt: float) -> bool:
        """Closed, except in Error/Reboot/Restart: opened once the power is down (or after a delay)."""
        if state not in OPEN_STATES:
            self.stopping_s = 0.0
            return True
        self.stopping_s += dt
        power_down = self.inverter_p.good and abs(self.inverter_p.value) < self.p.contactor_open_below_w
        return not (power_down or self.stopping_s >= self.p.contactor_open_after_s)
