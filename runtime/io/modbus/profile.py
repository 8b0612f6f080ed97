"""Device profiles: a Modbus device's register map as a TOML file (see docs/devices.md).

A profile names every register an integrator may bind a tag to, with its table, address,
data type, scaling and poll group. Profiles are validated strictly: every problem is
reported with the profile's file name, line and key path, like the io_map itself.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path as FsPath
from typing import Any, Literal

import attrs
from attrs import validators as v

from plc.tags import ModbusTable
from runtime.config.files import parse_toml, raise_errors, read_text
from runtime.config.lines import Path
from runtime.config.structure import MISSING, ConfigError, ConfigErrors, Errors, _suggest, structure
from runtime.io.modbus import window
from runtime.io.modbus.codec import BIT_DTYPES, DTYPES, INTEGER_DTYPES, STRING_DTYPES, register_count
from runtime.paths import IO_MAPS_DIR, PROFILE_DIR

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SECTIONS = ("device", "poll_groups", "registers", "commands", "identity", "setup", "sunspec")


def _blocks_ok(_instance: Any, _attribute: Any, value: tuple[tuple[int, int], ...]) -> None:
    for start, end in value:
        if not 0 <= start <= end <= 0xFFFF:
            raise ValueError(f"[{start}, {end}] is not a range of addresses 0..65535 (start <= end)")


def _name_ok(_instance: Any, _attribute: Any, value: str) -> None:
    if value and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name (lower case, digits and _)")


@attrs.frozen
class DeviceMeta:
    """The `[device]` table: who made it, how it orders bytes, how much it reads at once."""

    vendor: str
    model: str
    kind: Literal["meter", "inverter", "io"]
    source: str
    public_map: bool = True
    description: str = ""
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"
    max_registers_per_read: int = attrs.field(default=125, validator=[v.ge(1), v.le(125)])
    max_bits_per_read: int = attrs.field(default=2000, validator=[v.ge(1), v.le(2000)])
    max_gap: int = attrs.field(default=0, validator=[v.ge(0), v.le(124)])
    unit_id: int = attrs.field(default=1, validator=[v.ge(0), v.le(247)])
    sunspec_nan: bool = False
    write_single: bool = False
    verify_writes: bool = True
    rewrite_period_s: float = attrs.field(default=0.0, validator=v.ge(0.0))
    heartbeat_register: str = ""
    heartbeat_period_s: float = attrs.field(default=5.0, validator=v.gt(0.0))
    # The device's own fixed communication watchdog: with no change of the heartbeat register
    # for this long it falls back to every register's `revert_value` (0 = it has none).
    watchdog_s: float = attrs.field(default=0.0, validator=v.ge(0.0))
    default_group: str = attrs.field(default="normal", validator=_name_ok)
    # The device's rating, where the model has one (an inverter's nameplate): the plausible
    # range of its power and current readings (runtime/io/modbus/plausible.py)
    rated_power_w: float | None = attrs.field(default=None, validator=v.optional([v.gt(0.0), v.le(1e9)]))
    rated_current_a: float | None = attrs.field(default=None, validator=v.optional([v.gt(0.0), v.le(1e6)]))
    # FC 04 reads the same registers as FC 03 (Carlo Gavazzi meters; mbmd and evcc read with 04)
    input_is_holding: bool = False
    # [first, last] holding-register ranges the device answers whole, the addresses the profile
    # does not name reading 0 (a real EM24 answers a read across its unassigned counters, as
    # Victron's dbus-modbus-client packs them); only the simulator uses it
    served_blocks: tuple[tuple[int, int], ...] = attrs.field(default=(), validator=_blocks_ok)


@attrs.frozen
class PollGroup:
    period_s: float = attrs.field(validator=v.gt(0.0))
    description: str = ""


def _nonzero(_instance: Any, _attribute: Any, value: float) -> None:
    if value == 0:
        raise ValueError("must not be 0")


@attrs.frozen
class Register:
    """One entry of `[registers]`. Engineering value = raw * scale (* 10**SF) + offset."""

    table: ModbusTable
    address: int = attrs.field(validator=[v.ge(0), v.le(65535)])
    dtype: Literal[DTYPES]  # type: ignore[valid-type]
    scale: float = attrs.field(default=1.0, validator=_nonzero)
    offset: float = 0.0
    scale_register: str = ""
    unit: str = ""
    access: Literal["r", "rw"] = "r"
    group: str = ""
    description: str = ""
    length: int = attrs.field(default=0, validator=[v.ge(0), v.le(123)])
    bits: tuple[int, int] | None = None
    min: float | None = None
    max: float | None = None
    # [lo, hi] a reading can plausibly take (engineering unit); outside, the reading is BAD
    # (runtime/io/modbus/plausible.py, which also gives the defaults from the device's rating)
    plausible: tuple[float, float] | None = None
    verify: bool | None = None
    plant_var: str = ""
    plant_scale: float = attrs.field(default=1.0, validator=_nonzero)
    plant_percent_of: str = ""  # simulator: the register holds % of this register's value (plant = % / 100 * it)
    sim_value: float | str | None = None
    plant_map: dict[str, float] = attrs.field(factory=dict)  # plant value -> register value (simulator)
    states: dict[str, str] = attrs.field(factory=dict)
    # Communication-loss fallback: the device returns this register to `revert_value` when no
    # client has written it for the time held in the timer register `reverts_after` (in
    # seconds; SunSpec's *_RvrtTms), or, without a timer, when the device's watchdog expires.
    reverts_after: str = ""
    revert_value: float | None = None
    # A charge/discharge window (SunSpec model 124, runtime/io/modbus/window.py): a write of x
    # here also writes -x into `mirror` and sets both `mode_bits` (this register's limit, the
    # mirror's) of `mode_register`: the device confines its power to [-mirror, +this] = [x, x].
    mirror: str = ""
    mode_register: str = ""
    mode_bits: tuple[int, int] | None = None
    # Simulator: values derived from other registers of the image (ems/devsim/derived.py): the
    # line-to-line voltage of two phase voltages, the energy delivered at a power register (+
    # side), the SunSpec charge status (a `states` name) of a power (+ = discharge) and an SOC
    sim_line_voltage: tuple[str, str] | None = None
    sim_energy_of: str = ""
    sim_charge_status: tuple[str, str] | None = None
    # Answered only to a read of exactly this register: the device shares the address with a
    # block register (the EM24's identification code at 0x000B, inside V L3-L1). Never merged
    # into a block read, exempt from the overlap check.
    alone: bool = False

    @property
    def words(self) -> int:
        return register_count(self.dtype, self.length)

    @property
    def is_bit(self) -> bool:
        return self.table.is_bits


@attrs.frozen
class Command:
    """A `[commands.<name>]` entry: the register writes a boolean output stands for."""

    description: str = ""
    on_true: dict[str, float] = attrs.field(factory=dict)
    on_false: dict[str, float] = attrs.field(factory=dict)


@attrs.frozen
class Identity:
    """`[identity]`: the register that says which device answers, read at every connect. A
    value outside `accept` refuses the device (its tags stay BAD): a profile of the wrong
    variant reads other quantities at the same addresses. `others` names the profile that
    fits another value, for the error."""

    register: str
    accept: tuple[int, ...]
    others: dict[str, tuple[int, ...]] = attrs.field(factory=dict)


@attrs.frozen
class SunSpecLayout:
    """`[sunspec]`: where this profile's layout puts the "SunS" marker and each model it reads
    (model id, address of its ID register, its length); the driver moves each model to where
    the device's chain has it (runtime/io/modbus/sunspec.py)."""

    base: int = 40000
    models: tuple[tuple[int, int, int], ...] = ()

    @property
    def end(self) -> int:
        """Where the end marker sits in this layout."""
        return max((start + 2 + length for _, start, length in self.models), default=self.base + 2)

    def model_of(self, address: int) -> tuple[int, int] | None:
        """(model id, its start) of the model holding `address`; None for the marker and the end."""
        return next(((model_id, start) for model_id, start, length in self.models
                     if start <= address < start + 2 + length), None)


