"""Battery: parallel racks of series LFP cells with spread, resistance and heat.

Fast path (every step, pure Python on per-rack lists): each rack is a
Thevenin source, its OCV (sum of cell OCVs) linearised around the last
scan in the rack's net discharged charge ``q_ah``; the racks in parallel
give the bus voltage and how the current splits (so unequal racks share
unequally and circulate a little). The pack current follows from the DC
power drawn by the inverter, solving ``P = (E - I R) I`` exactly.

Slow path (``scan``, every ``bms.cell_scan_period_s``, numpy on cell
arrays): each cell's SOC moves by the rack's charge since the last scan
divided by the cell's own capacity (so cells drift apart), passive
balancing bleeds chosen cells, the lumped thermal model of each rack is
integrated exactly over the interval, and cell temperatures, resistances,
OCVs and terminal voltages are recomputed together with the rack
linearisation used by the fast path.

Coulombic efficiency applies to charge: charging ``x`` Ah stores ``eta * x``.
"""

from __future__ import annotations

import math

import numpy as np

from sim.config import BatteryConfig
from sim.ocv import OcvCurve
from sim.variables import Indexed, Var


class RackBattery:
    """Physical state of one rack (a view into the Battery's per-rack lists)."""

    __slots__ = ("_b", "_k")

    VARS = (
        Var("current_a", "A", False, "float", "rack DC current, + = discharge"),
        Var("ocv_v", "V", False, "float", "rack open-circuit voltage (sum of cell OCVs)"),
        Var("temperature_degc", "degC", False, "float", "lumped rack temperature"),
        Var("soc_pct", "%", False, "float", "true mean cell SOC of the rack"),
    )

    def __init__(self, battery: Battery, index: int) -> None:
        self._b = battery
        self._k = index

    @property
    def current_a(self) -> float:
        return self._b._i[self._k]

    @property
    def ocv_v(self) -> float:
        b, k = self._b, self._k
        return b._ocv0[k] + b._docv[k] * (b._q[k] - b._qs[k])

    @property
    def temperature_degc(self) -> float:
        return self._b._temp[self._k]

    @property
    def soc_pct(self) -> float:
        b, k = self._b, self._k
        return b._soc_mean[k] - 100.0 * (b._q[k] - b._qs[k]) / b._cap_mean[k]


