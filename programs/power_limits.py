"""Charge limiter: how much the battery may charge and discharge right now, and why.

Each side's allowed power is the minimum of the BMS limits, the inverter rating (less what
reactive power takes), the grid-code limits, the SOC taper near full and empty, temperature
derating, cell-voltage taper and cable/fuse current limits. Decreases apply at once;
increases follow a ramp so the site never jumps to a limit that just reopened. Every limit
is a tag, and so is the one that binds.
"""

from __future__ import annotations

import math

import attrs
from attrs import validators as v

from blocks import Curve
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, Quality, TagSpec
from programs.enums import LimitSource
from programs.tagdefs import Layout, status

Points = tuple[tuple[float, float], ...]
GOOD = Quality.GOOD
FINITE = 3.0e38  # "no limit" as a float32 can carry it
REACHED_PCT = 0.1  # a SOC limit counts as reached this close to it


@attrs.frozen
class Params:
    inverter_rated_p_w: float = attrs.field(default=5000.0, validator=v.gt(0))
    inverter_rated_s_va: float = attrs.field(default=5000.0, validator=v.gt(0))
    grid_code_charge_w: float = attrs.field(default=math.inf, validator=v.ge(0))
    grid_code_discharge_w: float = attrs.field(default=math.inf, validator=v.ge(0))
    max_charge_current_a: float = attrs.field(default=math.inf, validator=v.ge(0))
    max_discharge_current_a: float = attrs.field(default=math.inf, validator=v.ge(0))
    soc_taper_pct: float = attrs.field(default=5.0, validator=v.gt(0))
    # Once SOC has reached a limit, that side stays blocked until SOC is this far back: no micro-cycles.
    soc_hysteresis_pct: float = attrs.field(default=2.0, validator=v.ge(0))
    # Derating factor (0..1) against cell temperature; the worse of the min and max cell applies.
    charge_derate_curve: Points = ((-10.0, 0.0), (0.0, 0.0), (5.0, 0.3), (15.0, 1.0), (40.0, 1.0),
                                   (45.0, 0.5), (50.0, 0.0))
    discharge_derate_curve: Points = ((-20.0, 0.0), (-10.0, 0.5), (0.0, 1.0), (45.0, 1.0), (50.0, 0.5),
                                      (55.0, 0.0))
    # Cell-voltage taper: full power below the first voltage, none at the second.
    charge_cell_v_taper: tuple[float, float] = (3.45, 3.60)
    discharge_cell_v_taper: tuple[float, float] = (3.00, 2.80)
    ramp_up_w_per_s: float = attrs.field(default=2000.0, validator=v.gt(0))
    modbus_input_base: int | None = 3100


CHARGE_SOURCES = ("bms", "inverter", "grid_code", "soc", "temperature", "cell_voltage", "current")
SOURCE_ENUMS = (LimitSource.BMS, LimitSource.INVERTER, LimitSource.GRID_CODE, LimitSource.SOC_TAPER,
                LimitSource.TEMPERATURE, LimitSource.CELL_VOLTAGE, LimitSource.CURRENT)
INPUTS = ("bms_charge_limit_a", "bms_discharge_limit_a", "battery_voltage_v", "soc_pct", "cell_v_min_v",
          "cell_v_max_v", "cell_t_min_degc", "cell_t_max_degc")


def _taper(x: float, full_at: float, zero_at: float) -> float:
    """1 at or beyond `full_at`, 0 at or beyond `zero_at`, linear between (either direction)."""
    if full_at == zero_at:
        return 1.0 if (x < zero_at if zero_at > full_at else x > zero_at) else 0.0
    f = (zero_at - x) / (zero_at - full_at)
    return 0.0 if f <= 0.0 else (1.0 if f >= 1.0 else f)