@attrs.frozen
class Profile:
    path: str
    name: str
    device: DeviceMeta
    poll_groups: dict[str, PollGroup]
    registers: dict[str, Register]
    commands: dict[str, Command] = attrs.field(factory=dict)
    identity: Identity | None = None
    # `[setup]`: register -> engineering value the device must hold (e.g. a meter's signed-power
    # mode); at every connect each is read, written when it differs and read back
    setup: dict[str, float] = attrs.field(factory=dict)
    sunspec: SunSpecLayout | None = None

    def group_of(self, register: Register) -> str:
        return register.group or self.device.default_group

    def verify(self, register: Register) -> bool:
        return self.device.verify_writes if register.verify is None else register.verify

    def revert_timers(self, outputs: set[str]) -> list[str]:
        """The revert-timer registers that guard any of these output registers (or the registers
        a write of them also writes: a window's mirror and mode register)."""
        written = set(outputs) | {c for n in outputs for c in window.companions(self.registers[n])}
        return sorted({self.registers[n].reverts_after for n in written if self.registers[n].reverts_after})


def resolve_profile_path(profile: str = "", model: str = "") -> FsPath:
    """`profile` (absolute, or relative to io_maps/) or `model` (a file in io_maps/devices/)."""
    if model:
        return PROFILE_DIR / f"{model}.toml"
    path = FsPath(profile)
    if path.is_absolute():
        return path
    shipped = IO_MAPS_DIR / path
    return shipped if shipped.exists() or not path.exists() else path.resolve()


