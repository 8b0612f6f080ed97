"""One setpoint written as a charge/discharge window closed on it (SunSpec model 124).

A SunSpec storage inverter takes no power setpoint: it confines its battery power to a window,
OutWRte = the maximum discharge rate and InWRte = the maximum charge rate, both in % of
WChaMax, where a negative rate forces the opposite direction; StorCtl_Mod bit 0 makes the
charge limit (InWRte) apply, bit 1 the discharge limit (OutWRte). Power P (+ = discharge) is
commanded as the window [-InWRte, +OutWRte] = [x, x] with x = P / WChaMax * 100: StorCtl_Mod = 3,
OutWRte = x, InWRte = -x (SunSpec model 124; evcc's Fronius GEN24 template and the GEN24 Home
Assistant integrations drive it this way, docs/devices.md).

The profile declares it on the register the setpoint binds to (OutWRte):
    mirror = "in_w_rate_pct"                 # written with -x
    mode_register = "storage_control_mode"   # written with both bits of mode_bits set
    mode_bits = [1, 0]                       # the bit that makes this register's limit apply, the mirror's

Write order: the rate whose change widens the window first (moving towards discharge, OutWRte;
towards charge, InWRte), so no intermediate window is empty, and the mode register last, so a
device that fell back to StorCtl_Mod = 0 (limits released) gets the whole window before the
limits apply again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plc.tags import ModbusTable
from runtime.config.lines import Path
from runtime.config.structure import Errors, _suggest
from runtime.io.modbus.codec import FLOAT_DTYPES, INTEGER_DTYPES

if TYPE_CHECKING:
    from runtime.io.modbus.profile import Register


def companions(reg: Register) -> tuple[str, ...]:
    """The registers a write of `reg` also writes (none for a plain register)."""
    return tuple(n for n in (reg.mirror, reg.mode_register) if n)


def mode_value(reg: Register) -> int:
    """What the mode register takes: both limits active (SunSpec StorCtl_Mod = 3)."""
    assert reg.mode_bits is not None
    return (1 << reg.mode_bits[0]) | (1 << reg.mode_bits[1])


def steps(name: str, reg: Register, value: float, previous: float | None) -> list[tuple[str, float]]:
    """The (register, engineering value) writes that close the window of `name` on `value`
    (already within its min/max), given the value written before (None: not known)."""
    rates = [(name, value), (reg.mirror, -value)]
    if previous is not None and value < previous:  # towards charge: open the charge side first
        rates.reverse()
    return [*rates, (reg.mode_register, float(mode_value(reg)))] if reg.mode_register else rates


def check(name: str, reg: Register, registers: dict[str, Register], errors: Errors) -> None:
    """A window's declaration: the mirror takes every negated value, the mode bits fit."""
    path: Path = ("registers", name)
    if not reg.mirror:
        key = next((k for k in ("mode_register", "mode_bits") if getattr(reg, k)), None)
        if key is not None:
            errors.add(path + (key,), f"{key} belongs to a window: it needs mirror = \"<register>\" too")
        return
    if reg.access != "rw":
        errors.add(path + ("mirror",), "only a writable register is written with a mirror")
    mirror = registers.get(reg.mirror)
    if not _writable_number(mirror) or reg.mirror == name:
        errors.add(path + ("mirror",), f"{reg.mirror!r} must name another writable holding register of this profile "
                   f"(written with the negated value){_suggest(reg.mirror, registers)}")
    elif mirror is not None and not _takes_negated(reg, mirror):
        errors.add(path + ("mirror",), f"{reg.mirror!r} (range {mirror.min}..{mirror.max}) does not take every "
                   f"negated value of {reg.min}..{reg.max}")
    if not reg.mode_register:
        if reg.mode_bits is not None:
            errors.add(path + ("mode_bits",), "mode_bits needs the mode_register they are bits of")
        return
    mode = registers.get(reg.mode_register)
    if not _writable_number(mode):
        errors.add(path + ("mode_register",), f"{reg.mode_register!r} must name a writable holding register of this "
                   f"profile{_suggest(reg.mode_register, registers)}")
    bits = reg.mode_bits
    if bits is None or bits[0] == bits[1] or not all(0 <= b < 16 for b in bits):
        errors.add(path + ("mode_bits",), "mode_bits = [bit of this register's limit, bit of the mirror's]: two "
                   "different bits 0..15 of the mode register")
    elif mode is not None and mode.max is not None and mode_value(reg) > mode.max:
        errors.add(path + ("mode_bits",), f"both bits set make {mode_value(reg)}, above {reg.mode_register}'s "
                   f"max {mode.max:g}")


def _writable_number(reg: Register | None) -> bool:
    return (reg is not None and reg.access == "rw" and reg.table is ModbusTable.HOLDING and reg.bits is None
            and reg.dtype in INTEGER_DTYPES + FLOAT_DTYPES and reg.dtype != "sunssf")


def _takes_negated(reg: Register, mirror: Register) -> bool:
    low = -reg.max if reg.max is not None else None
    high = -reg.min if reg.min is not None else None
    fits_low = mirror.min is None or (low is not None and low >= mirror.min)
    fits_high = mirror.max is None or (high is not None and high <= mirror.max)
    return fits_low and fits_high
