"""Load and check an io_map file: every error at once, each with its file, line and key path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

import attrs

from plc.program import ProgramKind
from plc.tags import Access, Area, DType, ModbusTable, TagSpec, TagValueError, make_checker
from programs.registry import PROGRAMS
from runtime.cluster.config import check as check_cluster
from runtime.config.files import parse_toml, raise_errors, read_text
from runtime.config.lines import Path, key_lines
from runtime.config.schema import (
    CloudConfig,
    ClusterConfig,
    DeviceConfig,
    EventLogConfig,
    IoConfig,
    IoMap,
    LoggingConfig,
    MeterGatewayConfig,
    ModbusServerConfig,
    ProgramConfig,
    RetainConfig,
    SiteConfig,
    SupervisorConfig,
    WatchdogConfig,
)
from runtime.config.structure import MISSING, Errors, _suggest, describe, structure
from runtime.io.registry import DRIVERS, DriverKind
from runtime.paths import shipped
from runtime.servers.register_map import odd_start

TagIo = tuple[IoConfig, Any, Path]  # a tag's io binding, its driver-specific point, where it is in the file

SECTIONS = ("site", "supervisor", "logging", "modbus_server", "meter_gateway", "devices", "tags", "programs",
            "event_log", "retain", "watchdog", "cluster", "cloud")


def load_io_map(path: str | FsPath) -> IoMap:
    """Parse and validate an io_map file; raise ConfigErrors listing every problem. A relative
    path not found from the working directory is a shipped one (`io_maps/...`), runtime/paths.py."""
    path = shipped(path)
    return parse_io_map(read_text(path), str(path))


def parse_io_map(text: str, filename: str = "<io_map>") -> IoMap:
    data = parse_toml(text, filename)
    errors = Errors()
    io_map = _build(data, filename, errors)
    raise_errors(errors, text, filename)
    io_map = attrs.evolve(io_map, key_lines=key_lines(text))  # for errors found when the site is built
    return io_map


def _build(data: dict[str, Any], filename: str, errors: Errors) -> IoMap:
    for key in data:
        if key not in SECTIONS:
            errors.add((key,), f"unknown section{_suggest(key, SECTIONS)}")
    if "site" not in data:
        errors.add(("site",), "missing required section")
    site = structure(SiteConfig, data.get("site", {}), ("site",), errors)
    supervisor = structure(SupervisorConfig, data.get("supervisor", {}), ("supervisor",), errors)
    logging_cfg = structure(LoggingConfig, data.get("logging", {}), ("logging",), errors)
    modbus = structure(ModbusServerConfig, data.get("modbus_server", {}), ("modbus_server",), errors)
    meter_gateway = structure(MeterGatewayConfig, data.get("meter_gateway", {}), ("meter_gateway",), errors)
    service = {key: structure(cls, data.get(key, {}), (key,), errors)
               for key, cls in (("event_log", EventLogConfig), ("retain", RetainConfig), ("watchdog", WatchdogConfig),
                                ("cluster", ClusterConfig), ("cloud", CloudConfig))}

    kinds = DRIVERS
    devices, options, broken = _devices(_array(data, "devices", errors), kinds, errors)
    tags, tag_io = _tags(_array(data, "tags", errors), devices, broken, kinds, errors)
    programs, params = _programs(_array(data, "programs", errors), PROGRAMS, errors)
    _check_drivers(devices, options, tags, tag_io, kinds, errors)
    if service["cluster"] is not MISSING:
        check_cluster(service["cluster"], devices, errors)
    return IoMap(
        path=filename,
        site=site,
        supervisor=supervisor,
        logging=logging_cfg,
        modbus_server=modbus,
        devices=tuple(devices.values()),
        device_options=options,
        tags=tuple(tags.values()),
        tag_io={name: (binding, point) for name, (binding, point, _) in tag_io.items()},
        programs=tuple(programs),
        program_params=params,
        meter_gateway=meter_gateway,
        **service,
    )


def _array(data: dict[str, Any], key: str, errors: Errors) -> list[tuple[Path, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        errors.add((key,), f"expected an array of tables ([[{key}]]), got {type(value).__name__}")
        return []
    return [((key, i), item) for i, item in enumerate(value)]


def _split(item: Any, key: str) -> tuple[Any, Any]:
    """Take one sub-table out of a table, leaving the rest to be structured."""
    if not isinstance(item, dict):
        return item, None
    rest = dict(item)
    return rest, rest.pop(key, None)


def _devices(items: list[tuple[Path, Any]], kinds: Mapping[str, DriverKind],
             errors: Errors) -> tuple[dict[str, DeviceConfig], dict[str, Any], set[str]]:
    devices: dict[str, DeviceConfig] = {}
    options: dict[str, Any] = {}
    broken: set[str] = set()
    for path, item in items:
        driver = item.get("driver") if isinstance(item, dict) else None
        rest, sub = _split(item, driver) if isinstance(driver, str) else (item, None)
        device = structure(DeviceConfig, rest, path, errors)
        if device is MISSING:
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                broken.add(name)  # reported once here; tags bound to it are not blamed again
            continue
        if device.name in devices:
            errors.add(path + ("name",), f"device {device.name!r} is declared twice")
            continue
        if device.stale_after_s < device.poll_period_s:
            errors.add(path + ("stale_after_s",), f"{device.stale_after_s} s is below poll_period_s "
                                                  f"({device.poll_period_s} s): every tag would be stale between "
                                                  "two polls; expected at least the poll period")
        kind = kinds.get(device.driver)
        if kind is None:
            errors.add(path + ("driver",), f"unknown driver {device.driver!r}{_suggest(device.driver, kinds)}")
            continue
        sub = sub if sub is not None else {}
        if not isinstance(sub, dict):
            errors.add(path + (device.driver,), f"expected a table of the {device.driver} driver's settings "
                                                f"([devices.{device.driver}]), got {describe(sub)}")
            broken.add(device.name)
            continue
        if kind.parse_options is not None:
            opts = kind.parse_options(sub, path + (device.driver,), errors)
        else:
            opts = structure(kind.options, sub, path + (device.driver,), errors)
        if opts is MISSING:
            broken.add(device.name)
            continue
        bad_after = getattr(getattr(opts, "options", opts), "bad_after_s", None)  # can_bms: CanBmsConfig.options
        if isinstance(bad_after, float) and bad_after < device.stale_after_s:
            errors.add(path + (device.driver, "bad_after_s"), f"{bad_after} s is below the device's stale_after_s "
                                                              f"({device.stale_after_s} s); expected at least that")
        devices[device.name] = device
        options[device.name] = opts
    return devices, options, broken


def _tags(items: list[tuple[Path, Any]], devices: dict[str, DeviceConfig], broken: set[str],
          kinds: Mapping[str, DriverKind], errors: Errors) -> tuple[dict[str, TagSpec], dict[str, TagIo]]:
    tags: dict[str, TagSpec] = {}
    tag_io: dict[str, TagIo] = {}
    used: dict[tuple[ModbusTable, int], str] = {}
    for path, item in items:
        rest, io = _split(item, "io")
        tag = structure(TagSpec, rest, path, errors)
        if tag is MISSING:
            continue
        if tag.name in tags:
            errors.add(path + ("name",), f"tag {tag.name!r} is declared twice")
            continue
        tags[tag.name] = tag
        _check_tag(tag, path, errors)
        _check_modbus(tag, path, used, errors)
        if io is None:
            if tag.area is not Area.MEMORY:
                errors.add(path + ("io",), f"{tag.area.value} tag needs an io binding (io = {{ device = ... }})")
            continue
        if tag.area is Area.MEMORY:
            errors.add(path + ("io",), "a memory tag has no io binding; make it an input or an output")
            continue
        binding = _io(io, path + ("io",), devices, broken, kinds, errors)
        if binding is not None:
            tag_io[tag.name] = (*binding, path + ("io",))
    return tags, tag_io


def _io(io: Any, path: Path, devices: dict[str, DeviceConfig], broken: set[str], kinds: Mapping[str, DriverKind],
        errors: Errors) -> tuple[IoConfig, Any] | None:
    if not isinstance(io, dict):
        errors.add(path, "expected a table")
        return None
    common = {k: io[k] for k in ("device", "scale", "offset") if k in io}
    specific = {k: val for k, val in io.items() if k not in common}
    binding = structure(IoConfig, common, path, errors)
    if binding is MISSING:
        return None
    device = devices.get(binding.device)
    if device is None and binding.device in broken:
        return None
    if device is None:
        errors.add(path + ("device",), f"no device named {binding.device!r}{_suggest(binding.device, devices)}")
        return None
    point = structure(kinds[device.driver].point, specific, path, errors)
    return None if point is MISSING else (binding, point)


def tag_spec(tag: TagSpec, default_max_age_s: float | None = None) -> TagSpec:
    """An io_map tag as the image holds it: without its own max_age_s, its device's stale_after_s."""
    if tag.max_age_s is None and default_max_age_s is not None:
        return attrs.evolve(tag, max_age_s=default_max_age_s)
    return tag