def known_models() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(path: str | FsPath) -> Profile:
    """Parse and check a profile file; raise ConfigErrors naming its file, line and key."""
    path = FsPath(path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigErrors([ConfigError((), f"cannot read profile: {exc.strerror}", str(path))]) from None
    return _load_cached(str(path), mtime)


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, _mtime: int) -> Profile:
    return parse_profile(read_text(path), path)


def parse_profile(text: str, filename: str = "<profile>") -> Profile:
    data = parse_toml(text, filename)
    errors = Errors()
    profile = _build(data, filename, errors)
    raise_errors(errors, text, filename)
    assert profile is not None  # _build returns None only with errors
    return profile


def _build(data: dict[str, Any], filename: str, errors: Errors) -> Profile | None:
    for key in data:
        if key not in _SECTIONS:
            errors.add((key,), f"unknown section{_suggest(key, _SECTIONS)}")
    if "device" not in data:
        errors.add(("device",), "missing required section")
    device = structure(DeviceMeta, data.get("device", {}), ("device",), errors)
    groups = _table_of(PollGroup, data.get("poll_groups", {}), "poll_groups", errors)
    registers = _table_of(Register, data.get("registers", {}), "registers", errors)
    commands = _table_of(Command, data.get("commands", {}), "commands", errors)
    identity = structure(Identity, data["identity"], ("identity",), errors) if "identity" in data else None
    setup = _setup_of(data.get("setup", {}), errors)
    sunspec = structure(SunSpecLayout, data["sunspec"], ("sunspec",), errors) if "sunspec" in data else None
    if not registers and "registers" not in data:
        errors.add(("registers",), "missing required section")
    if device is MISSING:  # still check the registers, against default device settings
        _check(DeviceMeta(vendor="", model="", kind="meter", source=""), groups, registers, errors)
        return None
    _check(device, groups, registers, errors)
    _check_commands(commands, registers, errors)
    _check_identity(identity, registers, errors)
    _check_setup(setup, registers, errors)
    layout = sunspec if isinstance(sunspec, SunSpecLayout) else None
    _check_sunspec(layout, registers, errors)
    if errors:
        return None
    return Profile(filename, FsPath(filename).stem, device, groups, registers, commands,
                   identity if identity is not MISSING else None, setup, layout)


def _check_sunspec(layout: SunSpecLayout | None, registers: dict[str, Register], errors: Errors) -> None:
    """Every register lies in the marker, a model of the layout, or the end marker."""
    if layout is None:
        return
    for name, reg in registers.items():
        placed = (layout.base <= reg.address < layout.base + 2 or layout.model_of(reg.address) is not None
                  or layout.end <= reg.address < layout.end + 2)
        if not placed:
            errors.add(("registers", name, "address"), f"{reg.address} lies in no model of [sunspec] models")


