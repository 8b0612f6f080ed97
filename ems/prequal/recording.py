"""What a prequalification run records: one row per scan (simulation) or per poll (live unit).

The same columns come from the image (simulation) or the Modbus tag server (live), so the
evaluation cannot tell them apart. Times are sequence time: 0 where the test signal starts.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

# column -> tag; "{key}" is the product's tag prefix (fcr_n, fcr_d_up, fcr_d_down)
COLUMNS: dict[str, str] = {
    "applied_hz": "frequency_input_hz",
    "measured_hz": "frequency_measured_hz",
    "filtered_hz": "frequency_filtered_hz",
    "p_w": "inverter_p_w",
    "baseline_w": "baseline_effective_w",
    "service_w": "service_response_w",
    "setpoint_w": "inverter_p_setpoint_w",
    "soc_pct": "soc_pct",
    "endurance_up_min": "endurance_up_min",
    "endurance_down_min": "endurance_down_min",
    "nem_allowed": "nem_allowed_{key}",
    "nem_current": "nem_current_{key}",
    "aem": "aem_active_{key}",
    "f_ref_hz": "aem_f_ref_{key}_hz",
    "nem_w": "nem_p_w",
    "maintained_w": "{key}_maintained_w",
    "ffr_state": "ffr_state",
    "ffr_w": "ffr_p_w",
    "state": "site_state",
    "test": "test_frequency_in_use",
}


def tag_names(key: str) -> dict[str, str]:
    """The tag of each column for a product prefix (`ffr` reads the FCR-N columns as zeros)."""
    prefix = key if key != "ffr" else "fcr_n"
    out = {c: t.format(key=prefix) for c, t in COLUMNS.items()}
    if key == "ffr":
        out["maintained_w"] = "ffr_maintained_w"
    return out


@attrs.define
class Recording:
    """The recorded signals of one test, as numpy arrays, with what the test was."""

    product: str
    test: str
    capacity_w: float
    period_s: float
    source: str  # "simulation" or "live host:port"
    t: np.ndarray = attrs.field(factory=lambda: np.zeros(0))
    data: dict[str, np.ndarray] = attrs.Factory(dict)
    meta: dict[str, Any] = attrs.Factory(dict)

    def __getitem__(self, column: str) -> np.ndarray:
        return self.data[column]

    @property
    def delta_p(self) -> np.ndarray:
        """The service's power change: measured active power minus the calculated baseline."""
        return self.data["p_w"] - self.data["baseline_w"]

    def at(self, column: str, t_s: float) -> float:
        """A column interpolated at sequence time `t_s`."""
        return float(np.interp(t_s, self.t, self.data[column]))

    def window(self, t0: float, t1: float) -> np.ndarray:
        """Boolean mask of the rows with t0 <= t < t1."""
        return (self.t >= t0 - 1e-9) & (self.t < t1 - 1e-9)


class Rows:
    """Accumulates rows cheaply (lists), then becomes a Recording."""

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.t: list[float] = []
        self.values: list[tuple] = []

    def add(self, t_s: float, values: tuple) -> None:
        self.t.append(t_s)
        self.values.append(values)

    def into(self, recording: Recording) -> Recording:
        recording.t = np.asarray(self.t, dtype=float)
        matrix = np.asarray([[_number(v) for v in row] for row in self.values], dtype=float) if self.values \
            else np.zeros((0, len(self.columns)))
        recording.data = {c: matrix[:, i] for i, c in enumerate(self.columns)}
        return recording


def _number(value: Any) -> float:
    if value is None:
        return float("nan")
    return float(value)
