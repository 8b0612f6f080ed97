"""io_map records of the `modbus` driver kind: the device table, the tag point, the checks.

    [[devices]]
    name = "meter"
    driver = "modbus"
    [devices.modbus]
    model = "carlo_gavazzi_em24"       # or profile = "devices/carlo_gavazzi_em24.toml"
    host = "192.168.1.20"
    port = 502

    [[tags]]
    name = "grid_p_w"
    io = { device = "meter", register = "p_total" }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
from attrs import validators as v

from plc.tags import Area
from runtime.config.lines import Path
from runtime.config.structure import MISSING, ConfigErrors, Errors, _suggest, structure
from runtime.io.modbus import codec, window
from runtime.io.modbus.profile import Profile, known_models, load_profile, resolve_profile_path

META = ("online", "fault_count", "timeouts", "exceptions", "bad_responses", "write_errors",
        "verify_failures", "reconnects", "poll_time_s", "late_reads")
LATE_READS_OF = "late_reads."  # meta = "late_reads.<poll group>": that group's late reads


@attrs.frozen
class ModbusOptions:
    """`[devices.modbus]`: which profile, where the device is, how patient to be."""

    profile: str = ""
    model: str = ""
    kind: Literal["", "meter", "inverter", "io"] = ""
    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = "tcp"
    host: str = "127.0.0.1"
    port: int = attrs.field(default=502, validator=[v.ge(1), v.le(65535)])
    serial_port: str = ""
    baudrate: int = attrs.field(default=9600, validator=v.ge(300))
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = attrs.field(default=1, validator=[v.ge(1), v.le(2)])
    bytesize: int = attrs.field(default=8, validator=[v.ge(7), v.le(8)])
    unit_id: int | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(247)]))
    sim_vars: dict[str, str] = attrs.field(factory=dict)  # simulator only: register -> plant variable
    timeout_s: float = attrs.field(default=1.0, validator=[v.gt(0.0), v.le(30.0)])
    retries: int = attrs.field(default=1, validator=[v.ge(0), v.le(10)])
    bad_after_s: float = attrs.field(default=5.0, validator=v.ge(0.0))
    verify_writes: bool | None = None
    # Communication-loss revert time written to the profile's revert timers at every connect
    # (SunSpec *_RvrtTms): the device drops a guarded setpoint back to its revert_value when
    # the controller has not rewritten it for this long. The driver rewrites guarded outputs
    # every revert_s / REWRITES_PER_REVERT, so a live controller never lets them lapse.
    revert_s: float = attrs.field(default=10.0, validator=[v.ge(1.0), v.le(3600.0)])
    # How often a guarded output is rewritten unchanged; default revert_s / REWRITES_PER_REVERT.
    # A cluster node rewrites every poll, so that its inverter's revert, counted from the last
    # write, comes when a new leader expects it (docs/cluster.md, "Bumpless failover").
    guard_rewrite_s: float | None = attrs.field(default=None, validator=v.optional(v.gt(0.0)))
    # A profile with public_map = false (a template: addresses not from a published map) drives
    # a device only with this set, and with a warning at every start.
    allow_unverified_profile: bool = False
    # The installed device's rating, for a profile that has none (a generic SunSpec inverter,
    # a CT-connected meter): its power and current readings are plausible within twice it
    rated_power_w: float | None = attrs.field(default=None, validator=v.optional([v.gt(0.0), v.le(1e9)]))
    rated_current_a: float | None = attrs.field(default=None, validator=v.optional([v.gt(0.0), v.le(1e6)]))
    # This site's period of a profile's poll group (group -> s), e.g. { normal = 0.1 } for a meter
    # whose frequency FFR needs fresh; the other groups keep the profile's
    poll_periods: dict[str, float] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.guard_rewrite_s is not None and self.guard_rewrite_s > self.revert_s / 2:
            raise ValueError(f"guard_rewrite_s ({self.guard_rewrite_s:g} s) must be at most half of revert_s "
                             f"({self.revert_s:g} s), or one lost write reverts the device")


@attrs.frozen
class ModbusPoint:
    """The driver keys of a tag's io table: a profile register (optionally one bit of it)
    or a diagnostic of the connection (`meta`)."""

    register: str = ""
    bit: int | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(63)]))
    meta: str = ""
    command: str = ""
    # an output in the unit of this register, written as a percentage of the value the device
    # reports there (SunSpec OutWRte/InWRte: % of WChaMax), read once per connection
    percent_of: str = ""


@attrs.frozen
class ModbusConfig:
    """What the driver is built from: the options plus the loaded profile."""

    options: ModbusOptions
    profile: Profile

    @property
    def unit_id(self) -> int:
        return self.options.unit_id if self.options.unit_id is not None else self.profile.device.unit_id


def parse_options(data: dict[str, Any], path: Path, errors: Errors) -> Any:
    options = structure(ModbusOptions, data, path, errors)
    if options is MISSING:
        return MISSING
    if bool(options.profile) == bool(options.model):
        errors.add(path, "give either profile = \"devices/<file>.toml\" or model = \"<name>\" (one of them)")
        return MISSING
    if options.transport == "rtu" and not options.serial_port:
        errors.add(path + ("serial_port",), "an RTU device needs its serial port (e.g. \"/dev/ttyUSB0\")")
        return MISSING
    key = "model" if options.model else "profile"
    file = resolve_profile_path(options.profile, options.model)
    if options.model and not file.exists():
        errors.add(path + (key,), f"no profile for model {options.model!r}{_suggest(options.model, known_models())}")
        return MISSING
    try:
        profile = load_profile(file)
    except ConfigErrors as exc:
        for error in exc.errors:
            errors.add(path + (key,), f"profile {error}")
        return MISSING
    if not profile.device.public_map and not options.allow_unverified_profile:
        errors.add(path + (key,), f"profile {profile.name!r} is not from a published register map (public_map = "
                   "false): its addresses are unverified and could write the wrong registers of a real device; "
                   "set allow_unverified_profile = true here to use it anyway (a bench or a confirmed map)")
        return MISSING
    if options.kind and profile.device.kind != options.kind:
        errors.add(path + ("kind",), f"profile {profile.name!r} is of kind {profile.device.kind!r}, not {options.kind!r}")
        return MISSING
    for register in options.sim_vars:
        if register not in profile.registers:
            errors.add(path + ("sim_vars", register), f"profile {profile.name!r} has no register {register!r}"
                       f"{_suggest(register, profile.registers)}")
    return ModbusConfig(options, _with_poll_periods(profile, options.poll_periods, path + ("poll_periods",), errors))


def _with_poll_periods(profile: Profile, periods: dict[str, float], path: Path, errors: Errors) -> Profile:
    """The profile with this site's poll group periods (`poll_periods`), each checked."""
    groups = dict(profile.poll_groups)
    for group, period in periods.items():
        if group not in groups:
            errors.add(path + (group,), f"profile {profile.name!r} has no poll group {group!r}{_suggest(group, groups)}")
        elif not (isinstance(period, (int, float)) and not isinstance(period, bool) and 0.0 < period <= 3600.0):
            errors.add(path + (group,), f"a poll period in seconds, above 0 and at most 3600, not {period!r}")
        else:
            groups[group] = attrs.evolve(groups[group], period_s=float(period))
    return attrs.evolve(profile, poll_groups=groups)