def _check_tag(tag: TagSpec, path: Path, errors: Errors) -> None:
    if tag.min is not None and tag.max is not None and tag.min >= tag.max:
        errors.add(path + ("min",), f"min {tag.min} is not below max {tag.max}; expected min < max")
        return
    if tag.dtype is DType.ENUM and not tag.enum_labels:
        errors.add(path + ("enum_labels",), "an enum tag needs its labels")
    if tag.dtype is DType.STRING and tag.length == 0:
        errors.add(path + ("length",), "a string tag needs its length in characters")
    if tag.area is Area.OUTPUT and tag.safe_value is None:
        errors.add(path + ("safe_value",), "an output tag needs the safe value it takes whenever in doubt")
    if tag.safe_hold and tag.area is not Area.OUTPUT:
        errors.add(path + ("safe_hold",), "only an output holds its last command in doubt")
    if tag.area is Area.INPUT and tag.access is Access.RW:
        errors.add(path + ("access",), "an input tag is written by its device only; use access = \"ro\"")
    check = make_checker(tag)
    for key in ("safe_value", "initial"):
        value = getattr(tag, key)
        if value is None:
            continue
        try:
            check(value)
        except TagValueError as exc:
            errors.add(path + (key,), str(exc))


def _check_modbus(tag: TagSpec, path: Path, used: dict[tuple[ModbusTable, int], str], errors: Errors) -> None:
    if tag.modbus is None:
        return
    table = tag.modbus.table
    is_bool = tag.dtype is DType.BOOL
    if is_bool != table.is_bits:
        wanted = "coil or discrete" if is_bool else "holding or input"
        errors.add(path + ("modbus", "table"), f"a {tag.dtype.value} tag belongs in a {wanted} table, not {table.value}")
        return
    if tag.access is Access.RW and not table.writable:
        errors.add(path + ("modbus", "table"), f"a writable tag must be in a coil or holding table, not {table.value}")
    if tag.modbus.scale != 1.0 and tag.dtype not in (DType.INT16, DType.UINT16, DType.INT32, DType.UINT32):
        errors.add(path + ("modbus", "scale"), "a scale factor applies to integer tags only")
    odd = odd_start(tag.dtype, tag.modbus.address)
    if odd is not None:
        errors.add(path + ("modbus", "address"), odd)
        return
    words = tag.words
    for address in range(tag.modbus.address, tag.modbus.address + words):
        other = used.get((table, address))
        if other is not None:
            errors.add(path + ("modbus", "address"),
                       f"{table.value} address {address} is already taken by tag {other!r}")
            return
        if address > 65535:
            errors.add(path + ("modbus", "address"), f"{words} registers from {tag.modbus.address} pass 65535")
            return
    for address in range(tag.modbus.address, tag.modbus.address + words):
        used[(table, address)] = tag.name


