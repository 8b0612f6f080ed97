"""Open-circuit voltage (OCV) of an LFP cell as a function of state of charge.

The table is piecewise linear. It is extended below 0 % and above 100 % SOC
with steep slopes so that over-discharge and over-charge show up as cell
under-/over-voltage, which is what a BMS protects against.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

#: SOC break points in percent (strictly increasing).
LFP_SOC_PCT: tuple[float, ...] = (
    -5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 70.0, 80.0, 90.0, 95.0, 98.0, 100.0, 101.0, 102.0, 105.0,
)
#: Cell OCV in volts at the break points: flat plateau 3.27-3.34 V, steep knees.
LFP_CELL_V: tuple[float, ...] = (
    1.80, 2.30, 2.50, 2.90, 3.05, 3.17, 3.21, 3.24, 3.27, 3.285, 3.295,
    3.305, 3.315, 3.325, 3.335, 3.350, 3.380, 3.450, 3.600, 3.750, 4.200,
)


def check_table(x: Sequence[float], y: Sequence[float], x_name: str, y_name: str) -> None:
    """Raise ValueError unless x is strictly increasing and y has the same length."""
    if len(x) < 2 or len(x) != len(y):
        raise ValueError(f"{x_name} and {y_name} must have the same length >= 2 "
                         f"(got {len(x)} and {len(y)})")
    if any(b <= a for a, b in itertools.pairwise(x)):
        raise ValueError(f"{x_name} must be strictly increasing: {tuple(x)}")


class Table:
    """Piecewise-linear y(x) for one scalar at a time, clamped at both ends.

    Pure Python (bisect): about 0.5 us a call, cheaper than numpy for scalars.
    """

    __slots__ = ("xs", "ys", "slopes")

    def __init__(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        check_table(xs, ys, "x", "y")
        self.xs = [float(x) for x in xs]
        self.ys = [float(y) for y in ys]
        self.slopes = [(y1 - y0) / (x1 - x0)
                       for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:])]

    def __call__(self, x: float) -> float:
        xs = self.xs
        if x <= xs[0]:
            return self.ys[0]
        if x >= xs[-1]:
            return self.ys[-1]
        i = bisect_right(xs, x) - 1
        return self.ys[i] + self.slopes[i] * (x - xs[i])


class OcvCurve:
    """Piecewise-linear cell OCV(SOC); strictly increasing so it can be inverted."""

    __slots__ = ("soc_pct", "cell_v", "_slopes")

    def __init__(self, soc_pct: Sequence[float] = LFP_SOC_PCT,
                 cell_v: Sequence[float] = LFP_CELL_V) -> None:
        check_table(soc_pct, cell_v, "ocv_soc_pct", "ocv_cell_v")
        if any(b <= a for a, b in itertools.pairwise(cell_v)):
            raise ValueError(f"ocv_cell_v must be strictly increasing: {tuple(cell_v)}")
        self.soc_pct = np.asarray(soc_pct, dtype=float)
        self.cell_v = np.asarray(cell_v, dtype=float)
        inner = np.diff(self.cell_v) / np.diff(self.soc_pct)
        self._slopes = np.concatenate(([0.0], inner, [0.0]))  # flat beyond the table

    def __call__(self, soc_pct: np.ndarray) -> np.ndarray:
        """Cell OCV in volts for an array of SOC values in percent."""
        return np.interp(soc_pct, self.soc_pct, self.cell_v)

    def slope(self, soc_pct: np.ndarray) -> np.ndarray:
        """dOCV/dSOC in volts per percent for an array of SOC values."""
        return self._slopes[np.searchsorted(self.soc_pct, soc_pct, side="right")]

    def voltage(self, soc_pct: float) -> float:
        """Cell OCV in volts for one SOC value in percent."""
        return float(np.interp(soc_pct, self.soc_pct, self.cell_v))

    def soc(self, cell_v: float) -> float:
        """Inverse: SOC in percent at which the OCV equals cell_v."""
        return float(np.interp(cell_v, self.cell_v, self.soc_pct))
