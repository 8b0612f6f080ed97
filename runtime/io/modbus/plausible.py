"""What a measured register can plausibly read: outside it, the reading is wrong, not the world.

A meter that reports 2e8 W on a house connection has a wrong word order, scale or CT setting, or
a damaged frame that passed its CRC; acting on it would drive the battery to its limits. The
driver marks such a reading BAD (the tag's interlock, e.g. meter_comm_timeout, then stops the
battery) and logs it once. The range of a register, in its engineering unit:

- its profile's `plausible = [lo, hi]`, when the profile gives one;
- power (W, var, VA and their k-units): +-MARGIN x the device's rated power, and current (A):
  +-MARGIN x its rated current, where a rating is known: the profile's `[device] rated_power_w`
  / `rated_current_a`, or the io_map's `[devices.modbus]` keys of the same names (a generic
  profile, a CT-connected meter: the installation sets the rating);
- voltage (V): +-1500 V, the end of low voltage (IEC 60038: 1000 V AC, 1500 V DC) that every
  device here is built for; frequency (Hz): 0..100; temperature (degC): -60..250.

An io_map tag's own `min`/`max` narrow it further (checked when the value reaches the tag).
"""

from __future__ import annotations

from typing import Any

MARGIN = 2.0  # a reading twice the rating is a wrong reading: overloads are short and far smaller
LOW_VOLTAGE_LIMIT_V = 1500.0
POWER_UNITS = {"W": 1.0, "var": 1.0, "VA": 1.0, "kW": 1e-3, "kvar": 1e-3, "kVA": 1e-3}
FIXED = {"V": (-LOW_VOLTAGE_LIMIT_V, LOW_VOLTAGE_LIMIT_V), "Hz": (0.0, 100.0), "degC": (-60.0, 250.0)}


def plausible_range(reg: Any, rated_power_w: float | None, rated_current_a: float | None) -> tuple[float, float] | None:
    """The register's plausible range in its engineering unit, or None when nothing bounds it."""
    if reg.plausible is not None:
        return (float(reg.plausible[0]), float(reg.plausible[1]))
    if reg.unit in POWER_UNITS and rated_power_w:
        bound = MARGIN * rated_power_w * POWER_UNITS[reg.unit]
        return (-bound, bound)
    if reg.unit == "A" and rated_current_a:
        bound = MARGIN * rated_current_a
        return (-bound, bound)
    return FIXED.get(reg.unit)


def describe(bounds: tuple[float, float], unit: str) -> str:
    return f"{bounds[0]:g}..{bounds[1]:g} {unit}".rstrip()