def _programs(items: list[tuple[Path, Any]], kinds: Mapping[str, ProgramKind],
              errors: Errors) -> tuple[list[ProgramConfig], dict[str, Any]]:
    programs: list[ProgramConfig] = []
    params: dict[str, Any] = {}
    for path, item in items:
        rest, raw = _split(item, "params")
        program = structure(ProgramConfig, rest, path, errors)
        if program is MISSING:
            continue
        if any(p.name == program.name for p in programs):
            errors.add(path + ("name",), f"program {program.name!r} is declared twice")
            continue
        cls = kinds.get(program.kind)
        if cls is None:
            errors.add(path + ("kind",), f"unknown program kind {program.kind!r}{_suggest(program.kind, kinds)}")
            continue
        value = structure(cls.params_type, raw if raw is not None else {}, path + ("params",), errors)
        _check_durations(raw, path + ("params",), errors)
        programs.append(program)
        if value is not MISSING:
            params[program.name] = value
    return programs, params


PROGRAM_DURATION_MAX_S = 366 * 86400.0  # a year: no program parameter in seconds means more (an SOH filter's tau is a day)


def _check_durations(data: Any, path: Path, errors: Errors) -> None:
    """Every program parameter in seconds (a key ending in `_s`, in nested tables and arrays too)
    is at most PROGRAM_DURATION_MAX_S: 1e300 s is finite, and no site works with it."""
    if isinstance(data, dict):
        for key, value in data.items():
            if (isinstance(key, str) and key.endswith("_s") and isinstance(value, (int, float))
                    and not isinstance(value, bool) and value > PROGRAM_DURATION_MAX_S):
                errors.add(path + (key,), f"{value:g} s is more than a year ({PROGRAM_DURATION_MAX_S:g} s)")
            else:
                _check_durations(value, path + (key,), errors)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _check_durations(item, path + (index,), errors)


def _check_drivers(devices: dict[str, DeviceConfig], options: dict[str, Any], tags: dict[str, TagSpec],
                   tag_io: dict[str, TagIo], kinds: Mapping[str, DriverKind], errors: Errors) -> None:
    by_device: dict[str, list[tuple[TagSpec, Any, Path]]] = {name: [] for name in devices}
    for name, (binding, point, path) in tag_io.items():
        by_device[binding.device].append((tags[name], point, path))
    for name, device in devices.items():
        kind = kinds[device.driver]
        if kind.check is None or name not in options:
            continue
        for path, message in kind.check(options[name], by_device[name]):
            errors.add(path, message)
