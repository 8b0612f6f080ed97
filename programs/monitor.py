"""Battery monitor: SOC drift and recalibration, SOH, full/empty, cell balance, BMS inactivity and
auto-charge of an almost empty battery.

* SOC: the monitor counts charge itself (`soc_estimate_pct`, from `battery_current_a`) and
  recalibrates that count where the truth is known: at full charge (100 %) and after a rest,
  from the open-circuit voltage on the steep ends of the LFP curve (the middle is too flat to
  read). `soc_drift_pct` is how far the BMS's SOC is from it; past `drift_alarm_pct` the
  `soc_drift_alarm` flag rises. `soc_delta_pct` keeps the drift found at the last recalibration.
* SOH: the BMS's figure, smoothed (`soh_tracked_pct`), and the monitor's own capacity estimate
  from the charge counted between a recalibration low down and the next full charge.
* Full / empty: `battery_full` (BMS SOC at `full_soc_pct`, or top cell at `full_cell_v` with the
  current tapered below `full_current_a`) and `battery_empty`, each held for `full_empty_s`.
* Cell balance: near the top (SOC >= `balance_min_soc_pct`) a cell-voltage spread above
  `balance_start_v` requests balancing (`balancing_request`, and the `bms_balancing_cmd` output
  when the site has one) until it is below `balance_stop_v`; sessions are counted and kept.
* BMS inactive: no current for `bms_inactive_timeout_s` raises `bms_inactive` and
  `bms_sleep_request`; the time spent so is summed in `bms_sleep_total_s`.
* Auto-charge: below `auto_charge_soc_pct` the battery is charged from the grid at
  `auto_charge_w` until `auto_charge_stop_pct`, in Run and Idle, whatever the mode: the cells
  must not sit empty.

Counting runs every scan (one multiply-add); the rest runs once a second of scan time.
Values marked retain survive restarts (runtime/retain.py).
"""

from __future__ import annotations

from collections import deque

import attrs
from attrs import validators as v

from blocks import TON, Curve, Debounce, Hysteresis, LowPass
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, Quality, TagSpec
from programs.enums import SiteState
from programs.tagdefs import Layout, status

GOOD = Quality.GOOD
SLOW_PERIOD_S = 1.0
# LFP cell open-circuit voltage -> SOC (the same curve the plant model uses; see sim/ocv.py).
LFP_OCV = ((2.50, 0.0), (2.90, 2.0), (3.05, 5.0), (3.17, 10.0), (3.21, 15.0), (3.24, 20.0), (3.27, 30.0),
           (3.285, 40.0), (3.295, 50.0), (3.305, 60.0), (3.315, 70.0), (3.325, 80.0), (3.335, 90.0),
           (3.350, 95.0), (3.380, 98.0), (3.450, 100.0))
ACTIVE_STATES = (SiteState.RUN, SiteState.IDLE)


@attrs.frozen
class Params:
    battery_capacity_ah: float = attrs.field(default=200.0, validator=v.gt(0))
    rest_current_a: float = attrs.field(default=2.0, validator=v.ge(0))
    rest_s: float = attrs.field(default=1800.0, validator=v.ge(0))
    ocv_curve: tuple[tuple[float, float], ...] = LFP_OCV
    ocv_trusted_below_pct: float = attrs.field(default=15.0, validator=[v.ge(0), v.le(100)])
    ocv_trusted_above_pct: float = attrs.field(default=97.0, validator=[v.ge(0), v.le(100)])
    full_soc_pct: float = attrs.field(default=99.5, validator=[v.ge(0), v.le(100)])
    full_cell_v: float = attrs.field(default=3.44, validator=v.gt(0))
    full_current_a: float = attrs.field(default=10.0, validator=v.ge(0))
    empty_soc_pct: float = attrs.field(default=0.5, validator=[v.ge(0), v.le(100)])
    empty_cell_v: float = attrs.field(default=2.95, validator=v.gt(0))
    full_empty_s: float = attrs.field(default=30.0, validator=v.ge(0))
    drift_alarm_pct: float = attrs.field(default=5.0, validator=v.gt(0))
    soh_tau_s: float = attrs.field(default=86400.0, validator=v.ge(0))
    capacity_min_span_pct: float = attrs.field(default=50.0, validator=[v.gt(0), v.le(100)])
    balance_start_v: float = attrs.field(default=0.030, validator=v.gt(0))
    balance_stop_v: float = attrs.field(default=0.010, validator=v.ge(0))
    balance_min_soc_pct: float = attrs.field(default=90.0, validator=[v.ge(0), v.le(100)])
    bms_inactive_timeout_s: float = attrs.field(default=7200.0, validator=v.ge(0))
    auto_charge_soc_pct: float = attrs.field(default=3.0, validator=[v.ge(0), v.le(100)])
    auto_charge_stop_pct: float = attrs.field(default=8.0, validator=[v.ge(0), v.le(100)])
    auto_charge_w: float = attrs.field(default=1000.0, validator=v.ge(0))
    modbus_input_base: int | None = 1600

    def __attrs_post_init__(self) -> None:
        if not self.balance_stop_v < self.balance_start_v:
            raise ValueError(f"balance_stop_v ({self.balance_stop_v}) must be below balance_start_v "
                             f"({self.balance_start_v})")
        if not self.auto_charge_soc_pct < self.auto_charge_stop_pct:
            raise ValueError(f"auto_charge_soc_pct ({self.auto_charge_soc_pct}) must be below "
                             f"auto_charge_stop_pct ({self.auto_charge_stop_pct})")
        Curve(self.ocv_curve)  # raises ValueError naming the bad breakpoint


