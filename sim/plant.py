"""The plant: battery + BMS + inverter + grid/meter + PV + load, stepped together.

Model
-----
* Battery (``sim.battery``): racks in parallel, each a series string of
  LFP cells (``modules_per_rack * cells_per_module``). Per cell: capacity,
  initial SOC, resistance and thermal coupling spread (seeded), OCV(SOC)
  from ``sim.ocv``, resistance rising in the cold. Per rack: a lumped
  thermal mass heated by I^2 R, heater and injected heat, cooled towards
  ambient (more with the fan). Coulombic efficiency on charge.
* BMS (``sim.bms``): pack/rack/cell measurements, CCL/DCL tables, alarms,
  protection trips with delays, contactor, passive balancing.
* Inverter (``sim.inverter``): state machine, P/Q setpoints with ramp and
  first-order lag, kVA limit, efficiency curve, heat and derating, trips
  on outage unless grid-forming (then it carries the site in backup).
* Grid (``sim.grid``): frequency (OU noise / CSV / override / scripted
  ramps), phase voltages, outage; meter at the point of connection.
* PV and load (``sim.site``, ``sim.profiles``): precomputed 1 s series.

Each step the site balances exactly:
``load.power_w = pv.power_w + inverter.p_ac_w + meter.p_w`` (served load;
in an outage the meter reads 0, and with a running grid-forming inverter
the load is shed / PV curtailed to what the inverter and BMS limits allow,
otherwise the site is dark: PV 0, load 0).

Randomness (cell spread, clouds, load noise and spikes, frequency and
voltage noise) comes only from ``numpy.random.default_rng([seed, stream])``
created here, so the same seed and the same commands give identical
trajectories.

Simplifications (chosen for speed; documented where they matter):
* No RC polarisation: cell voltage = OCV - I R.
* The fast path (every step) only does per-rack arithmetic; cell arrays,
  heat, BMS cell statistics, limits and V/T alarms, and inverter heat are
  updated every ``bms.cell_scan_period_s`` (1 s) of simulated time, like a
  real BMS scan. Pack current/voltage and overcurrent are every step.
* One main contactor for all racks; racks share current through their
  Thevenin equivalents (circulating currents included).
* Profiles are 1 s grids; CSV detail finer than 1 s is lost.
* Derived readings (phase values, S, PF, efficiency, per-rack views) are
  properties computed when read, so unread values cost nothing.

Time
----
``plant.t_s`` is elapsed simulated time from 0. PV and load use the time of
day ``start_time_of_day_s + t_s``; frequency CSV and scripted events use
``t_s``.

Variable naming scheme
----------------------
Every bindable value is a dotted attribute path from the plant, e.g.
``bms.soc_pct``, ``inverter.p_setpoint_w``, ``meter.v_l1_v``; per-rack
values are ``bms.racks.<k>.<name>`` and ``battery.racks.<k>.<name>`` with
0-based k (the home site has rack 0 only). Cell positions reported by the
BMS (``bms.max_cell_v_rack/_module/_cell``) and the fault-injection index
``battery.inject_cell_index`` (flat: rack-major, then module, then cell)
are 0-based too. Units are in the name (``_w``, ``_var``, ``_va``, ``_v``,
``_a``, ``_hz``, ``_pct``, ``_degc``, ``_s``, ``_wh``, ``_ah``); flags and
counts have none. Because rack tuples also expose their items as
attributes "0", "1", ..., ``operator.attrgetter(path)(plant)`` works for
every path. Faster: ``plant.getter(path)`` / ``plant.setter(path)`` return
prebuilt callables (``functools.partial`` of getattr/setattr on the owning
object), ``plant.get(path)`` / ``plant.set(path, value)`` use the same
tables. ``plant.variables()`` lists every path with unit, writability,
type and description; writable ones are commands and fault injections.
``set`` converts the value to the variable's type, ``setter`` does not
(the driver writes typed values). NaN means "not used" for overrides and
limits.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from sim.battery import Battery, RackBattery
from sim.bms import Bms, RackBms
from sim.config import PlantConfig
from sim.events import EventQueue, check_events
from sim.grid import Grid, Meter
from sim.inverter import RUNNING, Inverter
from sim.profiles import load_series, pv_series
from sim.site import Load, Pv, Site
from sim.variables import Var, VariableInfo, coerce, infos

#: Independent random streams, keyed so adding one does not shift the others.
_STREAM_CELLS, _STREAM_PV, _STREAM_LOAD, _STREAM_GRID = 1, 2, 3, 4

_PLANT_VARS = (
    Var("t_s", "s", False, "float", "elapsed simulated time"),
    Var("time_of_day_s", "s", False, "float", "time of day used by the PV/load profiles"),
)

_OBJECTS = (("battery", Battery), ("bms", Bms), ("inverter", Inverter), ("grid", Grid),
            ("meter", Meter), ("pv", Pv), ("load", Load), ("site", Site))


def variables(cfg: PlantConfig | None = None) -> dict[str, VariableInfo]:
    """Every bindable dotted path of a plant built from ``cfg`` (home by default)."""
    cfg = cfg or PlantConfig.home()
    out = infos("", _PLANT_VARS)
    for name, cls in _OBJECTS:
        out.update(infos(name, cls.VARS))
    for k in range(cfg.battery.n_racks):
        out.update(infos(f"battery.racks.{k}", RackBattery.VARS))
        out.update(infos(f"bms.racks.{k}", RackBms.VARS))
    return out


class Plant:
    """The simulated site. ``Plant(cfg)``, then ``step(dt_s)`` once per period."""

    def __init__(self, cfg: PlantConfig | None = None) -> None:
        self.config = cfg = cfg or PlantConfig.home()
        horizon = cfg.profile_horizon_s

        def rng(stream: int) -> np.random.Generator:
            return np.random.default_rng([cfg.seed, stream])

        self.battery = Battery(cfg.battery, rng(_STREAM_CELLS))
        self.bms = Bms(cfg.bms, self.battery)
        self.inverter = Inverter(cfg.inverter, cfg.battery.ambient_degc)
        self.grid = Grid(cfg.grid, horizon, rng(_STREAM_GRID))
        self.meter = Meter()
        self.pv = Pv(cfg.pv, pv_series(cfg.pv, horizon, rng(_STREAM_PV)))
        self.load = Load(cfg.load, load_series(cfg.load, horizon, rng(_STREAM_LOAD)))
        self.site = Site(cfg.site)
        self.inverter.connect(self.meter, self.battery)
        self.meter.connect(self.load, self.inverter)
        self.t_s = 0.0
        self._tod0 = cfg.start_time_of_day_s
        self._scan_period = cfg.bms.cell_scan_period_s
        self._last_scan = 0.0
        self._next_scan = self._scan_period
        self._estop_hardwired = cfg.site.estop_hardwired
        self._variables = variables(cfg)
        check_events(cfg.events, self._variables)
        self._events = EventQueue(cfg.events)
        self._next_event = self._events.next_t_s
        self._bus_mode = ""
        self._set_bus("grid")
        self._getters: dict[str, Callable[[], Any]] = {}
        self._setters: dict[str, Callable[[Any], None]] = {}
        self._build_resolvers()

    # ------------------------------------------------------------ stepping

    def step(self, dt_s: float) -> None:
        """Advance the whole plant by dt_s seconds (> 0)."""
        t = self.t_s
        if t >= self._next_event:
            self._fire_events(t)
        t += dt_s
        self.t_s = t
        tod = t + self._tod0
        grid = self.grid
        grid.step(dt_s, t)
        pv_w = self.pv.potential(tod)
        load_w = self.load.demand(tod)
        if self._estop_hardwired:
            self.bms.external_trip = self.inverter.estop = self.site.estop_pressed
        closed = self.bms.contactor_closed
        inv = self.inverter
        if not grid.outage:
            inv.step(dt_s, True, closed)
            meter_p = load_w - pv_w - inv.p_ac_w
            if self._bus_mode != "grid":
                self._set_bus("grid")
        else:
            pv_w, load_w = self._outage(dt_s, pv_w, load_w, closed)
            meter_p = 0.0
        self.pv.power_w = pv_w
        self.load.power_w = load_w
        self.battery.step(dt_s, inv.p_dc_w, closed)
        self.bms.step(dt_s)
        self.meter.update(dt_s, meter_p)
        if t >= self._next_scan:
            self._scan(t)

    def _outage(self, dt_s: float, pv_w: float, load_w: float,
                closed: bool) -> tuple[float, float]:
        """Backup (grid-forming inverter running) or a dark site; returns (pv, load)."""
        inv = self.inverter
        inv.step(dt_s, False, closed)
        if inv.state_code != RUNNING:
            self._set_bus("dark")
            return 0.0, 0.0
        v_dc, bms = self.battery.voltage_v, self.bms
        dis_max = min(inv.p_max_w, max(0.0, inv.ac_from_dc(bms.discharge_current_limit_a * v_dc)))
        ch_max = min(inv.p_max_w, max(0.0, -inv.ac_from_dc(-bms.charge_current_limit_a * v_dc)))
        need = load_w - pv_w
        if need > dis_max:
            load_w, need = pv_w + dis_max, dis_max
        elif need < -ch_max:
            pv_w, need = load_w + ch_max, -ch_max
        self.load.power_w = load_w
        inv.supply_island(dt_s, need, self.load.q_var)
        self._set_bus("island")
        return pv_w, load_w

    def _set_bus(self, mode: str) -> None:
        """Point the meter (and so the inverter terminals) at what forms the bus."""
        if mode == self._bus_mode:
            return
        self._bus_mode = mode
        g = self.grid
        if mode == "grid":
            self.meter.set_bus(g, True)
        elif mode == "island":
            self.meter.set_bus(_NominalBus(g.cfg.nominal_voltage_v, g.nominal_frequency_hz),
                               False)
        else:
            self.meter.set_bus(_NominalBus(0.0, 0.0), False)

    def _scan(self, t: float) -> None:
        """Slow tick: cells, heat, BMS statistics/limits/alarms, inverter heat."""
        dt = t - self._last_scan
        self._last_scan = t
        self._next_scan += self._scan_period
        if self._next_scan <= t:
            self._next_scan = t + self._scan_period
        self._next_scan -= 1e-9  # tolerate accumulated float error in t
        self.battery.scan(dt)
        self.bms.scan(dt)
        self.inverter.scan(dt, self.battery.ambient_degc)

    def _fire_events(self, t: float) -> None:
        for ev in self._events.pop_due(t):
            if ev.kind == "set":
                info = self._variables[ev.variable]
                self._setters[ev.variable](coerce(ev.value, info.type, ev.variable))
            elif ev.kind == "frequency_step":
                self.grid.frequency_ramp_active = False
                self.grid.frequency_override_hz = float(ev.value)
            elif ev.kind == "frequency_ramp":
                self.grid.start_ramp(float(ev.value), ev.rate_hz_per_s)
            else:
                self.grid.release()
        self._next_event = self._events.next_t_s

    @property
    def time_of_day_s(self) -> float:
        return (self._tod0 + self.t_s) % 86400.0

    # ------------------------------------------------------------ variables

    def variables(self) -> dict[str, VariableInfo]:
        """Every bindable dotted path with unit, writability, type, description."""
        return dict(self._variables)

    def _build_resolvers(self) -> None:
        for path, info in self._variables.items():
            *parents, name = path.split(".")
            obj: Any = self
            for part in parents:
                obj = getattr(obj, part)
            getter = partial(getattr, obj, name)
            getter()  # fail now, not in the driver, if a listed path does not exist
            self._getters[path] = getter
            if info.writable:
                self._setters[path] = partial(setattr, obj, name)

    def getter(self, path: str) -> Callable[[], Any]:
        """A zero-argument callable returning the value at ``path`` (bind once)."""
        return self._getters[path]

    def setter(self, path: str) -> Callable[[Any], None]:
        """A one-argument callable writing a writable ``path`` (KeyError otherwise)."""
        return self._setters[path]

    def get(self, path: str) -> Any:
        """The value at ``path`` (KeyError if it is not a listed variable)."""
        return self._getters[path]()

    def set(self, path: str, value: Any) -> None:
        """Write a writable ``path``, converting ``value`` to the variable's type
        (bool, int, float or str, as ``EventConfig`` does). For per-cycle writes
        bind ``setter(path)`` instead: it stores the value as given."""
        setter = self._setters[path]
        setter(coerce(value, self._variables[path].type, path))


class _NominalBus:
    """Bus voltage/frequency when the grid is absent (island or dark)."""

    __slots__ = ("voltage_v", "frequency_hz", "phase_factors")

    def __init__(self, voltage_v: float, frequency_hz: float) -> None:
        self.voltage_v = voltage_v
        self.frequency_hz = frequency_hz
        self.phase_factors = (1.0, 1.0, 1.0)