def check_points(config: ModbusConfig, points: Sequence[tuple[Any, ModbusPoint, Path]]) -> list[tuple[Path, str]]:
    """Cross-check tag bindings against the profile: names, access, bits, duplicate outputs."""
    profile = config.profile
    problems: list[tuple[Path, str]] = []
    outputs: dict[str, str] = {}
    for tag, point, path in points:
        is_output = tag.area is Area.OUTPUT
        if [bool(point.register), bool(point.meta), bool(point.command)].count(True) != 1:
            problems.append((path, "bind one of register = \"<name>\", command = \"<name>\" or meta = \"<diagnostic>\""))
            continue
        if point.command:
            if point.command not in profile.commands:
                problems.append((path + ("command",), f"profile {profile.name!r} has no command {point.command!r}"
                                 f"{_suggest(point.command, profile.commands)}"))
            elif not is_output or tag.dtype.value != "bool":
                problems.append((path + ("command",), "a command is driven by a bool output tag"))
            continue
        if point.meta:
            group = point.meta.removeprefix(LATE_READS_OF) if point.meta.startswith(LATE_READS_OF) else None
            if group is not None and group not in profile.poll_groups:
                problems.append((path + ("meta",), f"profile {profile.name!r} has no poll group {group!r}"
                                 f"{_suggest(group, profile.poll_groups)}"))
            elif group is None and point.meta not in META:
                problems.append((path + ("meta",), f"unknown diagnostic {point.meta!r}{_suggest(point.meta, META)}"))
            elif is_output:
                problems.append((path + ("meta",), "a diagnostic is an input; an output needs a register"))
            continue
        reg = profile.registers.get(point.register)
        if reg is None:
            problems.append((path + ("register",), f"profile {profile.name!r} has no register {point.register!r}"
                             f"{_suggest(point.register, profile.registers)}"))
            continue
        if reg.dtype in codec.STRING_DTYPES:
            problems.append((path + ("register",), f"register {point.register!r} holds text; tags take numbers"))
            continue
        if point.bit is not None and (reg.is_bit or point.bit >= reg.words * 16 or reg.dtype.startswith("float")):
            problems.append((path + ("bit",), f"register {point.register!r} ({reg.dtype}) has no bit {point.bit}"))
        if point.percent_of:
            problems.extend(_check_percent_of(profile, point, path, is_output))
        if is_output:
            problems.extend(_check_output(point, reg, path, outputs, tag.name))
    return problems


def _check_percent_of(profile: Profile, point: ModbusPoint, path: Path, is_output: bool) -> list[tuple[Path, str]]:
    base = profile.registers.get(point.percent_of)
    if not is_output:
        return [(path + ("percent_of",), "percent_of converts an output's value; inputs take scale")]
    if base is None:
        return [(path + ("percent_of",), f"profile {profile.name!r} has no register {point.percent_of!r}"
                 f"{_suggest(point.percent_of, profile.registers)}")]
    if base.dtype in codec.STRING_DTYPES or base.is_bit:
        return [(path + ("percent_of",), f"register {point.percent_of!r} holds {base.dtype}, not a number to take "
                 "a percentage of")]
    return []


def _check_output(point: ModbusPoint, reg: Any, path: Path, outputs: dict[str, str], tag: str) -> list[tuple[Path, str]]:
    if reg.access != "rw":
        return [(path + ("register",), f"register {point.register!r} is read-only; an output needs a writable one")]
    if point.bit is not None:
        return [(path + ("bit",), "an output writes a whole register or a bit field of the profile (bits = [lsb, "
                 "width], written read-modify-write); bit = N is for inputs")]
    claimed = (point.register, *window.companions(reg))  # a window's write also writes its mirror and mode
    taken = next((name for name in claimed if name in outputs), None)
    if taken is not None:
        return [(path + ("register",), f"register {taken!r} is already written by tag {outputs[taken]!r}")]
    outputs.update(dict.fromkeys(claimed, tag))
    return []
