"""The `sim` driver: binds tags to variables of the plant simulator instead of a real device.

Each poll writes the staged outputs into the plant's command variables, advances the plant by
the time since the previous poll and reads the bound variables. On the real clock this runs in
the driver's thread like any other driver; on the virtual clock the scan steps it in its own
thread, one poll period at a time, which keeps simulations deterministic.

A plant object that reports `comm_ok = False` (for example `meter.comm_ok`) stops updating
the tags bound to it, so they age into STALE exactly as a silent real device would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from plc.tags import Area
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.config.structure import MISSING, Errors, structure
from runtime.io.driver import UNCHANGED, Driver, DriverSettings, Point
from runtime.io.registry import DriverKind
from sim import Plant, PlantConfig, variables


@attrs.frozen
class SimPoint:
    """The driver-specific key of a tag's io table: the plant variable it is bound to."""

    var: str


def parse_options(data: dict[str, Any], path: Path, errors: Errors) -> Any:
    """`[devices.sim]`: a preset site plus overrides of any plant parameter."""
    rest = dict(data)
    preset = rest.pop("preset", "home")
    presets = {"home": PlantConfig.home, "commercial": PlantConfig.commercial}
    if not isinstance(preset, str) or preset not in presets:
        errors.add(path + ("preset",), f"must be one of {', '.join(map(repr, presets))}, got {preset!r}")
        return MISSING
    return structure(PlantConfig, rest, path, errors, base=presets[preset]())


def check_points(options: PlantConfig, points: Sequence[tuple[Any, SimPoint, Path]]) -> list[tuple[Path, str]]:
    known = variables(options)
    problems = []
    for tag, point, path in points:
        info = known.get(point.var)
        if info is None:
            problems.append((path + ("var",), f"the plant has no variable {point.var!r}"))
        elif tag.area is Area.OUTPUT and not info.writable:
            problems.append((path + ("var",), f"plant variable {point.var!r} is read-only; an output needs a command"))
    return problems


class SimDriver(Driver):
    kind = "sim"
    supports_virtual_time = True

    def __init__(
        self,
        name: str,
        inputs: Sequence[Point],
        outputs: Sequence[Point],
        clock: Clock,
        settings: DriverSettings,
        config: PlantConfig,
    ):
        super().__init__(name, inputs, outputs, clock, settings)
        self.plant = plant = Plant(config)
        known = plant.variables()
        self._setters = [plant.setter(p.address.var) for p in outputs]
        self._getters = [plant.getter(p.address.var) for p in inputs]
        flags = [self._comm_flag(p.address.var, known) for p in inputs]
        self._flag_getters = {flag: plant.getter(flag) for flag in set(flags) if flag is not None}
        self._flags = flags
        self._last_step: float | None = None

    @staticmethod
    def _comm_flag(var: str, known: dict[str, Any]) -> str | None:
        flag = f"{var.split('.', 1)[0]}.comm_ok"
        return flag if "." in var and flag in known else None

    def write_outputs(self, raw: Sequence[Any]) -> None:
        for setter, value in zip(self._setters, raw):
            if value is not None:  # None: no command (a held output in doubt)
                setter(value)

    def read_inputs(self, now: float) -> Sequence[Any]:
        if self._last_step is not None and now > self._last_step:
            self.plant.step(now - self._last_step)
        self._last_step = now
        if not self._flag_getters:
            return [get() for get in self._getters]
        comm = {flag: get() for flag, get in self._flag_getters.items()}
        return [get() if flag is None or comm[flag] else UNCHANGED for get, flag in zip(self._getters, self._flags)]


KIND = DriverKind(
    name="sim",
    driver=SimDriver,
    options=PlantConfig,
    point=SimPoint,
    check=check_points,
    parse_options=parse_options,
)
