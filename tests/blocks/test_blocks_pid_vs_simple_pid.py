"""Our PID against simple-pid 2.0.1, configured the same way.

Where the two definitions coincide
    Both are parallel-form PIDs with the integral updated by backward Euler
    (``I += ki * e * dt`` with this scan's error, then used in this scan's
    output), the derivative taken on the measurement (``-kd * dy / dt``,
    simple-pid's default ``differential_on_measurement=True``), no derivative
    on the first call, and the output clamped to the limits. With our
    ``tf_s = 0`` (no derivative filter), automatic mode, and an output that
    never reaches its limits, the two produce the same sequence to rounding
    (they add P, I and D in a different order: ~1e-16).

Where they differ, and why
    * Anti-windup. simple-pid keeps integrating while the output is
      saturated and only clamps the integral to the output range, so after a
      saturated transient it holds up to a full output range of windup that
      must be unwound: more overshoot. Ours stops integration into the limit
      (conditional integration), so it leaves the limit earlier. Outputs are
      identical while both are pinned at the limit and part ways when
      simple-pid's wound-up integral keeps it there longer.
    * Integral range. simple-pid clamps the integral to the output limits in
      every call, even when the output is not saturated (e.g. I above the
      upper limit with a negative P): that makes the output jump. Ours only
      acts on the integrator while the output is saturated.
    * Manual to automatic. ``set_auto_mode(True, last_output)`` sets
      simple-pid's integral to the last output, so the first automatic
      output is ``last_output + P + ...``: a bump of P. Ours tracks
      ``I = out - P - D`` during manual, so the transfer is bumpless.
    * Derivative filter. simple-pid has none; ``tf_s > 0`` has no equivalent.
    * Timing. simple-pid reads ``time.monotonic()`` unless given ``dt``; it is
      called with ``dt=`` and ``sample_time=dt`` here so both see the same
      time step.
"""

from __future__ import annotations

import math

import pytest
from simple_pid import PID as SimplePID

from blocks import PID

PLANT_GAIN = 2.0
PLANT_TAU_S = 5.0
DT = 0.1
KP, KI, KD = 0.8, 0.3, 0.05


def closed_loop(controller, n: int) -> tuple[list[float], list[float]]:
    """First-order plant ``tau dy/dt = K u - y``, discretised exactly (ZOH)."""
    a = -math.expm1(-DT / PLANT_TAU_S)
    y = 0.0
    ys, us = [], []
    for _ in range(n):
        u = controller(y)
        y += a * (PLANT_GAIN * u - y)
        ys.append(y)
        us.append(u)
    return ys, us


def make_pair(setpoint: float, lo: float | None, hi: float | None):
    ours = PID(kp=KP, ki=KI, kd=KD,
               out_min=-math.inf if lo is None else lo,
               out_max=math.inf if hi is None else hi)
    theirs = SimplePID(KP, KI, KD, setpoint=setpoint, sample_time=DT, output_limits=(lo, hi))
    return (lambda y: ours.step(setpoint, y, DT)), (lambda y: theirs(y, dt=DT)), ours


@pytest.mark.parametrize(("lo", "hi"), [(None, None), (-10.0, 10.0)])
def test_unsaturated_step_response_matches_simple_pid(lo, hi):
    ours, theirs, _ = make_pair(1.0, lo, hi)
    y_ours, u_ours = closed_loop(ours, 600)
    y_theirs, u_theirs = closed_loop(theirs, 600)
    assert max(abs(u) for u in u_ours) < 10.0  # limits never reached
    assert u_ours == pytest.approx(u_theirs, rel=1e-12, abs=1e-12)
    assert y_ours == pytest.approx(y_theirs, rel=1e-12, abs=1e-12)
    assert y_ours[-1] == pytest.approx(1.0, abs=1e-6)


def test_setpoint_change_response_matches_simple_pid():
    ours_pid = PID(kp=KP, ki=KI, kd=KD)
    theirs_pid = SimplePID(KP, KI, KD, setpoint=0.5, sample_time=DT)
    setpoints = [0.5] * 200 + [1.5] * 200 + [-0.5] * 200
    a = -math.expm1(-DT / PLANT_TAU_S)
    y1 = y2 = 0.0
    for sp in setpoints:
        theirs_pid.setpoint = sp
        u1 = ours_pid.step(sp, y1, DT)
        u2 = theirs_pid(y2, dt=DT)
        assert u1 == pytest.approx(u2, rel=1e-12, abs=1e-12)
        y1 += a * (PLANT_GAIN * u1 - y1)
        y2 += a * (PLANT_GAIN * u2 - y2)


def test_saturated_response_agrees_at_the_limit_then_overshoots_less():
    setpoint, hi = 3.0, 2.0
    ours, theirs, _ = make_pair(setpoint, -hi, hi)
    y_ours, u_ours = closed_loop(ours, 600)
    y_theirs, u_theirs = closed_loop(theirs, 600)
    assert u_ours[0] == u_theirs[0] == hi
    first_difference = next(k for k, (a, b) in enumerate(zip(u_ours, u_theirs)) if a != b)
    # identical while both are pinned at the limit
    assert all(u == hi for u in u_ours[:first_difference])
    # simple-pid's wound-up integral keeps it saturated longer
    assert u_theirs[first_difference] == hi > u_ours[first_difference]
    overshoot_ours = max(y_ours) - setpoint
    overshoot_theirs = max(y_theirs) - setpoint
    assert overshoot_ours < 0.5 * overshoot_theirs
    assert y_ours[-1] == pytest.approx(setpoint, abs=1e-5)
    assert y_theirs[-1] == pytest.approx(setpoint, abs=1e-5)


def test_return_from_manual_is_bumpless_here_but_bumps_by_p_in_simple_pid():
    setpoint, y, manual = 10.0, 7.0, 4.0
    error = setpoint - y
    ours = PID(kp=KP, ki=KI, kd=KD)
    theirs = SimplePID(KP, KI, KD, setpoint=setpoint, sample_time=DT)
    ours.set_manual(manual)
    ours.step(setpoint, y, DT)
    theirs.set_auto_mode(False)
    ours.set_auto()
    theirs.set_auto_mode(True, last_output=manual)
    first_ours = ours.step(setpoint, y, DT)
    first_theirs = theirs(y, dt=DT)
    assert first_ours == pytest.approx(manual + KI * error * DT)
    assert first_theirs == pytest.approx(manual + KP * error + KI * error * DT)
