"""PID: terms, sign convention, filter, anti-windup, modes, limits, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blocks import PID

DT = 0.1


# --- terms and sign convention -------------------------------------------------

def test_direct_acting_output_rises_when_measurement_is_below_setpoint():
    pid = PID(kp=2.0)
    assert pid.step(10.0, 4.0, DT) == 12.0
    assert pid.error == 6.0
    assert pid.p_term == 12.0


def test_reverse_acting_flag_negates_the_error():
    pid = PID(kp=2.0, reverse=True)
    assert pid.step(10.0, 4.0, DT) == -12.0
    assert pid.error == -6.0


def test_integral_is_backward_euler_of_ki_times_error():
    pid = PID(kp=0.0, ki=0.5)
    for _ in range(4):
        out = pid.step(2.0, 0.0, 0.25)
    # each scan adds 0.5 * 2.0 * 0.25 = 0.25, including the first one
    assert out == 1.0
    assert pid.i_term == 1.0


def test_derivative_acts_on_measurement_so_setpoint_steps_do_not_kick():
    pid = PID(kp=0.0, kd=1.0)
    pid.step(0.0, 5.0, DT)
    assert pid.step(100.0, 5.0, DT) == 0.0


def test_unfiltered_derivative_is_minus_kd_times_measurement_slope():
    pid = PID(kp=0.0, kd=2.0)
    pid.step(0.0, 0.0, 0.5)
    assert pid.step(0.0, 1.0, 0.5) == -4.0


def test_reverse_acting_derivative_has_the_opposite_sign():
    pid = PID(kp=0.0, kd=2.0, reverse=True)
    pid.step(0.0, 0.0, 0.5)
    assert pid.step(0.0, 1.0, 0.5) == 4.0


def test_first_scan_has_no_derivative_kick():
    assert PID(kp=0.0, kd=100.0).step(0.0, 42.0, DT) == 0.0


def test_derivative_filter_is_first_order_with_time_constant_tf():
    # A measurement ramp of slope 1/s: the filtered D approaches -kd * 1
    # like 1 - exp(-t/tf) (backward Euler: 1 - (tf/(tf+dt))**n).
    kd, tf, dt = 3.0, 0.5, 0.01
    pid = PID(kp=0.0, kd=kd, tf_s=tf)
    pid.step(0.0, 0.0, dt)
    n = 50
    for k in range(1, n + 1):
        d = pid.step(0.0, k * dt, dt)
    expected = -kd * (1.0 - (tf / (tf + dt)) ** n)
    assert d == pytest.approx(expected, rel=1e-12)
    assert d == pytest.approx(-kd * (1 - math.exp(-n * dt / tf)), rel=0.01)


def test_nan_measurement_holds_output_and_state():
    pid = PID(kp=1.0, ki=1.0)
    pid.step(1.0, 0.0, DT)
    before = (pid.out, pid.i_term, pid.d_term)
    assert pid.step(1.0, math.nan, DT) == before[0]
    assert (pid.out, pid.i_term, pid.d_term) == before
    pid.step(1.0, 0.0, DT)
    assert math.isfinite(pid.out)


# --- output limits and anti-windup ---------------------------------------------------

def test_output_is_clamped_to_its_limits():
    pid = PID(kp=10.0, out_min=-1.0, out_max=2.0)
    assert pid.step(1.0, 0.0, DT) == 2.0
    assert pid.saturated is True
    assert pid.step(-1.0, 0.0, DT) == -1.0
    assert pid.step(0.05, 0.0, DT) == pytest.approx(0.5)
    assert pid.saturated is False


def test_integrator_is_frozen_while_the_output_is_saturated():
    pid = PID(kp=1.0, ki=1.0, out_min=-10.0, out_max=10.0)
    for _ in range(10_000):      # 1000 s of a large positive error
        pid.step(100.0, 0.0, DT)
    assert pid.out == 10.0
    assert pid.i_term <= 10.0    # never grew beyond the limit


def test_output_leaves_saturation_in_the_scan_the_error_reverses():
    pid = PID(kp=1.0, ki=1.0, out_min=-10.0, out_max=10.0)
    for _ in range(10_000):
        pid.step(5.0, 0.0, DT)   # P = 5, integrator fills the headroom only
    assert pid.i_term == pytest.approx(5.0)
    out = pid.step(-1.0, 0.0, DT)  # error -1: P = -1
    assert out < 10.0
    assert out == pytest.approx(5.0 - 1.0 - 0.1)


def test_integration_fills_exactly_the_headroom_at_the_limit():
    pid = PID(kp=0.0, ki=1.0, out_max=1.0)
    for _ in range(15):
        out = pid.step(1.0, 0.0, DT)
    assert out == 1.0
    assert pid.i_term == 1.0


def test_large_proportional_transient_does_not_drag_the_integrator_down():
    pid = PID(kp=10.0, ki=1.0, out_min=-100.0, out_max=100.0)
    pid.track(30.0)
    pid.step(50.0, 0.0, DT)   # P = 500 saturates on its own
    assert pid.out == 100.0
    assert pid.i_term == 30.0  # neither wound up nor pulled to 100 - 500


def test_shrinking_limit_releases_the_integrator_in_the_same_scan():
    pid = PID(kp=1.0, ki=1.0, out_min=-100.0, out_max=100.0)
    pid.track(80.0)
    pid.step(0.0, 0.0, DT)
    assert pid.out == 80.0
    out = pid.step(0.0, 0.0, DT, out_max=20.0)
    assert out == 20.0
    assert pid.i_term == 20.0
    # error turns negative: the output leaves the new limit at once
    assert pid.step(-1.0, 0.0, DT) < 20.0


def test_shrinking_limit_keeps_the_integrator_a_negative_p_term_needs():
    pid = PID(kp=1.0, ki=0.0, out_min=-100.0, out_max=100.0)
    pid.track(80.0)
    pid.step(0.0, 0.0, DT)
    out = pid.step(-5.0, 0.0, DT, out_max=20.0)  # P = -5
    assert out == 20.0
    assert pid.i_term == 25.0                     # exactly at the limit, no excess


def test_limits_passed_to_step_persist():
    pid = PID(kp=1.0)
    pid.step(0.0, 0.0, DT, out_min=-2.0, out_max=3.0)
    assert (pid.out_min, pid.out_max) == (-2.0, 3.0)
    assert pid.step(10.0, 0.0, DT) == 3.0


def test_set_limits_validates():
    pid = PID()
    with pytest.raises(ValueError, match=r"^PID: out_min must be <= out_max, got out_min=5.0, out_max=1.0$"):
        pid.set_limits(5.0, 1.0)


@pytest.mark.parametrize("error", [-10.0, 3.0, 10.0])
def test_inverted_per_step_limits_give_the_upper_limit(error):
    assert PID(kp=1.0).step(error, 0.0, DT, out_min=5.0, out_max=1.0) == 1.0


# --- modes, tracking, reset ----------------------------------------------------

def test_manual_mode_outputs_the_manual_value_clamped():
    pid = PID(kp=1.0, ki=1.0, out_min=0.0, out_max=50.0)
    pid.set_manual(30.0)
    assert pid.step(100.0, 0.0, DT) == 30.0
    pid.manual_output = 80.0
    assert pid.step(100.0, 0.0, DT) == 50.0


def test_return_to_auto_is_bumpless():
    kp, ki = 2.0, 0.5
    pid = PID(kp=kp, ki=ki, out_min=-100.0, out_max=100.0)
    pid.set_manual(40.0)
    for _ in range(5):
        pid.step(10.0, 7.0, DT)   # error 3: P = 6, integrator tracks 34
    pid.set_auto()
    out = pid.step(10.0, 7.0, DT)
    assert out == pytest.approx(40.0 + ki * 3.0 * DT)  # only this scan's integral


def test_switching_to_manual_without_a_value_holds_the_present_output():
    pid = PID(kp=1.0, ki=1.0)
    for _ in range(3):
        pid.step(1.0, 0.0, DT)
    held = pid.out
    pid.set_manual()
    assert pid.step(5.0, 0.0, DT) == held


def test_setpoint_tracking_follows_the_measurement_in_manual():
    pid = PID(kp=3.0, ki=1.0, sp_tracking=True)
    pid.set_manual(12.0)
    pid.step(50.0, 20.0, DT)
    assert pid.sp == 20.0
    assert pid.error == 0.0
    assert pid.i_term == 12.0
    pid.set_auto()
    assert pid.step(pid.sp, 20.0, DT) == 12.0  # program copied sp back: no bump


def test_setpoint_is_used_as_given_in_auto_even_with_tracking_enabled():
    pid = PID(kp=1.0, sp_tracking=True)
    assert pid.step(5.0, 2.0, DT) == 3.0
    assert pid.sp == 5.0


def test_track_preloads_the_integrator():
    pid = PID(kp=1.0, ki=0.5)
    pid.track(50.0)
    assert pid.out == 50.0
    out = pid.step(10.0, 10.0, DT)   # zero error: output stays at the preload
    assert out == 50.0


def test_track_clamps_to_the_output_limits():
    pid = PID(kp=1.0, out_min=0.0, out_max=10.0)
    pid.track(50.0)
    assert pid.i_term == 10.0


def test_reset_clears_state_and_returns_to_auto():
    pid = PID(kp=1.0, ki=1.0, kd=1.0)
    pid.step(1.0, 0.0, DT)
    pid.set_manual(3.0)
    pid.reset()
    assert (pid.out, pid.i_term, pid.d_term, pid.manual) == (0.0, 0.0, 0.0, False)
    # no derivative kick (memory cleared), integrator restarts from 0
    assert pid.step(0.0, 99.0, DT) == pytest.approx(-99.0 - 9.9)
    assert pid.d_term == 0.0


# --- validation ------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kp": -1.0}, r"^PID: kp must be >= 0, got -1.0$"),
    ({"ki": math.nan}, r"^PID: ki must not be NaN, got nan$"),
    ({"kd": math.inf}, r"^PID: kd must be finite, got inf$"),
    ({"tf_s": -0.1}, r"^PID: tf_s must be >= 0, got -0.1$"),
    ({"out_min": 1.0, "out_max": 0.0}, r"^PID: out_min must be <= out_max, got out_min=1.0, out_max=0.0$"),
    ({"out_min": math.inf}, r"^PID: out_min must be < inf, got inf$"),
    ({"reverse": 1}, r"^PID: reverse must be a bool, got 1$"),
])
def test_invalid_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PID(**kwargs)


# --- properties ------------------------------------------------------------------------

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
scan = st.tuples(
    finite,                                           # setpoint
    finite,                                           # measurement
    st.floats(min_value=1e-3, max_value=1.0),         # dt
    st.one_of(st.none(), st.tuples(finite, finite)),  # new limits (sorted)
    st.sampled_from([None, None, None, "manual", "auto", "track"]),
)
pid_params = st.fixed_dictionaries({
    "kp": st.floats(0.0, 20.0),
    "ki": st.floats(0.0, 20.0),
    "kd": st.floats(0.0, 2.0),
    "tf_s": st.floats(0.0, 2.0),
})


def _apply_command(pid: PID, cmd, value: float) -> None:
    if cmd == "manual":
        pid.set_manual(value)
    elif cmd == "auto":
        pid.set_auto()
    elif cmd == "track":
        pid.track(value)


@settings(max_examples=150, deadline=None)
@given(params=pid_params, scans=st.lists(scan, min_size=1, max_size=60))
def test_output_is_always_within_the_limits_in_force(params, scans):
    pid = PID(**params, out_min=-50.0, out_max=50.0)
    lo, hi = -50.0, 50.0
    for sp, y, dt, limits, cmd in scans:
        _apply_command(pid, cmd, sp)
        if limits is not None:
            lo, hi = sorted(limits)
            out = pid.step(sp, y, dt, out_min=lo, out_max=hi)
        else:
            out = pid.step(sp, y, dt)
        assert lo <= out <= hi


@settings(max_examples=150, deadline=None)
@given(params=pid_params, scans=st.lists(scan, min_size=1, max_size=60))
def test_integrator_never_winds_up_while_saturated(params, scans):
    pid = PID(**params, out_min=-50.0, out_max=50.0)
    for sp, y, dt, limits, cmd in scans:
        _apply_command(pid, cmd, sp)
        lo, hi = sorted(limits) if limits is not None else (pid.out_min, pid.out_max)
        i_before = pid.i_term
        pid.step(sp, y, dt, out_min=lo, out_max=hi)
        if pid.manual:
            continue
        i, v = pid.i_term, pid.p_term + pid.d_term
        tol = 1e-9 * (1.0 + abs(i) + abs(v) + abs(i_before) + abs(hi) + abs(lo))
        if pid.out == hi and pid.saturated:
            # it may rise only to fill the headroom, and holds nothing beyond
            assert i <= i_before + tol or v + i <= hi + tol
            assert i <= max(hi - v, hi) + tol
        if pid.out == lo and pid.saturated:
            assert i >= i_before - tol or v + i >= lo - tol
            assert i >= min(lo - v, lo) - tol


@settings(max_examples=150, deadline=None)
@given(params=pid_params, sp=finite, y=finite, n=st.integers(1, 200),
       margin=st.floats(1e-6, 10.0))
def test_saturated_output_leaves_the_limit_in_the_first_scan_the_error_falls(
        params, sp, y, n, margin):
    # No hidden windup: once pinned at the limit, any error below both the
    # previous one and zero brings the output off the limit at once.
    assume(params["kp"] >= 1e-3)
    pid = PID(**{**params, "kd": 0.0}, out_min=-10.0, out_max=10.0)
    for _ in range(n):
        pid.step(sp, y, DT)
    assume(pid.out == 10.0 and pid.saturated)
    e_prev = pid.error
    e_new = min(e_prev, 0.0) - margin * (1.0 + abs(e_prev))
    assert pid.step(y + e_new, y, DT) < 10.0