def _setup_of(data: Any, errors: Errors) -> dict[str, float]:
    if not isinstance(data, dict):
        errors.add(("setup",), f"expected a table of register = value, got {type(data).__name__}")
        return {}
    out = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.add(("setup", name), f"expected a number, got {value!r}")
        else:
            out[name] = float(value)
    return out


def _check_identity(identity: Identity | None, registers: dict[str, Register], errors: Errors) -> None:
    if identity is None or identity is MISSING:
        return
    reg = registers.get(identity.register)
    if reg is None or reg.dtype not in ("uint16", "int16", "uint32", "int32"):
        errors.add(("identity", "register"), f"{identity.register!r} must name an integer register of this profile"
                   f"{_suggest(identity.register, registers)}")
    if not identity.accept:
        errors.add(("identity", "accept"), "needs the identity values this profile is for")
    for model, values in identity.others.items():
        if set(values) & set(identity.accept):
            errors.add(("identity", "others", model), f"shares values with accept: {sorted(set(values) & set(identity.accept))}")


def _check_setup(setup: dict[str, float], registers: dict[str, Register], errors: Errors) -> None:
    for name, value in setup.items():
        reg = registers.get(name)
        if reg is None or reg.access != "rw" or reg.is_bit:
            errors.add(("setup", name), f"{name!r} is not a writable register of this profile{_suggest(name, registers)}")
        elif (reg.min is not None and value < reg.min) or (reg.max is not None and value > reg.max):
            errors.add(("setup", name), f"{value:g} is outside {reg.min}..{reg.max}")


