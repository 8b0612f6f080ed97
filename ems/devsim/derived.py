"""Registers a simulated device computes from other registers of its image (profile `sim_*` keys).

* `sim_line_voltage = ["v_l1_n", "v_l2_n"]`: the line-to-line voltage of two phase voltages
  120 degrees apart, sqrt(a^2 + a*b + b^2) (sqrt(3) x the phase voltage when they are equal).
* `sim_energy_of = "p_ac"`: an energy counter (Wh) of the power delivered at that register (its
  + side: a storage inverter's AC output, discharge), integrated on the device's clock from the
  register's starting value (its `sim_value`; a SunSpec acc32 of 0 reads "not implemented").
* `sim_charge_status = ["p_ac", "soc"]`: the SunSpec ChaSt of a power register (+ = discharge,
  W) and an SOC register (%), served as the code the register's `states` give the name:
  discharging / charging beyond HOLD_W, else full at FULL_SOC_PCT, empty at EMPTY_SOC_PCT,
  holding in between.
`update()` runs after every plant refresh (ems/devsim/plant_link.py).
"""

from __future__ import annotations

import logging
import math

from ems.devsim.modbus_device import ProfileDevice

log = logging.getLogger(__name__)

HOLD_W = 10.0  # |power| at or below this: neither charging nor discharging
FULL_SOC_PCT = 99.0
EMPTY_SOC_PCT = 1.0


def line_voltage(a: float, b: float) -> float:
    """|Va - Vb| of two phase voltages 120 degrees apart."""
    return math.sqrt(max(a * a + a * b + b * b, 0.0))


def charge_status(power_w: float, soc_pct: float) -> str:
    """SunSpec ChaSt (model 124) by name, from the battery power (+ = discharge) and SOC."""
    if power_w > HOLD_W:
        return "discharging"
    if power_w < -HOLD_W:
        return "charging"
    if soc_pct >= FULL_SOC_PCT:
        return "full"
    if soc_pct <= EMPTY_SOC_PCT:
        return "empty"
    return "holding"


class Derived:
    """The derived registers of one simulated device."""

    def __init__(self, device: ProfileDevice):
        self.device = device
        regs = device.profile.registers
        self.lines = {n: r.sim_line_voltage for n, r in regs.items() if r.sim_line_voltage}
        self.energies = {n: r.sim_energy_of for n, r in regs.items() if r.sim_energy_of}
        self.statuses = {n: (r.sim_charge_status, {state: int(code) for code, state in r.states.items()})
                         for n, r in regs.items() if r.sim_charge_status}
        self._energy_wh: dict[str, float] = {}  # the counters unrounded (the register holds whole units)
        self._last: float | None = None
        self._errors: dict[str, str] = {}

    def update(self) -> None:
        get = self.device.get
        now = self.device.clock()
        dt = 0.0 if self._last is None else max(now - self._last, 0.0)
        self._last = now
        values: dict[str, float] = {}
        for name, (a, b) in self.lines.items():
            values[name] = line_voltage(float(get(a)), float(get(b)))
        for name, power in self.energies.items():
            total = self._energy_wh.get(name, float(get(name)))
            self._energy_wh[name] = total = total + max(float(get(power)), 0.0) * dt / 3600.0
            values[name] = total
        for name, ((power, soc), codes) in self.statuses.items():
            values[name] = codes[charge_status(float(get(power)), float(get(soc)))]
        for name, value in values.items():
            try:
                self.device.set(name, value)
            except (ValueError, OverflowError) as exc:
                if self._errors.get(name) != str(exc):
                    log.warning("simulated %s: register %s: cannot show %r: %s", self.device.profile.name, name,
                                value, exc)
                    self._errors[name] = str(exc)