class PowerLimits(Program):
    """Computes `limit_charge_w` and `limit_discharge_w` (both >= 0) every scan."""

    kind = "power_limits"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params
        self.charge_curve = Curve(params.charge_derate_curve)
        self.discharge_curve = Curve(params.discharge_derate_curve)
        self.charge_out = 0.0
        self.discharge_out = 0.0
        self.full = False
        self.empty = False

    def declare(self) -> list[TagSpec]:
        layout = Layout(None, self.p.modbus_input_base)
        specs = [
            status(layout, "limit_charge_w", DType.FLOAT32, "Allowed charge power now", "W"),
            status(layout, "limit_discharge_w", DType.FLOAT32, "Allowed discharge power now", "W"),
            status(layout, "limit_charge_source", DType.ENUM, "Limit that binds charging", enum_cls=LimitSource),
            status(layout, "limit_discharge_source", DType.ENUM, "Limit that binds discharging",
                   enum_cls=LimitSource),
        ]
        for source in CHARGE_SOURCES:
            for side in ("charge", "discharge"):
                specs.append(status(layout, f"limit_{source}_{side}_w", DType.FLOAT32,
                                    f"{side.capitalize()} limit from {source.replace('_', ' ')}", "W"))
        return specs

    def bind(self, tags: TagLookup) -> None:
        self.inputs = [tags[name] for name in INPUTS]
        self.q_request = tags["inverter_q_setpoint_var"]
        self.soc_min = tags["soc_min_pct"]
        self.soc_max = tags["soc_max_pct"]
        self.out = {name: tags[name] for name in ("limit_charge_w", "limit_discharge_w", "limit_charge_source",
                                                   "limit_discharge_source")}
        self.charge_tags = [tags[f"limit_{s}_charge_w"] for s in CHARGE_SOURCES]
        self.discharge_tags = [tags[f"limit_{s}_discharge_w"] for s in CHARGE_SOURCES]
        self._temps: tuple[float, float] | None = None
        self._derate = (1.0, 1.0)

    def execute(self, ctx: ScanContext) -> None:
        for tag in self.inputs:
            if tag.quality is not GOOD:
                self._publish(0.0, 0.0, LimitSource.INVALID_INPUTS, LimitSource.INVALID_INPUTS)
                return
        charge, discharge = self.limits()
        for tag, value in zip(self.charge_tags, charge):  # status tags: clip "no limit" to a float32
            tag.set(value if value < FINITE else FINITE)
        for tag, value in zip(self.discharge_tags, discharge):
            tag.set(value if value < FINITE else FINITE)
        c_val, d_val = min(charge), min(discharge)
        c_src, d_src = SOURCE_ENUMS[charge.index(c_val)], SOURCE_ENUMS[discharge.index(d_val)]
        c_val, c_src = self._ramp("charge_out", c_val, c_src, ctx.dt_s)
        d_val, d_src = self._ramp("discharge_out", d_val, d_src, ctx.dt_s)
        self._publish(c_val, d_val, c_src, d_src)

    def limits(self) -> tuple[list[float], list[float]]:
        """Every limit of both sides in W (>= 0), in the order of CHARGE_SOURCES."""
        p = self.p
        ccl_a, dcl_a, volts, soc, v_min, v_max, t_min, t_max = [t.value for t in self.inputs]
        volts = volts if volts > 0.0 else 0.0
        q = self.q_request.value or 0.0
        inverter = math.sqrt(max(p.inverter_rated_s_va ** 2 - q * q, 0.0))
        inverter = min(inverter, p.inverter_rated_p_w)
        soc_min, soc_max = self.soc_min.value, self.soc_max.value
        self._latch_soc(soc, soc_min, soc_max)
        charge_derate, discharge_derate = self._temperature_derate(t_min, t_max)
        charge = [
            max(ccl_a, 0.0) * volts,
            inverter,
            p.grid_code_charge_w,
            0.0 if self.full else inverter * _taper(soc, soc_max - p.soc_taper_pct, soc_max),
            inverter * charge_derate,
            inverter * _taper(v_max, *p.charge_cell_v_taper),
            p.max_charge_current_a * volts,
        ]
        discharge = [
            max(dcl_a, 0.0) * volts,
            inverter,
            p.grid_code_discharge_w,
            0.0 if self.empty else inverter * _taper(soc, soc_min + p.soc_taper_pct, soc_min),
            inverter * discharge_derate,
            inverter * _taper(v_min, *p.discharge_cell_v_taper),
            p.max_discharge_current_a * volts,
        ]
        return charge, discharge

    def _temperature_derate(self, t_min: float, t_max: float) -> tuple[float, float]:
        """Derating factors at the coldest and hottest cell (cached: the BMS updates them slowly)."""
        if self._temps != (t_min, t_max):
            self._temps = (t_min, t_max)
            self._derate = (min(self.charge_curve.value(t_min), self.charge_curve.value(t_max)),
                            min(self.discharge_curve.value(t_min), self.discharge_curve.value(t_max)))
        return self._derate

    def _latch_soc(self, soc: float, soc_min: float, soc_max: float) -> None:
        """Full and empty latch at the limits and release `soc_hysteresis_pct` away from them."""
        band = self.p.soc_hysteresis_pct
        if soc >= soc_max - REACHED_PCT:
            self.full = True
        elif soc <= soc_max - band:
            self.full = False
        if soc <= soc_min + REACHED_PCT:
            self.empty = True
        elif soc >= soc_min + band:
            self.empty = False

    def _ramp(self, attr: str, target: float, source: LimitSource, dt: float) -> tuple[float, LimitSource]:
        """Decreases at once; increases at the ramp rate (the ramp then is the binding limit)."""
        previous = getattr(self, attr)
        if target > previous + self.p.ramp_up_w_per_s * dt:
            target = previous + self.p.ramp_up_w_per_s * dt
            source = LimitSource.RAMP
        setattr(self, attr, target)
        return target, source

    def _publish(self, charge: float, discharge: float, c_src: LimitSource, d_src: LimitSource) -> None:
        if c_src is LimitSource.INVALID_INPUTS:
            self.charge_out = self.discharge_out = 0.0
        out = self.out
        out["limit_charge_w"].set(min(charge, FINITE))
        out["limit_discharge_w"].set(min(discharge, FINITE))
        out["limit_charge_source"].set(c_src)
        out["limit_discharge_source"].set(d_src)
