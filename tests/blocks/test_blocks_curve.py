"""Curve: piecewise-linear, clamped ends, monotonic checks."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blocks import Curve

DERATING = Curve([(0.0, 100.0), (40.0, 100.0), (50.0, 50.0), (60.0, 0.0)], monotonic="decreasing")


def test_interpolates_linearly_between_breakpoints():
    assert DERATING.value(45.0) == 75.0
    assert DERATING(55.0) == 25.0


def test_returns_breakpoint_values_exactly():
    assert [DERATING.value(x) for x in (0.0, 40.0, 50.0, 60.0)] == [100.0, 100.0, 50.0, 0.0]


def test_clamps_beyond_both_ends():
    assert DERATING.value(-40.0) == 100.0
    assert DERATING.value(1e9) == 0.0


def test_step_stores_the_output():
    curve = Curve([(0.0, 0.0), (1.0, 2.0)])
    assert curve.step(0.25) == 0.5
    assert curve.y == 0.5


def test_nan_input_gives_nan():
    assert math.isnan(DERATING.value(math.nan))


def test_range_properties():
    assert (DERATING.x_min, DERATING.x_max, DERATING.y_min, DERATING.y_max) == (0.0, 60.0, 0.0, 100.0)


@pytest.mark.parametrize(("points", "message"), [
    ([(0.0, 1.0)], r"^Curve: points must hold at least 2 breakpoints, got 1$"),
    ([(0.0, 1.0), (0.0, 2.0)], r"^Curve: breakpoint x must be strictly increasing, got x\[0\]=0.0 and x\[1\]=0.0$"),
    ([(1.0, 1.0), (0.0, 2.0)], r"^Curve: breakpoint x must be strictly increasing"),
    ([(0.0, 1.0), (1.0, math.inf)], r"^Curve: points\[1\].y must be finite, got inf$"),
    ([(0.0, 1.0), (1.0,)], r"^Curve: points\[1\] must be an \(x, y\) pair"),
])
def test_invalid_breakpoints_are_rejected(points, message):
    with pytest.raises(ValueError, match=message):
        Curve(points)


def test_breakpoints_too_close_for_a_finite_slope_are_rejected():
    with pytest.raises(ValueError, match=r"^Curve: slope between x\[0\]=0.0 and x\[1\]=5e-324 is not finite"):
        Curve([(0.0, 0.0), (5e-324, 1.0)])


def test_monotonic_check_rejects_a_wrong_direction():
    with pytest.raises(ValueError, match=r"^Curve: y must be decreasing \(non-strictly\), got y\[1\]=0.0 and y\[2\]=1.0$"):
        Curve([(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)], monotonic="decreasing")
    with pytest.raises(ValueError, match=r"^Curve: monotonic must be None, 'increasing' or 'decreasing'"):
        Curve([(0.0, 1.0), (1.0, 2.0)], monotonic="up")


def _max_slope(points):
    return max(abs((y1 - y0) / (x1 - x0)) for (x0, y0), (x1, y1) in itertools.pairwise(points))


curves = st.lists(
    st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=2, max_size=8,
    unique_by=lambda p: p[0],
).map(sorted).filter(lambda pts: _max_slope(pts) < math.inf)


@settings(max_examples=200, deadline=None)
@given(points=curves, a=st.floats(-2e3, 2e3), b=st.floats(-2e3, 2e3))
def test_curve_is_continuous(points, a, b):
    assume(min(x1 - x0 for (x0, _), (x1, _) in itertools.pairwise(points)) > 1e-6)
    curve = Curve(points)
    lipschitz = _max_slope(points)
    tol = 1e-9 * (1.0 + max(abs(y) for _, y in points))
    assert abs(curve.value(a) - curve.value(b)) <= lipschitz * abs(a - b) + tol


@settings(max_examples=200, deadline=None)
@given(points=curves, beyond=st.floats(0.0, 1e6))
def test_curve_clamps_at_its_ends(points, beyond):
    curve = Curve(points)
    (x0, y0), (xn, yn) = points[0], points[-1]
    assert curve.value(x0 - beyond) == y0
    assert curve.value(xn + beyond) == yn


@settings(max_examples=200, deadline=None)
@given(points=curves, x=st.floats(-1e3, 1e3))
def test_curve_stays_between_the_neighbouring_breakpoint_values(points, x):
    curve = Curve(points)
    xs = [p[0] for p in points]
    assume(xs[0] < x < xs[-1])
    k = max(i for i, xi in enumerate(xs) if xi <= x)
    lo, hi = sorted((points[k][1], points[k + 1][1]))
    tol = 1e-9 * (1.0 + abs(lo) + abs(hi))
    assert lo - tol <= curve.value(x) <= hi + tol


@settings(max_examples=100, deadline=None)
@given(points=curves)
def test_curve_hits_every_breakpoint_exactly(points):
    curve = Curve(points)
    assert [curve.value(x) for x, _ in points] == [y for _, y in points]
