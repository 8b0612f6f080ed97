"""The `sysfs` driver: numbers read from files, such as the Raspberry Pi's CPU temperature.

    [[devices]]
    name = "pi"
    driver = "sysfs"
    poll_period_s = 2.0

    [[tags]]
    name = "cpu_temp_degc"
    io = { device = "pi", file = "/sys/class/thermal/thermal_zone0/temp", scale = 0.001 }

The kernel reports millidegrees; `scale` in the io table makes degrees. A missing or
unreadable file turns its tag BAD (logged once) without touching the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path as FsPath
from typing import Any

import attrs

from plc.tags import Area
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.io.driver import Driver, DriverSettings, Point
from runtime.io.registry import DriverKind

log = logging.getLogger(__name__)
CPU_TEMP = "/sys/class/thermal/thermal_zone0/temp"


@attrs.frozen
class SysfsOptions:
    """`[devices.sysfs]`: `root` is prepended to every file (a test directory, a chroot)."""

    root: str = ""


@attrs.frozen
class SysfsPoint:
    file: str = CPU_TEMP


def check_points(options: SysfsOptions, points: Sequence[tuple[Any, SysfsPoint, Path]]) -> list[tuple[Path, str]]:
    return [(path, "sysfs files are inputs") for tag, _point, path in points if tag.area is Area.OUTPUT]


class SysfsDriver(Driver):
    kind = "sysfs"

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, options: SysfsOptions):
        super().__init__(name, inputs, outputs, clock, settings)
        self.paths = [FsPath(options.root + p.address.file) if options.root else FsPath(p.address.file)
                      for p in inputs]
        self._errors: dict[FsPath, str] = {}

    def read_inputs(self, now: float) -> Sequence[Any]:
        return [self._read(path) for path in self.paths]

    def _read(self, path: FsPath) -> float | None:
        try:
            value = float(path.read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError) as exc:
            message = f"{path}: {exc}"
            if self._errors.get(path) != message:
                log.warning("device %s: cannot read %s", self.name, message)
                self._errors[path] = message
            self.fault_count += 1
            return None
        if self._errors.pop(path, None):
            log.info("device %s: %s reads again", self.name, path)
        return value


KIND = DriverKind(name="sysfs", driver=SysfsDriver, options=SysfsOptions, point=SysfsPoint, check=check_points)
