"""Simulated BMS: measurements, current limits, alarms, protection and contactor.

Every step: pack voltage/current (read through from the battery), the
overcurrent check against the present limits, and the contactor. Every
``cell_scan_period_s`` (like a real BMS cell scan, 1 s by default): cell
statistics with positions, SOC/SOH, per-rack values, CCL/DCL from the
piecewise-linear tables, voltage/temperature/imbalance alarms with their
protection timers, and the passive-balancing decision.

SOC: a rack's SOC is the mean of its cells' SOC; the pack SOC is the
capacity-weighted mean of the racks (reported clamped to 0..100 %).

Protection: a cell over/under-voltage or over/under-temperature alarm
lasting ``protection_delay_s``, or an overcurrent (current above the
limit by the margins) lasting ``overcurrent_trip_delay_s``, latches a trip
that opens the contactor. The latch clears when ``contactor_cmd`` goes
False; closing again is refused while a temperature alarm is active
(voltage causes are re-evaluated after closing, so a low cell can still be
charged). Limits are zero while tripped or asleep.
"""

from __future__ import annotations

import numpy as np

from sim.battery import Battery
from sim.config import BmsConfig
from sim.ocv import Table
from sim.variables import Indexed, Var

_ROWS = np.arange(3)
_EPS_S = 1e-9  # timers are float sums of dt: 10 x 0.1 must reach 1.0

ALARM_BITS = (
    "alarm_cell_ov", "alarm_cell_uv", "alarm_cell_ot", "alarm_cell_ut",
    "alarm_oc_charge", "alarm_oc_discharge", "alarm_imbalance",
    "alarm_contactor_open", "trip_latched",
)


class RackBms:
    """What the BMS reports for one rack."""

    __slots__ = ("_b", "_k", "soc_pct", "soh_pct", "min_cell_v", "max_cell_v",
                 "min_cell_temp_degc", "max_cell_temp_degc",
                 "charge_current_limit_a", "discharge_current_limit_a")

    VARS = (
        Var("soc_pct", "%", False, "float", "rack SOC (mean cell SOC)"),
        Var("soh_pct", "%", False, "float", "rack SOH (mean cell capacity / nominal)"),
        Var("voltage_v", "V", False, "float", "rack terminal voltage"),
        Var("current_a", "A", False, "float", "rack current, + = discharge"),
        Var("min_cell_v", "V", False, "float", "lowest cell voltage in the rack"),
        Var("max_cell_v", "V", False, "float", "highest cell voltage in the rack"),
        Var("min_cell_temp_degc", "degC", False, "float", "coldest cell in the rack"),
        Var("max_cell_temp_degc", "degC", False, "float", "hottest cell in the rack"),
        Var("charge_current_limit_a", "A", False, "float", "rack CCL"),
        Var("discharge_current_limit_a", "A", False, "float", "rack DCL"),
    )

    def __init__(self, battery: Battery, index: int) -> None:
        self._b = battery
        self._k = index

    @property
    def voltage_v(self) -> float:
        b = self._b
        return b.racks[self._k].ocv_v if b._open else b.voltage_v

    @property
    def current_a(self) -> float:
        return self._b._i[self._k]


