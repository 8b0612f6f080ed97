"""The grid_services program alone on a small image: the tags it reads are plain memory tags the
test sets, so each behaviour is driven scan by scan without a plant."""

from __future__ import annotations

from typing import Any

import attrs

from programs.enums import SiteState
from programs.grid.params import Params
from programs.grid_services import GridServices
from runtime.image import ProcessImage
from plc.program import ScanContext
from plc.tags import Area, DType, TagSpec

INPUTS: dict[str, Any] = {
    "grid_frequency_hz": 50.0, "inverter_frequency_hz": 50.0, "soc_pct": 50.0, "soc_min_pct": 5.0,
    "soc_max_pct": 95.0, "baseline_p_w": 0.0, "limit_charge_w": 30000.0, "limit_discharge_w": 30000.0,
    "site_state": int(SiteState.RUN), "sleep_request": False,
}


def _spec(name: str, value: Any) -> TagSpec:
    dtype = DType.BOOL if isinstance(value, bool) else (DType.INT16 if isinstance(value, int) else DType.FLOAT32)
    return TagSpec(name=name, dtype=dtype, area=Area.MEMORY, initial=value)


class Harness:
    """One GridServices program, its image and a scan clock."""

    def __init__(self, period_s: float = 0.1, **params: Any):
        defaults = {"battery_capacity_wh": 80000.0, "filter_tau_s": 1.0}
        self.program = GridServices("grid", Params(**{**defaults, **params}))
        self.image = ProcessImage([_spec(n, v) for n, v in INPUTS.items()])
        for spec in self.program.declare():
            self.image.add(spec)
        self.program.bind(self.image)
        self.ctx = ScanContext(period_s=period_s)
        self.period_s = period_s

    def __getitem__(self, name: str) -> Any:
        return self.image[name].value

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            self.image[name].set(value)

    def scan(self, n: int = 1, **values: Any) -> Harness:
        """Run n scans with these tag values set before each."""
        for _ in range(n):
            self.ctx.scan += 1
            self.ctx.t_s += self.period_s
            self.ctx.dt_s = self.period_s
            self.image.begin_scan(self.ctx.t_s)
            self.set(**values)
            self.program.execute(self.ctx)
        return self

    def run_s(self, seconds: float, **values: Any) -> Harness:
        return self.scan(int(round(seconds / self.period_s)), **values)

    def test_frequency(self, f_hz: float, seconds: float = 0.0) -> Harness:
        """Drive the applied test frequency (refreshed every scan, as a test client does)."""
        n = max(1, int(round(seconds / self.period_s)))
        return self.scan(n, applied_test_frequency_hz=f_hz, test_frequency_active=True)


def params(**values: Any) -> Params:
    return attrs.evolve(Params(), **values)
