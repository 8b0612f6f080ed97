"""Grid connection: frequency (noise, CSV, override, ramps), voltage, outage, meter.

Frequency sources: "noise" = nominal + stationary Ornstein-Uhlenbeck noise
(``frequency_sigma_hz``, ``frequency_tau_s``) precomputed on a 1 s grid and
interpolated; "csv" = ``t_s,frequency_hz`` interpolated; "nominal" =
constant. A non-NaN ``frequency_override_hz`` replaces the source; the
scripted ``frequency_ramp`` event moves that override towards a target at
a fixed rate. Frequency time base: elapsed ``t_s`` (like scripted events).

Phase voltages: nominal x (1 + slow noise) x fixed per-phase imbalance,
the noise held for each second (no interpolation needed at this size).

During an outage the grid side reads 0 V / 0 Hz. The meter measures the
site bus: the grid when present, the grid-forming inverter's nominal
voltage and frequency when islanded, zero when the site is dark.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import numpy as np

from sim.config import GridConfig
from sim.profiles import Series, ar1, bad_samples, csv_series
from sim.variables import Var

log = logging.getLogger(__name__)

NAN = math.nan


class Grid:
    """The public grid at the point of connection."""

    VARS = (
        Var("outage", "", True, "bool", "fault: grid outage (no voltage, no frequency)"),
        Var("frequency_override_hz", "Hz", True, "float",
            "fault: force the grid frequency (NaN = not used)"),
        Var("frequency_hz", "Hz", False, "float", "grid frequency (0 during an outage)"),
        Var("voltage_v", "V", False, "float", "mean phase voltage L-N (0 during an outage)"),
        Var("nominal_frequency_hz", "Hz", False, "float", "nominal frequency"),
        Var("frequency_ramp_active", "", False, "bool", "a scripted ramp is moving the override"),
    )

    def __init__(self, cfg: GridConfig, horizon_s: int, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.nominal_frequency_hz = cfg.nominal_frequency_hz
        self.outage = False
        self.frequency_override_hz = NAN
        self.frequency_ramp_active = False
        self._ramp_target_hz = self._ramp_rate_hz_per_s = 0.0
        if cfg.frequency_source == "csv":
            self._freq = csv_series(cfg.frequency_csv_path, "frequency_hz", cfg.frequency_csv_end, own_resolution=True)
            bad = bad_samples(cfg.frequency_csv_path, "frequency_hz")
            if bad:
                log.warning("%s: %d bad sample(s) (NaN, the meter reads no frequency there) at line(s) %s",
                            cfg.frequency_csv_path, len(bad), ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else ""))
        elif cfg.frequency_source == "noise" and cfg.frequency_sigma_hz > 0:
            self._freq = Series(cfg.nominal_frequency_hz
                                + ar1(horizon_s, cfg.frequency_tau_s, cfg.frequency_sigma_hz, rng))
        else:
            self._freq = Series.constant(cfg.nominal_frequency_hz)
        noise = ar1(horizon_s, cfg.voltage_tau_s, cfg.voltage_sigma_pct / 100.0, rng)
        self._volt = (cfg.nominal_voltage_v * (1.0 + noise)).tolist()
        imbalance = 1.0 + cfg.phase_imbalance_pct / 100.0 * rng.standard_normal(3)
        self.phase_factors = tuple((imbalance / imbalance.mean()).tolist())
        self.frequency_hz = self.voltage_v = 0.0
        self.step(0.0, 0.0)

    def step(self, dt_s: float, t_s: float) -> None:
        """Frequency and voltage at elapsed time t_s."""
        f = self.frequency_override_hz
        if self.frequency_ramp_active:
            f = self._advance_ramp(dt_s)
        if self.outage:
            self.frequency_hz = self.voltage_v = 0.0
            return
        self.frequency_hz = f if f == f else self._freq.at(t_s)
        volt = self._volt
        self.voltage_v = volt[int(t_s) % len(volt)]

    def start_ramp(self, target_hz: float, rate_hz_per_s: float) -> None:
        """Ramp the override from the present frequency to target_hz."""
        f = self.frequency_override_hz
        if f != f:
            f = self.frequency_hz if not self.outage else self.nominal_frequency_hz
        self.frequency_override_hz = f
        self._ramp_target_hz = target_hz
        self._ramp_rate_hz_per_s = rate_hz_per_s
        self.frequency_ramp_active = True

    def release(self) -> None:
        """Back to the configured frequency source."""
        self.frequency_override_hz = NAN
        self.frequency_ramp_active = False

    def _advance_ramp(self, dt_s: float) -> float:
        f, target = self.frequency_override_hz, self._ramp_target_hz
        step = self._ramp_rate_hz_per_s * dt_s
        if f != f or abs(target - f) <= step:
            f = target
            self.frequency_ramp_active = False
        else:
            f += step if target > f else -step
        self.frequency_override_hz = f
        return f

    def source_frequency_hz(self, t_s: float) -> float:
        """The configured source (noise/CSV/nominal) at t_s, ignoring overrides."""
        return self._freq.at(t_s)


class ReactiveLoad(Protocol):
    @property
    def q_var(self) -> float: ...


class ReactiveSource(Protocol):
    @property
    def q_ac_var(self) -> float: ...


class Meter:
    """Energy meter at the point of connection; P + = import from the grid."""

    VARS = (
        Var("p_w", "W", False, "float", "active power, + = import"),
        Var("q_var", "var", False, "float", "reactive power, + = import (inductive)"),
        Var("s_va", "VA", False, "float", "apparent power"),
        Var("pf", "", False, "float", "power factor |P|/S (1 at no load)"),
        Var("frequency_hz", "Hz", False, "float", "site bus frequency"),
        *(Var(f"v_l{p}_v", "V", False, "float", f"phase {p} voltage (L-N)") for p in (1, 2, 3)),
        *(Var(f"i_l{p}_a", "A", False, "float", f"phase {p} current") for p in (1, 2, 3)),
        *(Var(f"p_l{p}_w", "W", False, "float", f"phase {p} active power") for p in (1, 2, 3)),
        Var("import_energy_wh", "Wh", False, "float", "imported energy counter"),
        Var("export_energy_wh", "Wh", False, "float", "exported energy counter"),
        Var("comm_ok", "", True, "bool", "fault: False = meter communication lost"),
    )

    def __init__(self) -> None:
        self.p_w = 0.0
        self.import_energy_wh = 0.0
        self.export_energy_wh = 0.0
        self.comm_ok = True
        self._bus: object = None  # the grid, or the island/dark bus (voltage_v, frequency_hz)
        self._q_source: tuple[ReactiveLoad, ReactiveSource] | None = None  # for the reactive balance
        self._grid_connected = True

    def connect(self, load: ReactiveLoad, inverter: ReactiveSource) -> None:
        self._q_source = (load, inverter)

    def set_bus(self, bus: object, grid_connected: bool) -> None:
        """What forms the site bus: the grid, or an island/dark nominal bus."""
        self._bus = bus
        self._grid_connected = grid_connected

    def update(self, dt_s: float, p_w: float) -> None:
        """New active power; integrate the energy counters."""
        self.p_w = p_w
        if p_w > 0.0:
            self.import_energy_wh += p_w * dt_s / 3600.0
        elif p_w < 0.0:
            self.export_energy_wh -= p_w * dt_s / 3600.0

    @property
    def frequency_hz(self) -> float:
        return self._bus.frequency_hz  # type: ignore[attr-defined]

    @property
    def voltage_v(self) -> float:
        return self._bus.voltage_v  # type: ignore[attr-defined]

    @property
    def q_var(self) -> float:
        if not self._grid_connected:
            return 0.0
        assert self._q_source is not None, "the plant connects the meter before its first step"
        load, inverter = self._q_source
        return load.q_var - inverter.q_ac_var

    @property
    def s_va(self) -> float:
        return math.hypot(self.p_w, self.q_var)

    @property
    def pf(self) -> float:
        s = self.s_va
        return abs(self.p_w) / s if s > 0.0 else 1.0

    def phase_v(self, k: int) -> float:
        bus = self._bus
        return bus.voltage_v * bus.phase_factors[k]  # type: ignore[attr-defined]

    def _phase_i(self, k: int) -> float:
        v = self.phase_v(k)
        return self.s_va / (3.0 * v) if v > 0.0 else 0.0

    v_l1_v = property(lambda self: self.phase_v(0))
    v_l2_v = property(lambda self: self.phase_v(1))
    v_l3_v = property(lambda self: self.phase_v(2))
    i_l1_a = property(lambda self: self._phase_i(0))
    i_l2_a = property(lambda self: self._phase_i(1))
    i_l3_a = property(lambda self: self._phase_i(2))
    p_l1_w = p_l2_w = p_l3_w = property(lambda self: self.p_w / 3.0)
