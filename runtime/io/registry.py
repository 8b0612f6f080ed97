"""Driver kinds known to the io_map: each names its driver class and its config records."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs

from runtime.config.lines import Path
from runtime.io.driver import Driver

# check(options, [(tag config, point record, path of the tag's io table)]) -> [(path, message)]
Checker = Callable[[Any, Sequence[tuple[Any, Any, Path]]], list[tuple[Path, str]]]


@attrs.frozen
class DriverKind:
    name: str
    driver: type[Driver]
    options: type  # attrs record for the device's [devices.<kind>] table
    point: type  # attrs record for the driver-specific keys of a tag's io table
    check: Checker | None = None
    build: Callable[..., Driver] | None = None  # (name, inputs, outputs, clock, settings, options) -> Driver
    parse_options: Callable[[Any, Path, Any], Any] | None = None  # custom parsing of the options table


def driver_kinds() -> dict[str, DriverKind]:
    """All driver kinds. Imported lazily so that loading a config does not open any device."""
    from runtime.io import bms_sleep, can_bms, gpio, i2c, modbus_client, sim_driver, sysfs

    kinds = [sim_driver.KIND, modbus_client.KIND, can_bms.KIND, gpio.KIND, i2c.KIND, sysfs.KIND, bms_sleep.KIND]
    return {kind.name: kind for kind in kinds}