class Bms:
    """Battery management system on top of ``Battery``."""

    VARS = (
        Var("contactor_cmd", "", True, "bool", "command: True = close, False = open"),
        Var("sleep_cmd", "", True, "bool", "command: sleep (contactor open, no balancing)"),
        Var("balancing_cmd", "", True, "bool", "command: allow passive balancing"),
        Var("comm_ok", "", True, "bool", "fault: False = BMS communication lost"),
        Var("contactor_closed", "", False, "bool", "main contactor state"),
        Var("awake", "", False, "bool", "not sleeping"),
        Var("voltage_v", "V", False, "float", "pack voltage (cells incl. IR drop)"),
        Var("current_a", "A", False, "float", "pack current, + = discharge"),
        Var("power_w", "W", False, "float", "pack DC power, + = discharge"),
        Var("soc_pct", "%", False, "float", "pack SOC (capacity-weighted rack mean)"),
        Var("soh_pct", "%", False, "float", "pack SOH"),
        Var("full_capacity_ah", "Ah", False, "float", "capacity of the racks in parallel"),
        Var("remaining_capacity_ah", "Ah", False, "float", "charge left to 0 % SOC"),
        Var("charge_current_limit_a", "A", False, "float", "CCL (n_racks x min rack CCL)"),
        Var("discharge_current_limit_a", "A", False, "float", "DCL (n_racks x min rack DCL)"),
        Var("charge_voltage_limit_v", "V", False, "float", "CVL"),
        Var("discharge_voltage_limit_v", "V", False, "float", "DVL"),
        Var("min_cell_v", "V", False, "float", "lowest cell voltage"),
        Var("max_cell_v", "V", False, "float", "highest cell voltage"),
        Var("mean_cell_v", "V", False, "float", "mean cell voltage"),
        Var("min_cell_soc_pct", "%", False, "float", "lowest cell SOC"),
        Var("max_cell_soc_pct", "%", False, "float", "highest cell SOC"),
        Var("min_cell_temp_degc", "degC", False, "float", "coldest cell"),
        Var("max_cell_temp_degc", "degC", False, "float", "hottest cell"),
        Var("mean_cell_temp_degc", "degC", False, "float", "mean cell temperature"),
        *(Var(f"{q}_{p}", "", False, "int", f"{p} index (0-based) of the {q.replace('_', ' ')}")
          for q in ("min_cell_v", "max_cell_v", "min_cell_temp", "max_cell_temp")
          for p in ("rack", "module", "cell")),
        *(Var(name, "", False, "bool", name.replace("_", " ")) for name in ALARM_BITS),
        Var("alarm_bits", "", False, "int",
            "bit field: " + ", ".join(f"{i}={n}" for i, n in enumerate(ALARM_BITS))),
        Var("trip_cause", "", False, "str", "why the protection tripped ('' if not)"),
        Var("balancing_active", "", False, "bool", "some cells are being bled"),
        Var("balancing_cells", "", False, "int", "number of cells being bled"),
    )

    # ALARM_BITS[:7], which __init__ sets False by name
    alarm_cell_ov: bool
    alarm_cell_uv: bool
    alarm_cell_ot: bool
    alarm_cell_ut: bool
    alarm_oc_charge: bool
    alarm_oc_discharge: bool
    alarm_imbalance: bool

    def __init__(self, cfg: BmsConfig, battery: Battery) -> None:
        self.cfg = cfg
        self._b = battery
        self.contactor_cmd = cfg.start_closed
        self.contactor_closed = cfg.start_closed
        self.sleep_cmd = False
        self.balancing_cmd = False
        self.comm_ok = True
        self.awake = True
        self.trip_latched = False
        self.trip_cause = ""
        self.external_trip = False  # hardwired e-stop, set by the plant
        for name in ALARM_BITS[:7]:
            setattr(self, name, False)
        self.balancing_active = False
        self.balancing_cells = 0
        n_series = battery.n_cells
        self.charge_voltage_limit_v = n_series * cfg.charge_voltage_limit_cell_v
        self.discharge_voltage_limit_v = n_series * cfg.discharge_voltage_limit_cell_v
        self._close_timer = 0.0
        self._oc_timer = 0.0
        self._prot_timers = {"cell_ov": 0.0, "cell_uv": 0.0, "cell_ot": 0.0, "cell_ut": 0.0}
        self._oc_charge_a = self._oc_discharge_a = 0.0
        self._tables = (Table(cfg.ccl_soc_pct, cfg.ccl_soc_factor),
                        Table(cfg.dcl_soc_pct, cfg.dcl_soc_factor),
                        Table(cfg.ccl_temp_degc, cfg.ccl_temp_factor),
                        Table(cfg.dcl_temp_degc, cfg.dcl_temp_factor))
        self.racks = Indexed(RackBms(battery, k) for k in range(battery.n_racks))
        self.scan(0.0)

    # ------------------------------------------------------------ every step

    @property
    def voltage_v(self) -> float:
        return self._b.voltage_v

    @property
    def current_a(self) -> float:
        return self._b.current_a

    @property
    def power_w(self) -> float:
        return self._b.power_w

    @property
    def alarm_contactor_open(self) -> bool:
        return not self.contactor_closed

    @property
    def alarm_bits(self) -> int:
        bits = 0
        for i, name in enumerate(ALARM_BITS):
            if getattr(self, name):
                bits |= 1 << i
        return bits

    def step(self, dt_s: float) -> None:
        """Overcurrent protection and contactor; takes effect from the next step."""
        i = self._b.current_a
        if i > self._oc_discharge_a or i < -self._oc_charge_a:
            self._overcurrent(i, dt_s)
        elif self._oc_timer or self.alarm_oc_charge or self.alarm_oc_discharge:
            self._oc_timer = 0.0
            self.alarm_oc_charge = self.alarm_oc_discharge = False
        if self.external_trip and not self.trip_latched:
            self.trip("estop")
        if self.contactor_closed:
            if not self.contactor_cmd or self.sleep_cmd or self.trip_latched:
                self.contactor_closed = False
        elif self.contactor_cmd or self._close_timer or self.trip_latched:
            self._try_close(dt_s)
        self.awake = not self.sleep_cmd

    def _overcurrent(self, i: float, dt_s: float) -> None:
        self.alarm_oc_discharge = i > 0.0
        self.alarm_oc_charge = i < 0.0
        self._oc_timer += dt_s
        if self._oc_timer >= self.cfg.overcurrent_trip_delay_s - _EPS_S and not self.trip_latched:
            self.trip("overcurrent_discharge" if i > 0.0 else "overcurrent_charge")

    def _try_close(self, dt_s: float) -> None:
        if self.trip_latched and not self.contactor_cmd and not self.external_trip:
            self.trip_latched = False
            self.trip_cause = ""
        if (self.contactor_cmd and not self.sleep_cmd and not self.trip_latched
                and not self.alarm_cell_ot and not self.alarm_cell_ut):
            self._close_timer += dt_s
            if self._close_timer >= self.cfg.contactor_close_delay_s - _EPS_S:
                self.contactor_closed = True
                self._close_timer = 0.0
        else:
            self._close_timer = 0.0

    def trip(self, cause: str) -> None:
        """Latch a protection trip; the contactor opens at the next ``step``."""
        self.trip_latched = True
        self.trip_cause = cause
        self._update_limits_zero()

    # ------------------------------------------------------------ every scan

    def scan(self, dt_s: float) -> None:
        """Cell statistics, SOC/SOH, limits, alarms and balancing."""
        self._cell_stats()
        self._rack_stats()
        self._alarms(dt_s)
        self._balancing()

    def _cell_stats(self) -> None:
        """Min/max/mean of cell voltage, temperature and SOC, with positions."""
        b = self._b
        flat = b.cells_flat  # rows: voltage, temperature, SOC
        lo, hi = flat.argmin(axis=1), flat.argmax(axis=1)
        (self.min_cell_v, self.min_cell_temp_degc,
         self.min_cell_soc_pct) = flat[_ROWS, lo].tolist()
        (self.max_cell_v, self.max_cell_temp_degc,
         self.max_cell_soc_pct) = flat[_ROWS, hi].tolist()
        self.mean_cell_v, self.mean_cell_temp_degc = (
            flat[:2].sum(axis=1) * (1.0 / flat.shape[1])).tolist()
        lo_v, lo_t, _ = lo.tolist()
        hi_v, hi_t, _ = hi.tolist()
        self.min_cell_v_rack, self.min_cell_v_module, self.min_cell_v_cell = b.cell_position(lo_v)
        self.max_cell_v_rack, self.max_cell_v_module, self.max_cell_v_cell = b.cell_position(hi_v)
        (self.min_cell_temp_rack, self.min_cell_temp_module,
         self.min_cell_temp_cell) = b.cell_position(lo_t)
        (self.max_cell_temp_rack, self.max_cell_temp_module,
         self.max_cell_temp_cell) = b.cell_position(hi_t)

    def _rack_stats(self) -> None:
        """Per-rack extremes, SOC, SOH and current limits; pack SOC/SOH/limits."""
        b, cfg = self._b, self.cfg
        mins, maxs = b.cells.min(axis=2).tolist(), b.cells.max(axis=2).tolist()
        nominal = b.cfg.cell_capacity_ah
        ccl_soc, dcl_soc, ccl_t, dcl_t = self._tables
        full = remaining = 0.0
        ccl_min = dcl_min = float("inf")
        for k, rack in enumerate(self.racks):
            v_lo, t_lo, soc_lo = mins[0][k], mins[1][k], mins[2][k]
            v_hi, t_hi, soc_hi = maxs[0][k], maxs[1][k], maxs[2][k]
            cap, soc = b._cap_mean[k], min(100.0, max(0.0, b._soc_mean[k]))
            ccl = cfg.max_charge_current_a * ccl_soc(soc_hi) * min(ccl_t(t_lo), ccl_t(t_hi))
            dcl = cfg.max_discharge_current_a * dcl_soc(soc_lo) * min(dcl_t(t_lo), dcl_t(t_hi))
            (rack.soc_pct, rack.soh_pct, rack.min_cell_v, rack.max_cell_v,
             rack.min_cell_temp_degc, rack.max_cell_temp_degc,
             rack.charge_current_limit_a, rack.discharge_current_limit_a) = (
                soc, 100.0 * cap / nominal, v_lo, v_hi, t_lo, t_hi, ccl, dcl)
            full += cap
            remaining += cap * soc / 100.0
            ccl_min, dcl_min = min(ccl_min, ccl), min(dcl_min, dcl)
        self.full_capacity_ah = full
        self.remaining_capacity_ah = remaining
        self.soc_pct = 100.0 * remaining / full
        self.soh_pct = 100.0 * full / (nominal * b.n_racks)
        self._limits = (b.n_racks * ccl_min, b.n_racks * dcl_min)
        self._update_limits()

    def _update_limits(self) -> None:
        """Publish the limits (zero while tripped or asleep) and the overcurrent thresholds."""
        if self.trip_latched or self.sleep_cmd:
            self._update_limits_zero()
            return
        ccl, dcl = self._limits
        self.charge_current_limit_a = ccl
        self.discharge_current_limit_a = dcl
        cfg = self.cfg
        gain = 1.0 + cfg.overcurrent_margin_pct / 100.0
        self._oc_charge_a = ccl * gain + cfg.overcurrent_margin_a
        self._oc_discharge_a = dcl * gain + cfg.overcurrent_margin_a

    def _update_limits_zero(self) -> None:
        self.charge_current_limit_a = 0.0
        self.discharge_current_limit_a = 0.0

    def _alarms(self, dt_s: float) -> None:
        cfg = self.cfg
        self.alarm_cell_ov = self.max_cell_v > cfg.cell_ov_v
        self.alarm_cell_uv = self.min_cell_v < cfg.cell_uv_v
        self.alarm_cell_ot = self.max_cell_temp_degc > cfg.cell_ot_degc
        self.alarm_cell_ut = self.min_cell_temp_degc < cfg.cell_ut_degc
        self.alarm_imbalance = (self.max_cell_soc_pct - self.min_cell_soc_pct
                                > cfg.imbalance_alarm_pct)
        timers = self._prot_timers
        for cause in timers:
            if getattr(self, f"alarm_{cause}"):
                timers[cause] += dt_s
                if timers[cause] >= cfg.protection_delay_s - _EPS_S and not self.trip_latched:
                    self.trip(cause)
            else:
                timers[cause] = 0.0

    def _balancing(self) -> None:
        b = self._b
        if not (self.balancing_cmd and not self.sleep_cmd):
            b.bleed_mask = None
            self.balancing_active = False
            self.balancing_cells = 0
            return
        soc = b.cell_soc_pct
        mask = soc > soc.min(axis=1, keepdims=True) + self.cfg.balancing_threshold_pct
        b.bleed_mask = mask.astype(float)
        b.bleed_current_a = self.cfg.balancing_current_a
        self.balancing_cells = int(mask.sum())
        self.balancing_active = self.balancing_cells > 0
