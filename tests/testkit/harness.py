"""Programs alone on a small image, scanned one by one: the one harness for program tests.

The tags a program reads are plain memory tags the test sets; each behaviour is then driven
scan by scan (input, scan, expect), with time leaps where a test needs a gap, and no plant.

    h = Harness([GridServices("grid", params)], inputs={"grid_frequency_hz": 50.0, ...})
    h.scan(10, grid_frequency_hz=49.8).expect(fcr_d_up_active=True)
    h.leap(900.0).scan().expect(ffr_armed=True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from plc.program import Program, ScanContext
from plc.tags import Access, Area, DType, TagSpec
from runtime.image import ProcessImage


def memory(name: str, dtype: DType = DType.FLOAT32, initial: Any = 0.0, **kw: Any) -> TagSpec:
    """A writable memory tag that starts GOOD at `initial`."""
    return TagSpec(name=name, dtype=dtype, area=Area.MEMORY, access=Access.RW, initial=initial, **kw)


def inferred(name: str, value: Any) -> TagSpec:
    """A memory tag whose type follows its initial value (bool, int or float)."""
    if isinstance(value, bool):
        return memory(name, DType.BOOL, value)
    if isinstance(value, int):
        return memory(name, DType.INT16, value)
    return memory(name, DType.FLOAT32, float(value))


class Harness:
    """Programs in their order, their image and a scan clock (`period_s`, starting at 0)."""

    def __init__(self, programs: Sequence[Program], tags: Iterable[TagSpec] = (),
                 inputs: Mapping[str, Any] | None = None, period_s: float = 0.1, wall_s: float = 0.0):
        self.programs = list(programs)
        specs = list(tags) + [inferred(name, value) for name, value in (inputs or {}).items()]
        self.image = ProcessImage(specs)
        for program in self.programs:
            for spec in program.declare():
                self.image.add(spec)
        for program in self.programs:
            program.bind(self.image)
        self.period_s = period_s
        self.ctx = ScanContext(period_s=period_s, wall_s=wall_s)
        self._leap_s = 0.0

    def __getitem__(self, name: str) -> Any:
        return self.image[name].value

    def set(self, **values: Any) -> Harness:
        for name, value in values.items():
            self.image[name].set(value)
        return self

    def scan(self, n: int = 1, **values: Any) -> Harness:
        """Run n scans, with these tag values set at the start of each (as inputs are read)."""
        for _ in range(n):
            dt = self.period_s + self._leap_s
            self._leap_s = 0.0
            ctx = self.ctx
            ctx.scan += 1
            ctx.t_s += dt
            ctx.wall_s += dt
            ctx.dt_s = dt
            self.image.begin_scan(ctx.t_s)
            self.set(**values)
            for program in self.programs:
                program.execute(ctx)
        return self

    def run_s(self, seconds: float, **values: Any) -> Harness:
        """Scan for `seconds` of scan time."""
        return self.scan(int(round(seconds / self.period_s)), **values)

    def leap(self, seconds: float) -> Harness:
        """Time jumps by `seconds` with no scan in between (a stalled scan, a paused process):
        the next scan's dt is its period plus the leap."""
        self._leap_s += seconds
        return self

    def expect(self, rel: float = 1e-9, **values: Any) -> Harness:
        """Assert tag values: numbers to a relative tolerance, everything else exactly."""
        for name, wanted in values.items():
            got = self[name]
            if isinstance(wanted, float) and isinstance(got, (int, float)):
                assert math.isclose(got, wanted, rel_tol=rel, abs_tol=rel), f"{name}: {got!r}, expected {wanted!r}"
            else:
                assert got == wanted, f"{name}: {got!r}, expected {wanted!r}"
        return self
