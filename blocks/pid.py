"""PID controller, parallel form, for scan-based control loops.

Form and sign convention
------------------------
Parallel (non-interacting) form with derivative on the measurement::

    e   = sp - y                         (direct acting, the default)
    P   = kp * e
    I  += ki * e * dt                    (backward Euler: uses this scan's e)
    D   = -kd * dy/dt, through a first-order filter with time constant tf_s
    out = clamp(P + I + D, out_min, out_max)

Direct acting means a measurement below the setpoint drives the output up
(e.g. "power delivered below target -> command more power"). For a reverse
acting loop (output up when the measurement is above the setpoint, e.g. a
cooling fan on temperature) construct with ``reverse=True``: the block then
uses ``e = y - sp`` and ``D = +kd * dy/dt``. Gains are always >= 0; negative
gains are rejected so a sign mistake cannot hide in a tuning table.

Derivative filter
-----------------
``D_k = (tf_s * D_{k-1} - kd * (y_k - y_{k-1})) / (tf_s + dt)``, the backward
Euler discretisation of ``kd * s / (1 + tf_s * s)`` acting on ``-y``. It is
stable for any dt and reduces to the raw difference quotient when
``tf_s = 0``. If you think in terms of the filter factor N, use
``tf_s = (kd / kp) / N`` (N = 5..20 is usual). The first scan has no previous
measurement, so D starts at 0 (no derivative kick at start-up).

Anti-windup: conditional integration (clamping), and why
--------------------------------------------------------
When the output saturates, integration that would push further into the
limit is not applied; integration that moves back out of the limit always
is. Precisely, while ``P + I + D`` exceeds ``out_max``:

1. an upward integrator step is cut to ``max(I_old, out_max - P - D)``: the
   integrator may rise only to fill the remaining headroom, never beyond;
2. the integrator is capped at ``max(out_max - P - D, out_max)``: whatever it
   holds above the limit is released, except the part a negative P + D needs
   to keep the output exactly at the limit.

(mirrored for ``out_min``.) Chosen over back-calculation because

* it has no extra tuning constant: back-calculation needs a tracking time
  constant Tt, and a wrong Tt either winds up or makes the loop jumpy;
* it gives a hard guarantee rather than a bounded windup: while the output
  is pinned at a limit the integrator does not grow, so the output leaves the
  limit in the very scan the error reverses (property-tested);
* rule 2 keeps the integrator consistent when the limits move. The charge
  limiter narrows ``out_max``/``out_min`` every scan; an integrator holding
  80 kW when the limit drops to 20 kW is cut back the same scan instead of
  unwinding over seconds.

Unlike clamping the integrator to the output range in every scan (what
simple-pid does), the integrator is left alone while the output is inside
its limits, so a large negative P term does not make the output jump.

Manual mode and bumpless transfer
---------------------------------
In manual mode the output is ``manual_output`` (clamped to the limits) and
the integrator tracks ``I = out - P - D`` every scan. Returning to automatic
therefore starts from the last manual output: the first automatic output
differs from it only by this scan's integral increment and by how much P
and D move in one scan. ``set_manual()`` without a value freezes the present
output, so the automatic-to-manual transfer is bumpless too.

Setpoint tracking: with ``sp_tracking=True`` the working setpoint follows the
measurement while in manual (so ``error`` and P are 0); ``sp`` exposes it so
the program can copy it back to its own setpoint (or reset a
``SlewLimitedSetpoint`` to it) before returning to automatic.

Other rules
-----------
* Limits can change every scan: ``step(..., out_min=..., out_max=...)`` stores
  new limits (``None`` keeps the current ones); ``set_limits`` does the same
  with validation. Per-scan values are not validated: an inverted pair makes
  the output equal ``out_max``.
* ``track(output)`` preloads the integrator so the output equals ``output``
  (bumpless start when the plant is already running); ``reset()`` clears all
  state and returns to automatic.
* A NaN setpoint or measurement leaves all state untouched and returns the
  previous output, so one bad sample cannot poison the integrator.
* ``dt`` must be > 0 (not checked per scan).
"""

from __future__ import annotations

import math

import attrs

from blocks import _checks


