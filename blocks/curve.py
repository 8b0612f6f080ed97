"""Piecewise-linear curve with clamped ends (droop and derating curves).

``Curve([(x0, y0), (x1, y1), ...])`` interpolates linearly between
breakpoints, returns ``y0`` for ``x <= x0`` and ``y_last`` for ``x >= x_last``.
The breakpoints' x must be strictly increasing (checked); ``monotonic=
"increasing"`` or ``"decreasing"`` additionally checks that y never falls
(or never rises), which is how a droop or a derating table is kept sane.

Evaluation is a C ``bisect`` plus one multiply-add with slopes precomputed at
construction. At a breakpoint the result is that breakpoint's y exactly. A
NaN input gives NaN.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from typing import Literal

import attrs

from blocks import _checks

Monotonic = Literal["increasing", "decreasing"]


def _parse_points(points: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    try:
        pairs = [tuple(p) for p in points]
    except TypeError:
        raise ValueError(f"Curve: points must be (x, y) pairs, got {points!r}") from None
    out = []
    for k, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"Curve: points[{k}] must be an (x, y) pair, got {pair!r}")
        x = _checks.finite("Curve", f"points[{k}].x", pair[0])
        y = _checks.finite("Curve", f"points[{k}].y", pair[1])
        out.append((x, y))
    if len(out) < 2:
        raise ValueError(f"Curve: points must hold at least 2 breakpoints, got {len(out)}")
    for k in range(1, len(out)):
        if not out[k][0] > out[k - 1][0]:
            raise ValueError(
                f"Curve: breakpoint x must be strictly increasing, got x[{k - 1}]={out[k - 1][0]!r}"
                f" and x[{k}]={out[k][0]!r}")
    return tuple(out)


def _check_monotonic(points: tuple[tuple[float, float], ...], monotonic: str | None) -> None:
    if monotonic is None:
        return
    if monotonic not in ("increasing", "decreasing"):
        raise ValueError(
            f"Curve: monotonic must be None, 'increasing' or 'decreasing', got {monotonic!r}")
    sign = 1.0 if monotonic == "increasing" else -1.0
    for k in range(1, len(points)):
        if sign * (points[k][1] - points[k - 1][1]) < 0.0:
            raise ValueError(
                f"Curve: y must be {monotonic} (non-strictly), got y[{k - 1}]={points[k - 1][1]!r}"
                f" and y[{k}]={points[k][1]!r}")


@attrs.define(eq=False)
class Curve:
    """Piecewise-linear y(x) through ``points``, clamped beyond both ends."""

    points: tuple[tuple[float, float], ...]
    monotonic: Monotonic | None = None
    y: float = attrs.field(default=math.nan, init=False)
    _xs: tuple[float, ...] = attrs.field(default=(), init=False, repr=False)
    _ys: tuple[float, ...] = attrs.field(default=(), init=False, repr=False)
    _slopes: tuple[float, ...] = attrs.field(default=(), init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.points = _parse_points(self.points)
        _check_monotonic(self.points, self.monotonic)
        xs = tuple(p[0] for p in self.points)
        ys = tuple(p[1] for p in self.points)
        slopes = [(ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k]) for k in range(len(xs) - 1)]
        for k, slope in enumerate(slopes):
            if not math.isfinite(slope):
                raise ValueError(
                    f"Curve: slope between x[{k}]={xs[k]!r} and x[{k + 1}]={xs[k + 1]!r} "
                    f"is not finite (breakpoints too close)")
        slopes.append(0.0)  # index len-1 is reached only by NaN; keeps it NaN
        self._xs, self._ys, self._slopes = xs, ys, tuple(slopes)

    @property
    def x_min(self) -> float:
        """First breakpoint x (below it the curve is flat)."""
        return self._xs[0]

    @property
    def x_max(self) -> float:
        """Last breakpoint x (above it the curve is flat)."""
        return self._xs[-1]

    @property
    def y_min(self) -> float:
        """Smallest value the curve takes."""
        return min(self._ys)

    @property
    def y_max(self) -> float:
        """Largest value the curve takes."""
        return max(self._ys)

    def value(self, x: float) -> float:
        """y(x) without touching the ``y`` attribute."""
        xs = self._xs
        if x <= xs[0]:
            return self._ys[0]
        if x >= xs[-1]:
            return self._ys[-1]
        k = bisect_right(xs, x) - 1
        return self._ys[k] + self._slopes[k] * (x - xs[k])

    __call__ = value

    def step(self, x: float, dt: float = 0.0) -> float:
        """Evaluate at ``x``, store it in ``y`` and return it."""
        y = self.value(x)
        self.y = y
        return y
