"""How often a site reads the grid frequency, from what it sells (issue: meter to inverter in one scan).

A site that runs grid services reads each of its frequency sources at every poll of its device:
the poll group holding the frequency register is raised to the device's poll period, unless the
site sets that group's period itself (`poll_periods`), which is then checked against FFR's
activation time. Without this, the EM24's frequency (group `normal`, 1 s) reached the scan up to
a second late, and FFR at 49.5 Hz must be at full power within 0.7 s.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from plc.program import Program
from runtime.config.lines import Path
from runtime.config.schema import IoMap

log = logging.getLogger(__name__)


def frequency_polled_for_sale(io_map: IoMap, placed: list[tuple[int, Program]]) -> tuple[IoMap, list[str]]:
    """The io_map with the poll group of each grid-services frequency input read at every poll
    of its device (a group the site sets in `poll_periods` is kept as set), and a line per
    group raised (logged, and printed by `ems check-config`)."""
    options, notes = dict(io_map.device_options), []
    for _, program in placed:
        params = io_map.program_params.get(program.name)
        if program.kind != "grid_services" or params is None:
            continue
        for tag in params.frequency_inputs:
            raised = _raised(io_map, options, tag)
            if raised is not None:
                options[raised[0]], note = raised[1:]
                notes.append(f"{note} (program {program.name!r} sells grid services)")
                log.info("%s", notes[-1])
    if not notes:
        return io_map, notes
    return attrs.evolve(io_map, device_options=options), notes


def _raised(io_map: IoMap, options: dict[str, Any], tag: str) -> tuple[str, Any, str] | None:
    """(device, its options with the group of `tag`'s register at the device's poll period, what
    changed), or None when that group is read at every poll already, is set by the site, or
    `tag` has no register."""
    found = _register_of(io_map, options, tag)
    if found is None:
        return None
    device, config, register = found
    profile = config.profile
    group = profile.group_of(profile.registers[register])
    period = profile.poll_groups[group].period_s
    if group in config.options.poll_periods or period <= device.poll_period_s:
        return None
    groups = dict(profile.poll_groups)
    groups[group] = attrs.evolve(groups[group], period_s=device.poll_period_s)
    note = (f"device {device.name!r}: poll group {group!r} (register {register!r}, for {tag}) read at every poll, "
            f"{device.poll_period_s:g} s, not {period:g} s")
    return device.name, attrs.evolve(config, profile=attrs.evolve(profile, poll_groups=groups)), note


def _register_of(io_map: IoMap, options: dict[str, Any], tag: str) -> tuple[Any, Any, str] | None:
    """(device, driver options, profile register) behind an input tag; None without a register."""
    binding = io_map.tag_io.get(tag)
    if binding is None:
        return None
    io, point = binding
    device = _device(io_map, io.device)
    config = options.get(device.name)
    register = getattr(point, "register", "")
    profile = getattr(config, "profile", None)
    if profile is None or register not in profile.registers:
        return None
    return device, config, register


def _device(io_map: IoMap, name: str) -> Any:
    return next(d for d in io_map.devices if d.name == name)


def ffr_frequency_in_time(io_map: IoMap, placed: list[tuple[int, Program]]) -> list[tuple[Path, str]]:
    """A site that sells FFR must see the frequency fall in time: read every R s and acted on in
    the next scan (outputs are written at once after it), a step reaches the inverter up to
    R + scan period later, and that must leave at least half the full activation time (0.7 s at
    49.5 Hz) to the inverter's own ramp. Checked for the first frequency input, the one used
    while it is fresh."""
    from programs.grid.products import ffr_full_activation_s

    errors: list[tuple[Path, str]] = []
    scan_s = io_map.site.scan_period_s
    for i, program in placed:
        params = io_map.program_params.get(program.name)
        if program.kind != "grid_services" or params is None or not params.ffr_capacity_w:
            continue
        level_hz, tag = params.ffr.activation_hz, params.frequency_inputs[0]
        source = _read_period(io_map, tag)
        if source is None:
            continue
        read_s, where = source
        allowed_s = ffr_full_activation_s(level_hz)
        if read_s + scan_s > allowed_s / 2 + 1e-9:
            errors.append((("programs", i, "params", "ffr_capacity_w"),
                           f"FFR at {level_hz:g} Hz must be at full power within {allowed_s:g} s, but its frequency "
                           f"({tag}: {where}) is read every {read_s:g} s: {read_s:g} s + a scan of {scan_s:g} s = "
                           f"{read_s + scan_s:g} s before the inverter hears of a step, above the {allowed_s / 2:g} s "
                           "that leave half the time to its ramp; " + (
                               f"read it at least every {allowed_s / 2 - scan_s:g} s" if allowed_s / 2 > scan_s
                               else f"the scan period alone is too long: at most {allowed_s / 4:g} s")))
    return errors


def _read_period(io_map: IoMap, tag: str) -> tuple[float, str] | None:
    """How often the driver behind an input tag reads it, and what it reads; None for a tag no
    device feeds. A Modbus register is read at its poll group's period, at the device's polls."""
    binding = io_map.tag_io.get(tag)
    if binding is None:
        return None
    found = _register_of(io_map, io_map.device_options, tag)
    if found is None:
        device = _device(io_map, binding[0].device)
        return device.poll_period_s, f"device {device.name!r}, polled every {device.poll_period_s:g} s"
    device, config, register = found
    profile = config.profile
    group = profile.group_of(profile.registers[register])
    period = profile.poll_groups[group].period_s
    return max(device.poll_period_s, period), (
        f"device {device.name!r}, register {register!r} in poll group {group!r} every {period:g} s "
        f"(poll_periods = {{ {group} = ... }} under [devices.modbus] sets it), polled every {device.poll_period_s:g} s")