class Battery:
    """Racks of cells: electrical fast path per step, cells and heat per scan."""

    VARS = (
        Var("voltage_v", "V", False, "float", "terminal (DC bus side) voltage; OCV when open"),
        Var("current_a", "A", False, "float", "pack DC current, + = discharge"),
        Var("power_w", "W", False, "float", "DC power, + = discharge"),
        Var("ocv_v", "V", False, "float", "open-circuit voltage of the parallel racks"),
        Var("soc_pct", "%", False, "float", "true capacity-weighted mean cell SOC"),
        Var("temperature_degc", "degC", False, "float", "mean rack temperature"),
        Var("ambient_degc", "degC", True, "float", "ambient temperature (also inverter)"),
        Var("heater_cmd", "", True, "bool", "heater on (heater_power_w per rack)"),
        Var("fan_cmd", "", True, "bool", "cooling fan on"),
        Var("inject_heat_w", "W", True, "float", "fault: extra heat into every rack"),
        Var("inject_cell_index", "", True, "int", "fault: flat index of the targeted cell"),
        Var("inject_cell_soc_offset_pct", "%", True, "float",
            "fault: SOC offset of the targeted cell (weak/low cell)"),
        Var("inject_cell_capacity_fade_pct", "%", True, "float",
            "fault: capacity loss of the targeted cell"),
    )

    def __init__(self, cfg: BatteryConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.ocv = OcvCurve(cfg.ocv_soc_pct, cfg.ocv_cell_v)
        self.n_racks = n = cfg.n_racks
        self.n_cells = cfg.cells_per_rack
        self.ambient_degc = cfg.ambient_degc
        self.heater_cmd = False
        self.fan_cmd = False
        self.inject_heat_w = 0.0
        self.inject_cell_index = 0
        self.inject_cell_soc_offset_pct = 0.0
        self.inject_cell_capacity_fade_pct = 0.0
        self.bleed_mask: np.ndarray | None = None  # set by the BMS
        self.bleed_current_a = 0.0
        self._init_cells(rng)
        self._q = [0.0] * n        # net discharged charge per rack, Ah
        self._qs = [0.0] * n       # _q at the last scan
        self._i = [0.0] * n        # rack currents, A
        self._i2t = [0.0] * n      # integral of i^2 dt since the last scan
        self._temp = [cfg.initial_temperature_degc] * n
        self._ocv0 = [0.0] * n     # rack OCV at the last scan
        self._docv = [0.0] * n     # d(rack OCV)/d(q_ah) at the last scan
        self._cond = [0.0] * n     # 1 / rack resistance
        self._cond_sum = 0.0
        self._ocv_now = [0.0] * n
        self._soc_mean = [0.0] * n
        self._cap_mean = self.cap.mean(axis=1).tolist()
        self._eta = cfg.coulombic_efficiency
        self.current_a = 0.0
        self.power_w = 0.0
        self.voltage_v = 0.0
        self._open = True
        self.racks = Indexed(RackBattery(self, k) for k in range(n))
        self.scan(0.0)

    def _init_cells(self, rng: np.random.Generator) -> None:
        """Seeded cell-to-cell spread, normalised so each rack mean is nominal."""
        cfg, shape = self.cfg, (self.n_racks, self.n_cells)
        cap = 1.0 + cfg.capacity_spread_pct / 100.0 * rng.standard_normal(shape)
        cap = np.clip(cap / cap.mean(axis=1, keepdims=True), 0.5, 1.5)
        self._cap_base = cfg.cell_capacity_ah * cfg.soh_pct / 100.0 * cap
        self.cap = self._cap_base.copy()
        rack_off = cfg.rack_soc_spread_pct * rng.standard_normal((self.n_racks, 1))
        cell_off = cfg.soc_spread_pct * rng.standard_normal(shape)
        soc = (cfg.initial_soc_pct + rack_off - rack_off.mean()
               + cell_off - cell_off.mean(axis=1, keepdims=True))
        self.soc = np.clip(soc, 0.0, 100.0)
        r = 1.0 + cfg.resistance_spread_pct / 100.0 * rng.standard_normal(shape)
        r25 = cfg.cell_resistance_ohm * np.clip(r, 0.3, 3.0)
        self._r_ref = r25 * np.exp(25.0 * cfg.resistance_temp_coeff_per_degc)  # R = R_ref e^(-kT)
        # Cells in the middle of a module run warmer than those at its ends.
        pos = np.arange(self.n_cells) % cfg.cells_per_module
        middle = np.sin(np.pi * (pos + 0.5) / cfg.cells_per_module)
        self._heat_gain = np.clip(0.85 + 0.3 * middle + 0.05 * rng.standard_normal(shape),
                                  0.5, 1.5)
        self._temp_offset = cfg.temperature_spread_degc * rng.standard_normal(shape)
        self._cap_fade_applied = (0, 0.0)
        self._inv_cap = 1.0 / self.cap
        self.cells = np.zeros((3,) + shape)
        self.cells_flat = self.cells.reshape(3, -1)  # a view
        self.cell_v, self.cell_temp_degc, self.cell_soc_pct = self.cells

    # ------------------------------------------------------------ fast path

    def step(self, dt_s: float, p_dc_w: float, closed: bool) -> None:
        """Draw ``p_dc_w`` (+ = discharge) from the racks for ``dt_s`` seconds."""
        if not closed:
            if not self._open:
                self._set_open()
            return
        self._open = False
        n, q, qs, o0, g, c = self.n_racks, self._q, self._qs, self._ocv0, self._docv, self._cond
        ocv = self._ocv_now
        num = 0.0
        for k in range(n):
            e = o0[k] + g[k] * (q[k] - qs[k])
            ocv[k] = e
            num += e * c[k]
        r_eq = 1.0 / self._cond_sum
        e_eq = num * r_eq
        disc = e_eq * e_eq - 4.0 * r_eq * p_dc_w
        i = 2.0 * p_dc_w / (e_eq + math.sqrt(disc)) if disc > 0.0 else 0.5 * e_eq / r_eq
        v = e_eq - i * r_eq
        h = dt_s / 3600.0
        eta_h = self._eta * h
        cur, i2t = self._i, self._i2t
        for k in range(n):
            ik = (ocv[k] - v) * c[k]
            cur[k] = ik
            q[k] += ik * h if ik > 0.0 else ik * eta_h
            i2t[k] += ik * ik * dt_s
        self.current_a = i
        self.voltage_v = v
        self.power_w = v * i

    def _set_open(self) -> None:
        self._open = True
        for k in range(self.n_racks):
            self._i[k] = 0.0
        self.current_a = 0.0
        self.power_w = 0.0
        self.voltage_v = self.ocv_v

    @property
    def ocv_v(self) -> float:
        """Open-circuit voltage of the racks in parallel (conductance-weighted)."""
        num = 0.0
        for k in range(self.n_racks):
            num += (self._ocv0[k] + self._docv[k] * (self._q[k] - self._qs[k])) * self._cond[k]
        return num / self._cond_sum

    @property
    def soc_pct(self) -> float:
        return sum(r.soc_pct * c for r, c in zip(self.racks, self._cap_mean)) / sum(
            self._cap_mean)

    @property
    def temperature_degc(self) -> float:
        return sum(self._temp) / self.n_racks

    # ------------------------------------------------------------ slow path

    def scan(self, dt_s: float) -> None:
        """Advance cells and heat over the last ``dt_s`` and refresh the fast-path model."""
        q = np.array(self._q)
        self.soc -= (100.0 * (q - np.array(self._qs)))[:, None] * self._inv_cap
        self._qs = q.tolist()
        if self.bleed_mask is not None and dt_s > 0.0:
            bled_pct_ah = 100.0 * self.bleed_current_a * dt_s / 3600.0
            self.soc -= self.bleed_mask * bled_pct_ah * self._inv_cap
        self._apply_capacity_fade()
        self._thermal(dt_s)
        self._cells()
        if self._open:
            self.voltage_v = self.ocv_v

    def _apply_capacity_fade(self) -> None:
        wanted = (int(self.inject_cell_index), float(self.inject_cell_capacity_fade_pct))
        if wanted != self._cap_fade_applied:
            self.cap = self._cap_base.copy()
            self.cap.flat[self.target_cell()] *= max(0.01, 1.0 - wanted[1] / 100.0)
            self._cap_mean = self.cap.mean(axis=1).tolist()
            self._inv_cap = 1.0 / self.cap
            self._cap_fade_applied = wanted

    def _thermal(self, dt_s: float) -> None:
        """Exact step of C dT/dt = P - h (T - T_amb) per rack with constant P over dt."""
        if dt_s <= 0.0:
            return
        cfg, amb = self.cfg, self.ambient_degc
        h = cfg.cooling_w_per_degc + (cfg.fan_cooling_w_per_degc if self.fan_cmd else 0.0)
        decay = math.exp(-h * dt_s / cfg.heat_capacity_j_per_degc)
        extra = self.inject_heat_w + (cfg.heater_power_w if self.heater_cmd else 0.0)
        for k in range(self.n_racks):
            heat_w = self._i2t[k] * self._r_rack[k] / dt_s + extra
            self._i2t[k] = 0.0
            self._temp[k] = amb + (self._temp[k] - amb) * decay + heat_w / h * (1.0 - decay)

    def _cells(self) -> None:
        """Cell temperatures, resistances, OCVs, voltages; rack linearisation.

        Results land in ``self.cells`` (rows: voltage, temperature, SOC) so
        the BMS can reduce all three with one numpy call per statistic.
        """
        amb, n = self.ambient_degc, self.n_cells
        volt, temp, soc = self.cells
        np.multiply(self._heat_gain, np.array(self._temp)[:, None] - amb, out=temp)
        temp += self._temp_offset
        temp += amb
        r = self._r_ref * np.exp(temp * -self.cfg.resistance_temp_coeff_per_degc)
        np.copyto(soc, self.soc)
        if self.inject_cell_soc_offset_pct:
            soc.flat[self.target_cell()] += self.inject_cell_soc_offset_pct
        ocv = self.ocv(soc)
        d_ocv_d_q = (self.ocv.slope(soc) * self._inv_cap).sum(axis=1) * -100.0
        self._r_rack = (r.sum(axis=1) + self.cfg.rack_resistance_ohm).tolist()
        self._cond = [1.0 / x for x in self._r_rack]
        self._cond_sum = sum(self._cond)
        self._ocv0 = ocv.sum(axis=1).tolist()
        self._docv = d_ocv_d_q.tolist()
        self._soc_mean = (soc.sum(axis=1) * (1.0 / n)).tolist()
        np.subtract(ocv, np.array(self._i)[:, None] * r, out=volt)
        self.cell_ocv_v = ocv
        self.cell_resistance_ohm = r

    def soc_effective(self) -> np.ndarray:
        """Cell SOC including the injected offset of the targeted cell (a copy)."""
        soc = self.soc.copy()
        if self.inject_cell_soc_offset_pct:
            soc.flat[self.target_cell()] += self.inject_cell_soc_offset_pct
        return soc

    def target_cell(self) -> int:
        """Flat index of the fault-injection cell, clamped to the valid range."""
        return min(max(int(self.inject_cell_index), 0), self.n_racks * self.n_cells - 1)

    def cell_position(self, flat_index: int) -> tuple[int, int, int]:
        """(rack, module, cell-in-module), 0-based, of a flat cell index."""
        rack, cell = divmod(int(flat_index), self.n_cells)
        module, cell = divmod(cell, self.cfg.cells_per_module)
        return rack, module, cell
