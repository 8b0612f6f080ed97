"""Driver kinds known to the io_map: kind name -> "module:KIND", imported when a site uses it.

Each driver module ends with its `KIND` record (the driver class, its config records and its
checks); this registry only names them, so it imports no driver and no driver imports it back
in a cycle. A driver class is built as `driver(name, inputs, outputs, clock, settings, options)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from plc.kinds import Kinds
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.io.driver import Driver, DriverSettings, Point

# check(options, [(tag config, point record, path of the tag's io table)]) -> [(path, message)]
Checker = Callable[[Any, Sequence[tuple[Any, Any, Path]]], list[tuple[Path, str]]]
# a Driver class: driver(name, inputs, outputs, clock, settings, options), options of the kind's record
DriverFactory = Callable[[str, Sequence[Point], Sequence[Point], Clock, DriverSettings, Any], Driver]


@attrs.frozen
class DriverKind:
    name: str
    driver: DriverFactory
    options: type  # attrs record for the device's [devices.<kind>] table
    point: type  # attrs record for the driver-specific keys of a tag's io table
    check: Checker | None = None
    parse_options: Callable[[Any, Path, Any], Any] | None = None  # custom parsing of the options table


DRIVERS: Kinds[DriverKind] = Kinds({
    "sim": "runtime.io.sim_driver:KIND",
    "modbus": "runtime.io.modbus.client:KIND",
    "can_bms": "runtime.io.can.bms:KIND",
    "gpio": "runtime.io.gpio:KIND",
    "i2c": "runtime.io.i2c:KIND",
    "sysfs": "runtime.io.sysfs:KIND",
    "bms_sleep": "runtime.io.bms_sleep:KIND",
})
