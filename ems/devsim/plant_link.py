"""Ties a simulated Modbus device to the plant simulator through the profile's `plant_var`s.

Reading: `refresh()` copies each bound plant variable into its read-only register (divided
by `plant_scale`, or translated through `plant_map`). Writing: a client's write to a bound
writable register sets the plant variable (the inverse). The binding is data: the profile's
`plant_var` / `plant_scale` / `plant_map`, overridden per device by the io_map's `sim_vars`.
A bound rate register declared as a charge/discharge window (`mirror`, `mode_register`: SunSpec
OutWRte, InWRte, StorCtl_Mod) drives its plant variable with the window's point nearest to 0
(ems/devsim/window.py) whenever any of the three changes. Registers derived from others of the
image (`sim_line_voltage`, `sim_energy_of`, `sim_charge_status`) follow every refresh
(ems/devsim/derived.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ems.devsim.derived import Derived
from ems.devsim.modbus_device import ProfileDevice
from ems.devsim.window import window_point
from runtime.io.modbus.profile import Register

log = logging.getLogger(__name__)


def _key(value: Any) -> str:
    if isinstance(value, (bool, str)):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def _parse(key: str) -> Any:
    if key in ("True", "False"):
        return key == "True"
    try:
        return int(key)
    except ValueError:
        return float(key)


class PlantLink:
    """Moves values between `plant` (get/set by dotted path) and one simulated device."""

    def __init__(self, device: ProfileDevice, plant: Any, lock: threading.Lock | None = None,
                 overrides: dict[str, str] | None = None):
        self.device = device
        self.plant = plant
        self.lock = lock or threading.Lock()
        regs = device.profile.registers
        bound = {name: reg.plant_var for name, reg in regs.items() if reg.plant_var}
        bound.update(overrides or {})
        bound = {name: var for name, var in bound.items() if var}  # "" in sim_vars unbinds a register
        known = getattr(plant, "variables", None)
        names = set(known()) if callable(known) else None
        self.bindings = {n: v for n, v in bound.items() if names is None or v in names}
        for name, var in bound.items():
            if name not in self.bindings:
                log.warning("simulated %s: register %s: the plant has no variable %r", device.profile.name, name, var)
        self._errors: dict[str, str] = {}
        # every register of a bound window -> its rate register (the one bound to the plant)
        self._window_of = {member: name for name in self.bindings if regs[name].mirror
                           for member in (name, regs[name].mirror, regs[name].mode_register) if member}
        self.derived = Derived(device)
        # called with the lock held at each write, before it reaches the plant: the simulation
        # steps its plant up to now, so a command acts from the moment it was written, not from
        # the start of the step it fell in, and looks again at the revert deadlines
        # (ems/devsim/runner.py)
        self.advance: Callable[[], None] = lambda: None
        device.on_write = self.on_write

    def refresh(self) -> None:
        """Plant -> registers, for every bound read-only register. Writable registers keep what
        the client wrote (the plant follows them), as a device's command registers do."""
        self.device.expire()  # the device's own communication-loss fallback, before it shows the plant
        regs = self.device.profile.registers
        with self.lock:
            values = {name: self.plant.get(var) for name, var in self.bindings.items() if regs[name].access == "r"}
        for name, value in values.items():
            reg = regs[name]
            try:
                self.device.set(name, self._to_register(reg, value))
            except (KeyError, ValueError, TypeError, OverflowError) as exc:
                self._once(name, f"cannot show {value!r}: {exc}")
        self.derived.update()

    def _to_register(self, reg: Register, value: Any) -> Any:
        if reg.plant_map:
            return reg.plant_map[_key(value)]
        if isinstance(value, bool) or reg.is_bit:
            return bool(value) if reg.is_bit else float(value)
        if reg.plant_percent_of:
            return float(value) / self._percent_base(reg) * 100.0
        return float(value) / reg.plant_scale

    def _percent_base(self, reg: Register) -> float:
        base = float(self.device.get(reg.plant_percent_of))
        if base <= 0:
            raise ValueError(f"{reg.plant_percent_of} is {base:g}: no percentage of it")
        return base

    def on_write(self, name: str, value: Any) -> None:
        """Register written by a client -> plant command."""
        with self.lock:
            self.advance()
        if name in self._window_of:
            self._follow_window(self._window_of[name])
            return
        var = self.bindings.get(name)
        if var is None:
            return
        reg = self.device.profile.registers[name]
        if reg.plant_map:
            keys = [k for k, v in reg.plant_map.items() if float(v) == float(value)]
            if not keys:
                self._once(name, f"value {value!r} has no plant meaning")
                return
            plant_value = _parse(keys[0])
        elif reg.is_bit:
            plant_value = bool(value)
        elif reg.plant_percent_of:
            plant_value = float(value) / 100.0 * float(self.device.get(reg.plant_percent_of))
        else:
            plant_value = float(value) * reg.plant_scale
        with self.lock:
            self.plant.set(var, plant_value)

    def _follow_window(self, name: str) -> None:
        """The plant follows the window of rate register `name`: its point nearest to 0."""
        reg = self.device.profile.registers[name]
        mode = int(self.device.get(reg.mode_register)) if reg.mode_register else None
        pct = window_point(float(self.device.get(name)), float(self.device.get(reg.mirror)), mode, reg.mode_bits)
        if pct is None:
            self._once(name, f"empty window: {reg.mirror} {self.device.get(reg.mirror):g} forbids what {name} "
                       f"{self.device.get(name):g} allows; 0 W")
            pct = 0.0
        if reg.plant_percent_of:
            plant_value = pct / 100.0 * float(self.device.get(reg.plant_percent_of))
        else:
            plant_value = pct * reg.plant_scale
        with self.lock:
            self.plant.set(self.bindings[name], plant_value)

    def _once(self, name: str, message: str) -> None:
        if self._errors.get(name) != message:
            log.warning("simulated %s: register %s: %s", self.device.profile.name, name, message)
            self._errors[name] = message
