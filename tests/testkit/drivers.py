"""Small drivers for engine tests: real implementations of the driver contract, fed by Python.

They are not mocks of a device: they run through the same base class, threads, restart and
staleness logic as every production driver; only the "device" is a Python callable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from runtime.clock import Clock
from runtime.io.driver import Driver, DriverSettings, Point


class FunctionDriver(Driver):
    """Inputs come from `source(now)`; every output write is recorded in `written`."""

    kind = "function"
    supports_virtual_time = True

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, source: Callable[[float], Sequence[Any]]):
        super().__init__(name, inputs, outputs, clock, settings)
        self.source = source
        self.written: list[list[Any]] = []
        self.wrote = threading.Event()

    def read_inputs(self, now: float) -> Sequence[Any]:
        return self.source(now)

    def write_outputs(self, raw: Sequence[Any]) -> None:
        self.written.append(list(raw))
        self.wrote.set()