@attrs.frozen
class MonitorEvent:
    """Something worth a line in the event log (the recorder reads these attributes)."""

    t_s: float
    wall_s: float
    name: str
    message: str
    kind: str = "monitor"
    severity: int = 0
    source: str = "bms"
    code: int = 0


INPUTS = ("battery_current_a", "soc_pct", "cell_v_min_v", "cell_v_max_v")


class Monitor(Program):
    kind = "monitor"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        p = self.p = params
        self.events: deque[MonitorEvent] = deque(maxlen=1000)
        self.ocv = Curve(p.ocv_curve)
        self.rest = TON(pt_s=p.rest_s)
        self.full = Debounce(on_s=p.full_empty_s, off_s=0.0)
        self.empty = Debounce(on_s=p.full_empty_s, off_s=0.0)
        self.inactive = TON(pt_s=p.bms_inactive_timeout_s)
        self.drift_alarm = Hysteresis(on_threshold=p.drift_alarm_pct, off_threshold=p.drift_alarm_pct * 0.8)
        self.balance = Hysteresis(on_threshold=p.balance_start_v, off_threshold=p.balance_stop_v)
        self.auto_charge = Hysteresis(on_threshold=p.auto_charge_soc_pct, off_threshold=p.auto_charge_stop_pct)
        self.soh = LowPass(tau_s=p.soh_tau_s)
        self.estimate: float | None = None  # soc_estimate_pct; None until the first good SOC
        self.ah = 0.0  # charge counted since the last slow tick (A s, + discharge)
        self.slow_s = 0.0
        self.rest_used = False  # one OCV recalibration per rest
        self.capacity_from: float | None = None  # SOC recalibrated low down, and the A s counted since
        self.capacity_as = 0.0
        self.balance_started: tuple[float, float] | None = None
        self.restored = False

    # --- tags ------------------------------------------------------------------------------------
    def declare(self) -> list[TagSpec]:
        i = Layout(None, self.p.modbus_input_base)
        f, u32 = DType.FLOAT32, DType.UINT32
        specs = [
            status(i, "soc_estimate_pct", f, "SOC counted by the controller, recalibrated at full and at rest", "%"),
            status(i, "soc_drift_pct", f, "BMS SOC minus the controller's SOC", "%"),
            status(i, "soc_drift_alarm", DType.BOOL, "The BMS SOC has drifted past the alarm threshold"),
            status(i, "soc_delta_pct", f, "Drift found at the last recalibration", "%"),
            status(i, "soc_recalibrations", u32, "Recalibrations of the counted SOC"),
            status(i, "soc_recalibrated_wall_s", u32, "When the SOC was last recalibrated (epoch)", "s"),
            status(i, "soh_tracked_pct", f, "BMS state of health, smoothed", "%"),
            status(i, "capacity_estimate_ah", f, "Capacity measured between recalibration and full charge", "Ah"),
            status(i, "battery_full", DType.BOOL, "The battery is fully charged"),
            status(i, "battery_empty", DType.BOOL, "The battery is fully discharged"),
            status(i, "last_full_charge_wall_s", u32, "When the battery was last fully charged (epoch)", "s"),
            status(i, "cell_spread_v", f, "Highest minus lowest cell voltage", "V"),
            status(i, "balancing_request", DType.BOOL, "Cell balancing requested"),
            status(i, "balancing_sessions", u32, "Balancing sessions since commissioning"),
            status(i, "balancing_last_wall_s", u32, "Start of the last balancing session (epoch)", "s"),
            status(i, "balancing_last_duration_s", f, "Length of the last balancing session", "s"),
            status(i, "balancing_last_spread_v", f, "Cell spread when the last balancing session began", "V"),
            status(i, "bms_inactive", DType.BOOL, "No battery current for the BMS inactivity timeout"),
            status(i, "bms_sleep_request", DType.BOOL, "The BMS may sleep"),
            status(i, "bms_sleep_total_s", f, "Time the BMS has spent inactive or asleep", "s"),
            status(i, "auto_charge_active", DType.BOOL, "SOC critically low: charging from the grid"),
        ]
        retained = {"soc_delta_pct", "soc_recalibrations", "soc_recalibrated_wall_s", "soh_tracked_pct",
                    "capacity_estimate_ah", "last_full_charge_wall_s", "balancing_sessions", "balancing_last_wall_s",
                    "balancing_last_duration_s", "balancing_last_spread_v", "bms_sleep_total_s"}
        return [attrs.evolve(s, retain=True) if s.name in retained else s for s in specs]

    def bind(self, tags: TagLookup) -> None:
        self.current, self.soc, self.v_min, self.v_max = (tags[n] for n in INPUTS)
        self.v_mean = tags.get("cell_v_mean_v")
        self.soh_in = tags.get("soh_pct")
        self.state = tags["site_state"]
        self.limit_charge = tags.get("limit_charge_w")
        self.p_out = tags["inverter_p_setpoint_w"]
        self.run_out = tags.get("inverter_run_cmd")
        self.balance_out = tags.get("bms_balancing_cmd")
        self.t = {s.name: tags[s.name] for s in self.declare()}

    # --- the scan --------------------------------------------------------------------------------
    def execute(self, ctx: ScanContext) -> None:
        current = self.current
        if current.quality is GOOD:
            self.ah += current.value * ctx.dt_s
        if self.auto_charge.q:
            self._auto_charge()
        self.slow_s += ctx.dt_s
        if self.slow_s >= SLOW_PERIOD_S - 1e-9:
            dt, self.slow_s = self.slow_s, 0.0
            self._slow(ctx, dt)

    def _slow(self, ctx: ScanContext, dt: float) -> None:
        if not self.restored:
            self._restore()
        if not (self.soc.good and self.current.good and self.v_min.good and self.v_max.good):
            self.ah = 0.0
            return
        counted, self.ah = self.ah, 0.0
        self._count(counted)
        self._soc_checks(ctx, dt)
        self._soh(dt)
        self._balance(ctx)
        self._inactive(ctx, dt)
        charging = self.auto_charge.q
        if self.auto_charge.step(self.soc.value) != charging:
            self.t["auto_charge_active"].set(self.auto_charge.q)
            self._event(ctx, "auto_charge", f"auto-charge {'started' if self.auto_charge.q else 'ended'} "
                                            f"at SOC {self.soc.value:.1f} %", severity=1 if self.auto_charge.q else 0)

    def _restore(self) -> None:
        """Pick up the retained values the store restored before the first scan."""
        self.restored = True
        soh = self.t["soh_tracked_pct"].value
        if soh:
            self.soh.reset(soh)

    def _count(self, amp_s: float) -> None:
        """Coulomb counting with the present (tracked) capacity."""
        soc = self.soc.value
        if self.estimate is None:
            self.estimate = soc
        capacity_as = self._capacity_ah() * 3600.0
        self.estimate = min(100.0, max(0.0, self.estimate - amp_s / capacity_as * 100.0))
        if self.capacity_from is not None:
            self.capacity_as -= amp_s
        t = self.t
        t["soc_estimate_pct"].set(self.estimate)
        drift = soc - self.estimate
        t["soc_drift_pct"].set(drift)
        alarm = self.drift_alarm.step(abs(drift))
        if alarm is not t["soc_drift_alarm"].value:
            t["soc_drift_alarm"].set(alarm)

    def _capacity_ah(self) -> float:
        soh = self.t["soh_tracked_pct"].value
        return self.p.battery_capacity_ah * (soh / 100.0 if soh and soh > 1.0 else 1.0)

    def _soc_checks(self, ctx: ScanContext, dt: float) -> None:
        """Full, empty and at-rest recalibration."""
        p, t = self.p, self.t
        i, soc, v_max, v_min = self.current.value, self.soc.value, self.v_max.value, self.v_min.value
        full_now = soc >= p.full_soc_pct or (v_max >= p.full_cell_v and abs(i) <= p.full_current_a)
        was_full = self.full.q
        if self.full.step(full_now, dt) and not was_full:
            t["battery_full"].set(True)
            t["last_full_charge_wall_s"].set(int(ctx.wall_s))
            self._capacity_at_full(ctx)
            self._recalibrate(ctx, 100.0, "full charge")
        elif was_full and not self.full.q:
            t["battery_full"].set(False)
        empty_now = soc <= p.empty_soc_pct or (v_min <= p.empty_cell_v and abs(i) <= p.full_current_a)
        was_empty = self.empty.q
        if self.empty.step(empty_now, dt) is not was_empty:
            t["battery_empty"].set(self.empty.q)
            if self.empty.q:
                self._event(ctx, "battery_empty", f"battery fully discharged (SOC {soc:.1f} %)")
        resting = self.rest.step(abs(i) <= p.rest_current_a, dt)
        if not resting:
            self.rest_used = False
        elif not self.rest_used:
            self.rest_used = True
            self._rest_reading(ctx)

    def _rest_reading(self, ctx: ScanContext) -> None:
        v_mean = self.v_mean.value if self.v_mean is not None and self.v_mean.good else \
            (self.v_min.value + self.v_max.value) / 2.0
        soc = self.ocv.step(v_mean)
        if soc <= self.p.ocv_trusted_below_pct or soc >= self.p.ocv_trusted_above_pct:
            self._recalibrate(ctx, soc, f"rest, OCV {v_mean:.3f} V")
            if soc <= self.p.ocv_trusted_below_pct:
                self.capacity_from, self.capacity_as = soc, 0.0

    def _recalibrate(self, ctx: ScanContext, reference: float, how: str) -> None:
        t = self.t
        delta = self.soc.value - reference
        self.estimate = reference
        t["soc_estimate_pct"].set(reference)
        t["soc_drift_pct"].set(delta)
        t["soc_delta_pct"].set(delta)
        t["soc_recalibrations"].set(t["soc_recalibrations"].value + 1)
        t["soc_recalibrated_wall_s"].set(int(ctx.wall_s))
        self._event(ctx, "soc_recalibrated", f"SOC recalibrated to {reference:.1f} % at {how}; "
                                             f"BMS was off by {delta:+.1f} %")

    def _capacity_at_full(self, ctx: ScanContext) -> None:
        """Charge counted from a low recalibration to full gives the capacity."""
        start = self.capacity_from
        self.capacity_from = None
        if start is None or 100.0 - start < self.p.capacity_min_span_pct:
            return
        capacity = self.capacity_as / 3600.0 / ((100.0 - start) / 100.0)
        self.t["capacity_estimate_ah"].set(capacity)
        self._event(ctx, "capacity_measured", f"capacity measured {capacity:.1f} Ah "
                                              f"({capacity / self.p.battery_capacity_ah * 100.0:.1f} % of nominal)")

    def _soh(self, dt: float) -> None:
        soh = self.soh_in
        if soh is not None and soh.good:
            self.t["soh_tracked_pct"].set(self.soh.step(soh.value, dt))

    def _balance(self, ctx: ScanContext) -> None:
        t = self.t
        spread = self.v_max.value - self.v_min.value
        t["cell_spread_v"].set(spread)
        was = self.balance.q
        if self.soc.value >= self.p.balance_min_soc_pct:
            now = self.balance.step(spread)
        else:
            self.balance.reset()
            now = False
        if now is was:
            return
        t["balancing_request"].set(now)
        if self.balance_out is not None:
            self.balance_out.set(now)
        if now:
            self.balance_started = (ctx.t_s, spread)
            t["balancing_sessions"].set(t["balancing_sessions"].value + 1)
            t["balancing_last_wall_s"].set(int(ctx.wall_s))
            t["balancing_last_spread_v"].set(spread)
            self._event(ctx, "balancing_started", f"cell balancing requested: spread {spread * 1000:.0f} mV")
        elif self.balance_started is not None:
            duration = ctx.t_s - self.balance_started[0]
            t["balancing_last_duration_s"].set(duration)
            self._event(ctx, "balancing_ended", f"cell balancing ended after {duration:.0f} s: "
                                                f"spread {spread * 1000:.0f} mV")

    def _inactive(self, ctx: ScanContext, dt: float) -> None:
        t = self.t
        was = self.inactive.q
        idle = self.inactive.step(abs(self.current.value) <= self.p.rest_current_a, dt)
        if idle:
            t["bms_sleep_total_s"].set(t["bms_sleep_total_s"].value + dt)
        if idle is not was:
            t["bms_inactive"].set(idle)
            t["bms_sleep_request"].set(idle)
            self._event(ctx, "bms_inactive", "BMS inactive: may sleep" if idle else "BMS active again")

    def _auto_charge(self) -> None:
        """Charge at `auto_charge_w` (within the charge limit) in Run and Idle, overriding dispatch."""
        if self.state.value not in ACTIVE_STATES:
            return
        power = self.p.auto_charge_w
        limit = self.limit_charge
        if limit is not None and limit.value < power:
            power = limit.value
        if self.p_out.value > -power:
            self.p_out.set(-power)
        if self.run_out is not None:
            self.run_out.set(True)

    def _event(self, ctx: ScanContext, name: str, message: str, severity: int = 0) -> None:
        self.events.append(MonitorEvent(ctx.t_s, ctx.wall_s, name, message, severity=severity))

