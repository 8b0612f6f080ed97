"""A simulated storage inverter's charge/discharge window (SunSpec model 124).

The inverter confines its battery power to the window [-InWRte, +OutWRte] (% of WChaMax,
+ = discharge): OutWRte is the maximum discharge rate, InWRte the maximum charge rate, and a
negative rate forces the opposite direction (OutWRte = -30 %: charge at least 30 %). Each limit
applies only while its bit of StorCtl_Mod is set (bit 1: OutWRte, bit 0: InWRte); a cleared bit
leaves that side unlimited. Within the window a real inverter runs its own self-consumption
logic; this simulator has none, so its own choice is 0 W: the point of the window nearest to
0 W. An empty window (lower bound above the upper one) also gives 0 W.

Sources: SunSpec model 124 (pysunspec2's model_124.json: StorCtl_Mod bit 0 CHARGE, bit 1
DiSCHARGE; OutWRte "Percent of max discharge rate", InWRte "Percent of max charging rate");
evcc's Fronius GEN24 template (templates/definition/meter/fronius-gen24.yaml: hold = StorCtl_Mod 2
with OutWRte 0 %, charge from the grid = StorCtl_Mod 2 with OutWRte negative) and the
nilseckert/gen24_battery_control README (InWRte negative in mode 3: the battery discharges
2000 W; after InOutWRte_RvrtTms the inverter returns to its automatic mode by itself).

The profile declares the window on the rate register (runtime/io/modbus/window.py): `mirror`
names the other rate, `mode_register` and `mode_bits` the mode bits of this rate and the mirror.
"""

from __future__ import annotations

import math


def window_point(rate: float, mirror_rate: float, mode: int | None, bits: tuple[int, int] | None) -> float | None:
    """The point of the window [-mirror_rate, +rate] nearest to 0, with each side limited only
    while its bit of `mode` is set (no mode register: both always); None for an empty window."""
    high = rate if mode is None or bits is None or mode >> bits[0] & 1 else math.inf
    low = -mirror_rate if mode is None or bits is None or mode >> bits[1] & 1 else -math.inf
    if low > high:
        return None
    return min(max(0.0, low), high)
