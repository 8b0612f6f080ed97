"""Mode manager: the battery's baseline power from the active mode, within every constraint.

Each scan: check the inputs (no actuation before they are valid), pick the active mode
(falling back when its heartbeat stops), ask it for power, apply the site-wide constraints
(import/export limits, backup reserve, what the mode may not do), clamp to the charge
limiter's limits and ramp. A mode switch hands over from the present power, and the ramp
bounds the change, so switches are bumpless. Grid services add to this baseline later in the
scan, outside the ramp.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import attrs
from attrs import validators as v

from blocks import TON, RampLimiter
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, TagSpec
from programs.enums import HoldReason, Mode, SiteState, labels
from programs.modes import (
    ChargeOnly,
    CostSaving,
    External,
    LoadMatching,
    Local,
    Measurements,
    ModeBase,
    Passive,
    PeakShaving,
    SelfConsumption,
)
from programs.modes.base import soc_taper
from programs.modes.setpoint import Heartbeat
from programs.schedule import Schedule
from programs.tagdefs import Layout, param, status, text

log = logging.getLogger(__name__)

MODE_NAMES = labels(Mode)
REASON_LENGTH = 40
RESERVE_TAPER_PCT = 1.0
INVALID = (HoldReason.NO_INVERTER, HoldReason.NO_METER, HoldReason.NO_BMS)
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not _HHMM.match(value):
        raise ValueError(f"{value!r} is not a time of day HH:MM")


def _mode_name(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in MODE_NAMES:
        raise ValueError(f"unknown mode {value!r}; modes are {', '.join(MODE_NAMES)}")


@attrs.frozen
class TariffEntry:
    start: str = attrs.field(validator=_hhmm)
    price: float = 0.0


DEFAULT_TARIFF = (TariffEntry("00:00", 0.10), TariffEntry("06:00", 0.25), TariffEntry("17:00", 0.45),
                  TariffEntry("21:00", 0.25))


@attrs.frozen
class Params:
    mode: str = attrs.field(default="self_consumption", validator=_mode_name)
    fallback_mode: str = attrs.field(default="passive", validator=_mode_name)
    battery_capacity_wh: float = attrs.field(default=10240.0, validator=v.gt(0))
    grid_setpoint_w: float = 0.0
    q_setpoint_var: float = 0.0
    import_limit_w: float = attrs.field(default=1e7, validator=v.ge(0))
    export_limit_w: float = attrs.field(default=1e7, validator=v.ge(0))
    soc_min_pct: float = attrs.field(default=5.0, validator=[v.ge(0), v.le(100)])
    soc_max_pct: float = attrs.field(default=95.0, validator=[v.ge(0), v.le(100)])
    soc_reserve_pct: float = attrs.field(default=20.0, validator=[v.ge(0), v.le(100)])
    ramp_w_per_s: float = attrs.field(default=5000.0, validator=v.gt(0))
    net_load_tau_s: float = attrs.field(default=0.3, validator=v.ge(0))
    trim_kp: float = attrs.field(default=0.05, validator=v.ge(0))
    trim_ki: float = attrs.field(default=0.3, validator=v.ge(0))
    trim_limit_w: float = attrs.field(default=300.0, validator=v.ge(0))
    zero_band_w: float = attrs.field(default=20.0, validator=v.ge(0))
    sleep_threshold_w: float = attrs.field(default=50.0, validator=v.ge(0))
    sleep_delay_s: float = attrs.field(default=300.0, validator=v.ge(0))
    wake_threshold_w: float = attrs.field(default=150.0, validator=v.ge(0))
    wake_delay_s: float = attrs.field(default=1.0, validator=v.ge(0))
    heartbeat_timeout_s: float = attrs.field(default=10.0, validator=v.gt(0))
    peak_recharge_soc_pct: float = attrs.field(default=90.0, validator=[v.ge(0), v.le(100)])
    peak_recharge_power_w: float = attrs.field(default=2000.0, validator=v.ge(0))
    peak_margin_w: float = attrs.field(default=100.0, validator=v.ge(0))
    limit_margin_w: float = attrs.field(default=50.0, validator=v.ge(0))  # aim this far inside import/export limits
    charge_target_soc_pct: float = attrs.field(default=90.0, validator=[v.ge(0), v.le(100)])
    charge_power_w: float = attrs.field(default=2500.0, validator=v.ge(0))
    charge_window_start: str = attrs.field(default="00:00", validator=_hhmm)
    charge_window_end: str = attrs.field(default="06:00", validator=_hhmm)
    tariff: tuple[TariffEntry, ...] = DEFAULT_TARIFF
    cost_cheap_price: float | None = None  # None: a quarter of the way up from the lowest price
    cost_expensive_price: float | None = None  # None: a quarter of the way down from the highest
    cost_charge_power_w: float = attrs.field(default=2500.0, validator=v.ge(0))
    cost_charge_soc_pct: float = attrs.field(default=90.0, validator=[v.ge(0), v.le(100)])
    timezone: str = "UTC"
    schedule_file: str | None = None  # TOML/JSON schedule for external control, reloaded when it changes
    modbus_holding_base: int | None = 1100
    modbus_input_base: int | None = 1100

    def __attrs_post_init__(self) -> None:
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError(f"soc_min_pct ({self.soc_min_pct}) must be below soc_max_pct ({self.soc_max_pct})")
        if not self.soc_min_pct <= self.soc_reserve_pct <= self.soc_max_pct:
            raise ValueError(f"soc_reserve_pct ({self.soc_reserve_pct}) must lie between soc_min_pct and "
                             "soc_max_pct")
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError, OSError):  # not found is a KeyError, a malformed key a ValueError
            raise ValueError(f"unknown timezone {self.timezone!r}") from None

    def price_thresholds(self) -> tuple[float, float]:
        prices = [t.price for t in self.tariff] or [0.0]
        lo, hi = min(prices), max(prices)
        cheap = self.cost_cheap_price if self.cost_cheap_price is not None else lo + 0.25 * (hi - lo)
        expensive = self.cost_expensive_price if self.cost_expensive_price is not None else hi - 0.25 * (hi - lo)
        return cheap, expensive


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


class SiteControl(Program):
    kind = "site_control"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params
        self.ramp = RampLimiter(rate_up_per_s=params.ramp_w_per_s, rate_down_per_s=params.ramp_w_per_s, y0=0.0)
        self.m = Measurements()
        self.ext_heartbeat = Heartbeat(params.heartbeat_timeout_s)
        self.local_heartbeat = Heartbeat(params.heartbeat_timeout_s)
        self.sleep_timer = TON(pt_s=params.sleep_delay_s)
        self.wake_timer = TON(pt_s=params.wake_delay_s)
        self.sleep_request = False
        self.active: Mode | None = None
        self.modes: dict[Mode, ModeBase] = {}
        self._tz = ZoneInfo(params.timezone)
        self._tz_offset_s = 0.0
        self._tz_valid_until = -math.inf
        self._handover_w: float | None = None

    def hand_over(self, present_w: float) -> None:
        """Continue from `present_w` at the next scan, bumplessly: the ramp starts there and the
        active mode restarts from it (its trim takes up the difference to the feed-forward), as
        on a mode switch. For a cluster leader taking over from the one before it."""
        self._handover_w = present_w

    # --- tags ---------------------------------------------------------------------------------
    def declare(self) -> list[TagSpec]:
        p = self.p
        h = Layout(p.modbus_holding_base, None)
        i = Layout(None, p.modbus_input_base)
        cheap, expensive = p.price_thresholds()
        f = DType.FLOAT32
        return [
            param(h, "mode", DType.ENUM, MODE_NAMES.index(p.mode), "Configured power-control mode", enum_cls=Mode),
            param(h, "grid_setpoint_w", f, p.grid_setpoint_w, "Grid exchange target in self-consumption", "W",
                  -1e6, 1e6),
            param(h, "import_limit_w", f, p.import_limit_w, "Grid import limit (peak shaving, all modes)", "W",
                  0, 1e7),
            param(h, "export_limit_w", f, p.export_limit_w, "Grid export limit (all modes)", "W", 0, 1e7),
            param(h, "soc_min_pct", f, p.soc_min_pct, "Lowest SOC the site discharges to", "%", 0, 100),
            param(h, "soc_max_pct", f, p.soc_max_pct, "Highest SOC the site charges to", "%", 0, 100),
            param(h, "soc_reserve_pct", f, p.soc_reserve_pct, "SOC kept for backup in self-consumption", "%",
                  0, 100),
            param(h, "ramp_w_per_s", f, p.ramp_w_per_s, "Rate limit of the baseline power", "W/s", 1, 1e7),
            param(h, "q_setpoint_var", f, p.q_setpoint_var, "Reactive power outside external control", "var",
                  -1e6, 1e6),
            param(h, "ext_p_setpoint_w", f, 0.0, "External control: active power", "W", -1e6, 1e6, retain=False),
            param(h, "ext_q_setpoint_var", f, 0.0, "External control: reactive power", "var", -1e6, 1e6,
                  retain=False),
            param(h, "ext_heartbeat", DType.UINT16, 0, "External control: counter the controller keeps changing",
                  retain=False),
            param(h, "schedule_enabled", DType.BOOL, True, "External control follows the loaded schedule"),
            param(h, "local_p_setpoint_w", f, 0.0, "Local control: active power", "W", -1e6, 1e6, retain=False),
            param(h, "local_heartbeat", DType.UINT16, 0, "Local control: counter the panel keeps changing",
                  retain=False),
            param(h, "charge_target_soc_pct", f, p.charge_target_soc_pct, "Charge only: SOC target", "%", 0, 100),
            param(h, "charge_power_w", f, p.charge_power_w, "Charge only: charge power", "W", 0, 1e7),
            param(h, "charge_window_start_min", DType.UINT16, _minutes(p.charge_window_start),
                  "Charge only: window start, minutes after local midnight", "min", 0, 1439),
            param(h, "charge_window_end_min", DType.UINT16, _minutes(p.charge_window_end),
                  "Charge only: window end, minutes after local midnight", "min", 0, 1439),
            param(h, "peak_recharge_soc_pct", f, p.peak_recharge_soc_pct, "Peak shaving: recharge target", "%",
                  0, 100),
            param(h, "peak_recharge_power_w", f, p.peak_recharge_power_w, "Peak shaving: recharge power", "W",
                  0, 1e7),
            param(h, "cost_cheap_price", f, cheap, "Cost saving: charge at or below this price", "", -1e6, 1e6),
            param(h, "cost_expensive_price", f, expensive, "Cost saving: discharge at or above this price", "",
                  -1e6, 1e6),
            param(h, "cost_charge_power_w", f, p.cost_charge_power_w, "Cost saving: grid charge power", "W",
                  0, 1e7),
            param(h, "cost_charge_soc_pct", f, p.cost_charge_soc_pct, "Cost saving: grid charge target", "%",
                  0, 100),
            param(h, "trim_kp", f, p.trim_kp, "Grid-error trim (PI): proportional gain", "", 0, 10),
            param(h, "trim_ki", f, p.trim_ki, "Grid-error trim (PI): integral gain", "1/s", 0, 10),
            status(i, "mode_active", DType.ENUM, "Mode in control now", enum_cls=Mode, telemetry=True),
            status(i, "mode_reason", DType.STRING, "Why that mode is in control", length=REASON_LENGTH),
            status(i, "baseline_p_w", f, "Battery power from the mode, after constraints and ramp", "W"),
            status(i, "mode_request_w", f, "Battery power the mode asked for", "W"),
            status(i, "q_request_var", f, "Reactive power request", "var"),
            status(i, "net_load_w", f, "Load minus PV: what battery and grid supply together", "W"),
            status(i, "control_hold", DType.BOOL, "The site holds 0 W instead of following its mode"),
            status(i, "control_hold_reason", DType.ENUM, "Why the site holds 0 W", enum_cls=HoldReason),
            status(i, "heartbeat_ok", DType.BOOL, "The active mode's controller is alive (or needs no heartbeat)"),
            status(i, "sleep_request", DType.BOOL, "Nothing to do: the site may sleep"),
            status(i, "price_now", f, "Cost saving: present price"),
        ]

    def bind(self, tags: TagLookup) -> None:
        self.t = tags
        self.grid = tags["grid_power_w"]
        self.battery = tags["inverter_p_w"]
        self.soc = tags["soc_pct"]
        self.state = tags["site_state"]
        names = ("limit_charge_w", "limit_discharge_w", "mode", "import_limit_w", "export_limit_w",
                 "soc_reserve_pct", "ramp_w_per_s", "q_setpoint_var", "ext_heartbeat", "local_heartbeat",
                 "mode_active", "mode_reason", "baseline_p_w", "mode_request_w", "q_request_var", "net_load_w",
                 "control_hold", "control_hold_reason", "heartbeat_ok", "sleep_request", "trim_kp", "trim_ki")
        self.tag = {name: tags[name] for name in names}
        # Grid services (when present) reserve headroom that the baseline must leave free.
        self.reserve_up = tags.get("service_reserve_up_w")
        self.reserve_down = tags.get("service_reserve_down_w")
        p = self.p
        self.modes = {
            Mode.PASSIVE: Passive(), Mode.SELF_CONSUMPTION: SelfConsumption(p, tags),
            Mode.PEAK_SHAVING: PeakShaving(p, tags), Mode.EXTERNAL: External(p, tags),
            Mode.CHARGE_ONLY: ChargeOnly(p, tags), Mode.LOCAL: Local(p, tags),
            Mode.COST_SAVING: CostSaving(p, tags), Mode.LOAD_MATCHING: LoadMatching(p, tags),
        }

    def replace_schedule(self, schedule: Schedule) -> None:
        """Swap the external-control schedule (called from outside the scan; one reference swap)."""
        external = self.modes[Mode.EXTERNAL]
        assert isinstance(external, External)
        external.schedule = schedule

    # --- the scan ---------------------------------------------------------------------------------
    def execute(self, ctx: ScanContext) -> None:
        tag = self.tag
        hold = self._hold_reason()
        m = self._measure(ctx, hold)
        mode, reason = self._select_mode(m)
        if mode is not self.active:
            self._switch(mode, reason, m)
        active = self.modes[mode]
        tracker = getattr(active, "tracker", None)
        if tracker is not None:  # the trim's gains may change at run time (SCADA, the cloud's twin); ki bumpless
            tracker.trim.kp, tracker.trim.ki = tag["trim_kp"].value, tag["trim_ki"].value
        if self._handover_w is not None and hold not in INVALID:
            active.start(self._handover_w, m)
            self.ramp.reset(self._handover_w)
        self._handover_w = None
        invalid = hold in INVALID
        raw = active.request(m) if not invalid else 0.0
        q = active.q_request(m) if mode in (Mode.EXTERNAL,) else tag["q_setpoint_var"].value
        target = self._constrain(raw, active, mode, m)
        self._update_sleep(active, target, ctx.dt_s)
        if hold is not HoldReason.NONE:
            target = 0.0
            q = 0.0
        if invalid or hold is HoldReason.ERROR:
            self.ramp.reset(0.0)  # on doubt: 0 W now, not after a ramp
        self.ramp.rate_up_per_s = self.ramp.rate_down_per_s = tag["ramp_w_per_s"].value
        baseline = self.ramp.step(target, ctx.dt_s)
        m.constrained = baseline != raw
        m.baseline_w = baseline
        tag["baseline_p_w"].set(baseline)
        tag["mode_request_w"].set(_finite(raw))
        tag["q_request_var"].set(q)
        tag["control_hold"].set(hold is not HoldReason.NONE)
        tag["control_hold_reason"].set(hold)

    def _hold_reason(self) -> HoldReason:
        for source, reason in ((self.battery, HoldReason.NO_INVERTER), (self.grid, HoldReason.NO_METER),
                               (self.soc, HoldReason.NO_BMS)):
            if not source.good:
                return reason
        state = SiteState(self.state.value)
        if state is SiteState.RUN:
            return HoldReason.NONE
        if state is SiteState.MAINTENANCE and self.active is Mode.LOCAL:
            return HoldReason.NONE
        return {SiteState.INIT: HoldReason.STARTING, SiteState.IDLE: HoldReason.IDLE,
                SiteState.MAINTENANCE: HoldReason.MAINTENANCE, SiteState.ERROR: HoldReason.ERROR,
                }.get(state, HoldReason.NOT_RUNNING)

    def _measure(self, ctx: ScanContext, hold: HoldReason) -> Measurements:
        m = self.m
        m.dt_s = ctx.dt_s
        m.wall_s = ctx.wall_s
        m.day_s = self._day_s(ctx.wall_s)
        if hold not in INVALID:
            m.grid_w = self.grid.value
            m.battery_w = self.battery.value
            m.net_load_w = m.grid_w + m.battery_w
            m.soc_pct = self.soc.value
            self.tag["net_load_w"].set(m.net_load_w)
        m.limit_charge_w = self.tag["limit_charge_w"].value
        m.limit_discharge_w = self.tag["limit_discharge_w"].value
        return m

    def _day_s(self, wall_s: float) -> float:
        if not self._tz_valid_until - 3600.0 <= wall_s < self._tz_valid_until:
            offset = datetime.fromtimestamp(wall_s, self._tz).utcoffset()
            self._tz_offset_s = offset.total_seconds() if offset else 0.0
            self._tz_valid_until = (wall_s // 3600.0 + 1.0) * 3600.0
        return (wall_s + self._tz_offset_s) % 86400.0

    def _select_mode(self, m: Measurements) -> tuple[Mode, str]:
        configured = Mode(self.tag["mode"].value)
        ext_ok = self.ext_heartbeat.step(self.tag["ext_heartbeat"].value, m.dt_s)
        local_ok = self.local_heartbeat.step(self.tag["local_heartbeat"].value, m.dt_s)
        needs = self.modes[configured].heartbeat_needed(m)
        ok = not needs or (local_ok if configured is Mode.LOCAL else ext_ok)
        self.tag["heartbeat_ok"].set(ok)
        if ok:
            return configured, "configured"
        return Mode[self.p.fallback_mode.upper()], f"{configured.name.lower()} heartbeat lost"

    def _switch(self, mode: Mode, reason: str, m: Measurements) -> None:
        previous = self.active
        self.modes[mode].start(self.ramp.y if self.ramp.y == self.ramp.y else 0.0, m)
        self.active = mode
        self.tag["mode_active"].set(mode)
        self.tag["mode_reason"].set(text(reason, REASON_LENGTH))
        if previous is not None:
            log.info("mode %s -> %s (%s)", previous.name.lower(), mode.name.lower(), reason)

    def _constrain(self, p: float, mode: ModeBase, which: Mode, m: Measurements) -> float:
        """Site-wide constraints, then the charge limiter's hardware limits (which always win)."""
        if which is not Mode.PASSIVE:
            margin = self.p.limit_margin_w
            lo = m.net_load_w - self.tag["import_limit_w"].value + margin  # discharge at least this
            hi = m.net_load_w + self.tag["export_limit_w"].value - margin  # discharge at most this
            if not mode.may_discharge:
                lo = min(lo, 0.0)
            if not mode.may_charge:
                hi = max(hi, 0.0)
            p = lo if p < lo else (hi if p > hi else p)
        if not mode.may_discharge and p > 0.0:
            p = 0.0
        if not mode.may_charge and p < 0.0:
            p = 0.0
        discharge, charge = m.limit_discharge_w, m.limit_charge_w
        if self.reserve_up is not None and self.reserve_up.good:
            discharge = max(discharge - self.reserve_up.value, 0.0)
        if self.reserve_down is not None and self.reserve_down.good:
            charge = max(charge - self.reserve_down.value, 0.0)
        if mode.respects_reserve:
            reserve = self.tag["soc_reserve_pct"].value
            discharge *= 1.0 - soc_taper(m.soc_pct, reserve + RESERVE_TAPER_PCT, RESERVE_TAPER_PCT)
        return -charge if p < -charge else (discharge if p > discharge else p)

    def _update_sleep(self, mode: ModeBase, target: float, dt: float) -> None:
        if not self.sleep_request:
            idle = mode.sleep_ok and abs(target) < self.p.sleep_threshold_w
            self.sleep_request = self.sleep_timer.step(idle, dt)
            self.wake_timer.step(False, dt)
        else:
            wake = not mode.sleep_ok or abs(target) > self.p.wake_threshold_w
            if self.wake_timer.step(wake, dt):
                self.sleep_request = False
                self.sleep_timer.step(False, dt)
        self.tag["sleep_request"].set(self.sleep_request)


def _finite(x: float) -> float:
    return max(min(x, 3e38), -3e38) if x == x else 0.0