def _table_of(cls: type, data: Any, key: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(data, dict):
        errors.add((key,), f"expected a table of tables, got {type(data).__name__}")
        return {}
    out = {}
    for name, item in data.items():
        if not _NAME.match(name):
            errors.add((key, name), f"{name!r} is not a valid name (lower case, digits and _)")
            continue
        value = structure(cls, item, (key, name), errors)
        if value is not MISSING:
            out[name] = value
    return out


def _check(device: DeviceMeta, groups: dict[str, PollGroup], registers: dict[str, Register], errors: Errors) -> None:
    for name, reg in registers.items():
        _check_register(name, reg, device, groups, registers, errors)
    _check_overlaps(registers, errors)
    if device.watchdog_s and not device.heartbeat_register:
        errors.add(("device", "watchdog_s"), "a watchdog needs the heartbeat_register that feeds it")
    if device.heartbeat_register:
        beat = registers.get(device.heartbeat_register)
        if beat is None or beat.access != "rw" or beat.table is not ModbusTable.HOLDING:
            errors.add(("device", "heartbeat_register"),
                       f"{device.heartbeat_register!r} must name a writable holding register of this profile")


def _check_register(name: str, reg: Register, device: DeviceMeta, groups: dict[str, PollGroup],
                    registers: dict[str, Register], errors: Errors) -> None:
    path: Path = ("registers", name)
    group = reg.group or device.default_group
    if group not in groups:
        errors.add(path + (("group",) if reg.group else ()),
                   f"poll group {group!r} is not declared in [poll_groups]{_suggest(group, groups)}")
    if reg.is_bit != (reg.dtype in BIT_DTYPES):
        wanted = "dtype \"bool\"" if reg.is_bit else "a register dtype"
        errors.add(path + ("dtype",), f"a {reg.table.value} entry needs {wanted}, not {reg.dtype!r}")
    if reg.access == "rw" and not reg.table.writable:
        errors.add(path + ("access",), f"a {reg.table.value} entry is read-only; only coil and holding are writable")
    if reg.dtype in STRING_DTYPES and reg.length == 0:
        errors.add(path + ("length",), "a string needs its length in registers")
    if reg.address + reg.words > 65536:
        errors.add(path + ("address",), f"{reg.words} registers from {reg.address} pass 65535")
    if reg.words > (device.max_bits_per_read if reg.is_bit else device.max_registers_per_read):
        errors.add(path + ("dtype",), f"takes {reg.words} registers, more than max_registers_per_read")
    if reg.bits is not None:
        lsb, width = reg.bits
        if reg.dtype not in ("uint16", "uint32") or lsb < 0 or width < 1 or lsb + width > reg.words * 16:
            errors.add(path + ("bits",), "bits = [lsb, width] selects a field inside a uint16 or uint32 register")
    if reg.scale_register:
        sf = registers.get(reg.scale_register)
        if sf is None:
            errors.add(path + ("scale_register",), f"no register named {reg.scale_register!r}"
                       f"{_suggest(reg.scale_register, registers)}")
        elif sf.dtype != "sunssf":
            errors.add(path + ("scale_register",), f"{reg.scale_register!r} must have dtype \"sunssf\"")
        if reg.dtype not in INTEGER_DTYPES:
            errors.add(path + ("scale_register",), "a scale-factor register applies to integer registers only")
    if reg.min is not None and reg.max is not None and reg.min > reg.max:
        errors.add(path + ("min",), f"min {reg.min} is above max {reg.max}")
    if reg.plausible is not None and not (math.isfinite(reg.plausible[0]) and math.isfinite(reg.plausible[1])
                                          and reg.plausible[0] < reg.plausible[1]):
        errors.add(path + ("plausible",), f"[{reg.plausible[0]}, {reg.plausible[1]}] is not a range: "
                   "two finite numbers, the lower first")
    _check_revert(path, reg, registers, errors)
    window.check(name, reg, registers, errors)
    _check_simulated(path, reg, registers, errors)


def _check_simulated(path: Path, reg: Register, registers: dict[str, Register], errors: Errors) -> None:
    """The simulator keys name registers of this profile."""
    named = {"plant_percent_of": (reg.plant_percent_of,) if reg.plant_percent_of else (),
             "sim_energy_of": (reg.sim_energy_of,) if reg.sim_energy_of else (),
             "sim_line_voltage": reg.sim_line_voltage or (), "sim_charge_status": reg.sim_charge_status or ()}
    for key, names in named.items():
        for other in names:
            if other not in registers:
                errors.add(path + (key,), f"no register named {other!r}{_suggest(other, registers)}")
    if reg.sim_charge_status and not {"charging", "discharging", "holding", "full", "empty"} <= set(reg.states.values()):
        errors.add(path + ("sim_charge_status",), "the register's states must name charging, discharging, holding, "
                   "full and empty (the codes the simulator serves)")


def _check_revert(path: Path, reg: Register, registers: dict[str, Register], errors: Errors) -> None:
    if reg.reverts_after:
        timer = registers.get(reg.reverts_after)
        if timer is None or timer.access != "rw" or timer.table is not ModbusTable.HOLDING:
            errors.add(path + ("reverts_after",), f"{reg.reverts_after!r} must name a writable holding register "
                       f"of this profile (the revert timer, in seconds){_suggest(reg.reverts_after, registers)}")
        if reg.revert_value is None:
            errors.add(path + ("revert_value",), "a register with a revert timer needs the revert_value it falls back to")
    if reg.revert_value is not None:
        if reg.access != "rw":
            errors.add(path + ("revert_value",), "only a writable register reverts")
        elif (reg.min is not None and reg.revert_value < reg.min) or (reg.max is not None and reg.revert_value > reg.max):
            errors.add(path + ("revert_value",), f"{reg.revert_value:g} is outside {reg.min}..{reg.max}")


def _check_commands(commands: dict[str, Command], registers: dict[str, Register], errors: Errors) -> None:
    for name, command in commands.items():
        if not command.on_true and not command.on_false:
            errors.add(("commands", name), "a command needs on_true and/or on_false register writes")
        for key in ("on_true", "on_false"):
            for register in getattr(command, key):
                reg = registers.get(register)
                if reg is None or reg.access != "rw":
                    errors.add(("commands", name, key, register),
                               f"{register!r} is not a writable register of this profile{_suggest(register, registers)}")


def _check_overlaps(registers: dict[str, Register], errors: Errors) -> None:
    used: dict[tuple[ModbusTable, int], str] = {}
    for name, reg in registers.items():
        if reg.bits is not None or reg.alone:
            continue  # fields of one register share its address; an alone register is read by itself
        for address in range(reg.address, reg.address + reg.words):
            other = used.get((reg.table, address))
            if other is not None:
                errors.add(("registers", name, "address"),
                           f"{reg.table.value} address {address} is already taken by {other!r}")
                break
            used[(reg.table, address)] = name
