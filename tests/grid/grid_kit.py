"""The grid_services program alone on a small image (tests/testkit/harness.py): the tags it reads
are plain memory tags the test sets, so each behaviour is driven scan by scan without a plant."""

from __future__ import annotations

from typing import Any

import attrs
from testkit.harness import Harness as ProgramHarness

from programs.enums import SiteState
from programs.grid.params import Params
from programs.grid_services import GridServices

INPUTS: dict[str, Any] = {
    "grid_frequency_hz": 50.0, "inverter_frequency_hz": 50.0, "soc_pct": 50.0, "soc_min_pct": 5.0,
    "soc_max_pct": 95.0, "baseline_p_w": 0.0, "limit_charge_w": 30000.0, "limit_discharge_w": 30000.0,
    "site_state": int(SiteState.RUN), "sleep_request": False,
}


class Harness(ProgramHarness):
    """One GridServices program (an 80 kWh battery, a 1 s frequency filter unless told); `inputs`: more
    tags the test sets (the inverter's power, ...)."""

    def __init__(self, period_s: float = 0.1, inputs: dict[str, Any] | None = None, **params: Any):
        defaults = {"battery_capacity_wh": 80000.0, "filter_tau_s": 1.0}
        self.program = GridServices("grid", Params(**{**defaults, **params}))
        super().__init__([self.program], inputs={**INPUTS, **(inputs or {})}, period_s=period_s)

    def test_frequency(self, f_hz: float, seconds: float = 0.0) -> Harness:
        """Drive the applied test frequency (refreshed every scan, as a test client does)."""
        n = max(1, int(round(seconds / self.period_s)))
        self.scan(n, applied_test_frequency_hz=f_hz, test_frequency_active=True)
        return self


def params(**values: Any) -> Params:
    return attrs.evolve(Params(), **values)
