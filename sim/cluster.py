"""A site of several battery units behind one grid connection: the plant of a cluster.

One ``Plant`` per battery unit (node) brings its battery, BMS and inverter; one more ``Plant``
(``site``) brings what the units share: PV, load and the grid. The site meter sees them all:

    meter.p_w = load.power_w - pv.power_w - sum(node inverter p_ac_w)

A node's own PV and load are forced to 0 W (its own meter reads its inverter alone and is
not bound). The site plant's battery unit stays idle: nothing commands its inverter.

Variables are the plants' dotted paths: ``<node>.<path>`` for a unit (``node1.bms.soc_pct``),
``meter.*`` for the site meter, and every other path of the site plant (``load.override_w``,
``pv.power_w``, ``grid.frequency_hz``, ``t_s``). ``nodes[name]`` is each unit's plant, bound
as is to that unit's devices. Simplification: grid-connected operation only (an outage of the
site grid is not propagated to the units). Knows nothing of the controller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sim.config import PlantConfig
from sim.grid import Meter
from sim.plant import Plant
from sim.variables import VariableInfo, coerce, infos

RESERVED = ("meter", "battery", "bms", "inverter", "grid", "pv", "load", "site", "t_s", "time_of_day_s")


class _Inverters:
    """The units' inverters as one, for the meter's reactive balance."""

    def __init__(self, plants: list[Plant]):
        self.plants = plants

    @property
    def q_ac_var(self) -> float:
        return sum(p.inverter.q_ac_var for p in self.plants)


class ClusterPlant:
    """The site of several units. ``ClusterPlant(site_cfg, {"node1": cfg, ...})``, then ``step``."""

    def __init__(self, site: PlantConfig, nodes: Mapping[str, PlantConfig]) -> None:
        if not nodes:
            raise ValueError("a cluster plant needs at least one node")
        for name in nodes:
            if name in RESERVED or "." in name:
                raise ValueError(f"node name {name!r} clashes with a plant path")
        self.site = Plant(site)
        self.nodes = {name: Plant(cfg) for name, cfg in nodes.items()}
        for plant in self.nodes.values():
            plant.pv.override_w = 0.0
            plant.load.override_w = 0.0
        self.meter = Meter()
        self.meter.connect(self.site.load, _Inverters(list(self.nodes.values())))
        self.meter.set_bus(self.site.grid, True)
        self._inverters = [p.inverter for p in self.nodes.values()]
        self._meter_vars = infos("meter", Meter.VARS)

    @property
    def t_s(self) -> float:
        return self.site.t_s

    def step(self, dt_s: float) -> None:
        """Advance every plant by dt_s, then the site meter."""
        site = self.site
        site.step(dt_s)
        for plant in self.nodes.values():
            plant.step(dt_s)
        units = sum(inv.p_ac_w for inv in self._inverters)
        self.meter.update(dt_s, site.load.power_w - site.pv.power_w - site.inverter.p_ac_w - units)

    # --- variables ---------------------------------------------------------------------------
    def variables(self) -> dict[str, VariableInfo]:
        out = {path: info for path, info in self.site.variables().items() if not path.startswith("meter.")}
        out.update(self._meter_vars)
        for name, plant in self.nodes.items():
            out.update({f"{name}.{path}": info for path, info in plant.variables().items()})
        return out

    def _route(self, path: str) -> tuple[Any, str]:
        head, _, rest = path.partition(".")
        if head == "meter":
            return None, rest
        node = self.nodes.get(head)
        if node is not None:
            return node, rest
        return self.site, path

    def getter(self, path: str) -> Callable[[], Any]:
        plant, rest = self._route(path)
        if plant is None:
            if path not in self._meter_vars:
                raise KeyError(path)
            meter = self.meter
            return lambda: getattr(meter, rest)
        return plant.getter(rest)

    def setter(self, path: str) -> Callable[[Any], None]:
        plant, rest = self._route(path)
        if plant is None:
            info = self._meter_vars.get(path)
            if info is None or not info.writable:
                raise KeyError(path)
            meter = self.meter
            return lambda value: setattr(meter, rest, value)
        return plant.setter(rest)

    def get(self, path: str) -> Any:
        return self.getter(path)()

    def set(self, path: str, value: Any) -> None:
        plant, rest = self._route(path)
        if plant is None:
            self.setter(path)(coerce(value, self._meter_vars[path].type, path))
        else:
            plant.set(rest, value)
