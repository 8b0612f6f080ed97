"""RampLimiter and SlewLimitedSetpoint."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocks import RampLimiter, SlewLimitedSetpoint


def test_ramp_rises_at_the_up_rate():
    ramp = RampLimiter(rate_up_per_s=10.0, rate_down_per_s=50.0, y0=0.0)
    assert [ramp.step(100.0, 0.5) for _ in range(3)] == [5.0, 10.0, 15.0]
    assert ramp.limited is True


def test_ramp_falls_at_the_down_rate():
    ramp = RampLimiter(rate_up_per_s=10.0, rate_down_per_s=50.0, y0=100.0)
    assert [ramp.step(0.0, 0.5) for _ in range(5)] == [75.0, 50.0, 25.0, 0.0, 0.0]
    assert ramp.limited is False


def test_up_and_down_mean_increasing_and_decreasing_also_for_negative_values():
    ramp = RampLimiter(rate_up_per_s=1.0, rate_down_per_s=4.0, y0=-10.0)
    assert ramp.step(-20.0, 1.0) == -14.0   # more negative: the down rate
    assert ramp.step(0.0, 1.0) == -13.0     # toward zero from below: up rate


def test_ramp_reaches_a_close_target_without_overshoot():
    ramp = RampLimiter(rate_up_per_s=10.0, rate_down_per_s=10.0, y0=0.0)
    assert ramp.step(0.3, 0.1) == 0.3
    assert ramp.limited is False


def test_first_sample_passes_through_without_y0():
    ramp = RampLimiter(rate_up_per_s=1.0, rate_down_per_s=1.0)
    assert math.isnan(ramp.y)
    assert ramp.step(500.0, 0.1) == 500.0
    assert ramp.step(600.0, 0.1) == pytest.approx(500.1)


def test_nan_input_holds_the_output():
    ramp = RampLimiter(rate_up_per_s=1.0, rate_down_per_s=1.0, y0=5.0)
    assert ramp.step(math.nan, 0.1) == 5.0
    assert ramp.step(10.0, 0.1) == pytest.approx(5.1)


def test_infinite_rate_disables_a_direction():
    ramp = RampLimiter(rate_up_per_s=math.inf, rate_down_per_s=1.0, y0=0.0)
    assert ramp.step(1e6, 0.1) == 1e6
    assert ramp.step(0.0, 0.1) == pytest.approx(1e6 - 0.1)


def test_reset_restarts_the_ramp():
    ramp = RampLimiter(rate_up_per_s=1.0, rate_down_per_s=1.0, y0=0.0)
    ramp.reset(7.0)
    assert ramp.step(100.0, 1.0) == 8.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate_up_per_s": 0.0, "rate_down_per_s": 1.0}, r"^RampLimiter: rate_up_per_s must be > 0, got 0.0$"),
    ({"rate_up_per_s": 1.0, "rate_down_per_s": -2.0}, r"^RampLimiter: rate_down_per_s must be > 0, got -2.0$"),
    ({"rate_up_per_s": 1.0, "rate_down_per_s": 1.0, "y0": math.inf}, r"^RampLimiter: y0 must be finite, got inf$"),
])
def test_invalid_rates_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RampLimiter(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    up=st.floats(1e-3, 1e4),
    down=st.floats(1e-3, 1e4),
    y0=st.floats(-1e4, 1e4),
    seq=st.lists(st.tuples(st.floats(-1e5, 1e5), st.floats(1e-3, 1.0)), min_size=1, max_size=100),
)
def test_ramp_never_exceeds_its_rates(up, down, y0, seq):
    ramp = RampLimiter(rate_up_per_s=up, rate_down_per_s=down, y0=y0)
    y = y0
    for x, dt in seq:
        new = ramp.step(x, dt)
        tol = 1e-12 * (abs(y) + abs(new) + 1.0)  # one rounding of y + rate*dt
        assert new - y <= up * dt + tol
        assert y - new <= down * dt + tol
        # it moves toward the target and never past it
        assert min(y, x) - tol <= new <= max(y, x) + tol
        y = new


def test_slew_setpoint_travels_at_constant_rate_to_target():
    sp = SlewLimitedSetpoint(rate_per_s=2.0, initial=10.0)
    assert sp.sp == 10.0 and sp.at_target
    values = [sp.step(13.0, 0.5) for _ in range(4)]
    assert values == [11.0, 12.0, 13.0, 13.0]
    assert sp.at_target is True


def test_slew_setpoint_reports_remaining_time():
    sp = SlewLimitedSetpoint(rate_per_s=4.0)
    sp.step(-10.0, 0.5)
    assert sp.sp == -2.0
    assert sp.at_target is False
    assert sp.remaining_s == 2.0


def test_slew_setpoint_reset_jumps_to_the_value():
    sp = SlewLimitedSetpoint(rate_per_s=1.0)
    sp.step(100.0, 1.0)
    sp.reset(42.0)
    assert (sp.sp, sp.target, sp.at_target) == (42.0, 42.0, True)


def test_slew_setpoint_ignores_nan_targets():
    sp = SlewLimitedSetpoint(rate_per_s=1.0, initial=3.0)
    assert sp.step(math.nan, 1.0) == 3.0
    assert sp.target == 3.0


def test_slew_setpoint_rejects_a_zero_rate():
    with pytest.raises(ValueError, match=r"^SlewLimitedSetpoint: rate_per_s must be > 0, got 0$"):
        SlewLimitedSetpoint(rate_per_s=0)