@attrs.define(eq=False)
class PID:
    """Parallel-form PID with filtered derivative on measurement and
    conditional-integration anti-windup (see module docstring)."""

    kp: float = 1.0
    ki: float = 0.0
    kd: float = 0.0
    tf_s: float = 0.0
    out_min: float = -math.inf
    out_max: float = math.inf
    reverse: bool = False
    sp_tracking: bool = False
    out: float = attrs.field(default=0.0, init=False)
    p_term: float = attrs.field(default=0.0, init=False)
    i_term: float = attrs.field(default=0.0, init=False)
    d_term: float = attrs.field(default=0.0, init=False)
    error: float = attrs.field(default=0.0, init=False)
    sp: float = attrs.field(default=0.0, init=False)
    saturated: bool = attrs.field(default=False, init=False)
    manual: bool = attrs.field(default=False, init=False)
    manual_output: float = attrs.field(default=0.0, init=False)
    _y_prev: float = attrs.field(default=0.0, init=False, repr=False)
    _primed: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.kp = _checks.non_negative("PID", "kp", self.kp)
        self.ki = _checks.non_negative("PID", "ki", self.ki)
        self.kd = _checks.non_negative("PID", "kd", self.kd)
        self.tf_s = _checks.non_negative("PID", "tf_s", self.tf_s)
        self.out_min, self.out_max = _checks.limits(
            "PID", "out_min", self.out_min, "out_max", self.out_max)
        self.reverse = _checks.boolean("PID", "reverse", self.reverse)
        self.sp_tracking = _checks.boolean("PID", "sp_tracking", self.sp_tracking)

    def step(self, setpoint: float, measurement: float, dt: float,
             out_min: float | None = None, out_max: float | None = None) -> float:
        """Advance one scan of ``dt`` seconds; return the output."""
        if out_min is not None:
            self.out_min = out_min
        if out_max is not None:
            self.out_max = out_max
        manual = self.manual
        if manual and self.sp_tracking:
            setpoint = measurement
        e = setpoint - measurement
        if e != e:
            return self.out
        if self._primed:
            dy = measurement - self._y_prev
        else:
            dy = 0.0
            self._primed = True
        self._y_prev = measurement
        if self.reverse:
            e = -e
            dy = -dy
        tf = self.tf_s
        d = (tf * self.d_term - self.kd * dy) / (tf + dt)
        p = self.kp * e
        self.sp = setpoint
        self.error = e
        self.p_term = p
        self.d_term = d
        v = p + d
        if manual:
            return self._manual_step(v)
        i0 = self.i_term
        i = i0 + self.ki * e * dt
        u = v + i
        hi = self.out_max
        lo = self.out_min
        sat = True
        if u > hi:
            if i > i0:  # 1. integrate up only into the remaining headroom
                i = hi - v
                if i < i0:
                    i = i0
            cap = hi - v  # 2. release what the integrator holds above the limit
            if cap < hi:
                cap = hi
            if i > cap:
                i = cap
            u = hi
        elif u < lo:
            if i < i0:
                i = lo - v
                if i > i0:
                    i = i0
            floor = lo - v
            if floor > lo:
                floor = lo
            if i < floor:
                i = floor
            u = lo if lo <= hi else hi  # inverted per-scan limits: out_max wins
        else:
            sat = False
        self.i_term = i
        self.out = u
        self.saturated = sat
        return u

    def _manual_step(self, v: float) -> float:
        """Manual scan: output the clamped manual value, integrator tracks."""
        u = self.manual_output
        sat = True
        if u > self.out_max:
            u = self.out_max
        elif u < self.out_min:
            u = self.out_min
        else:
            sat = False
        self.i_term = u - v
        self.out = u
        self.saturated = sat
        return u

    def set_limits(self, out_min: float, out_max: float) -> None:
        """Set new output limits, validated; applied from the next step."""
        self.out_min, self.out_max = _checks.limits("PID", "out_min", out_min, "out_max", out_max)

    def set_manual(self, output: float | None = None) -> None:
        """Switch to manual; ``output`` defaults to the present output."""
        value = self.out if output is None else _checks.real("PID", "output", output)
        self.manual_output = value
        self.manual = True

    def set_auto(self) -> None:
        """Switch to automatic; bumpless because the integrator has tracked."""
        self.manual = False

    def track(self, output: float) -> None:
        """Preload the integrator so the output equals ``output`` (clamped
        to the limits) given the last P and D terms."""
        value = _checks.real("PID", "output", output)
        value = min(max(value, self.out_min), self.out_max)
        self.i_term = value - self.p_term - self.d_term
        self.out = value
        if self.manual:
            self.manual_output = value

    def reset(self) -> None:
        """Clear integrator, derivative memory and outputs; back to automatic."""
        self.out = 0.0
        self.p_term = 0.0
        self.i_term = 0.0
        self.d_term = 0.0
        self.error = 0.0
        self.sp = 0.0
        self.saturated = False
        self.manual = False
        self.manual_output = 0.0
        self._y_prev = 0.0
        self._primed = False
