"""Rate limiting: a ramp limiter for signals and a slew-limited setpoint.

Both guarantee that their output never moves faster than the configured
rate: per scan the change is at most ``rate * dt`` (up to one rounding of the
addition). A NaN input is treated as a missing sample: the output holds, so
the rate guarantee survives bad data.
"""

from __future__ import annotations

import math

import attrs

from blocks import _checks


@attrs.define(eq=False)
class RampLimiter:
    """Limit how fast a signal may rise and fall (units per second).

    "Up" is increasing value, "down" is decreasing value, whatever the sign
    of the signal. ``math.inf`` disables a direction. With ``y0=None`` the
    first sample passes through unchanged (no ramp from an arbitrary 0; ``y``
    is NaN until then); otherwise the output starts at ``y0``. ``limited`` tells whether the
    last step was rate limited.
    """

    rate_up_per_s: float
    rate_down_per_s: float
    y0: float | None = None
    y: float = attrs.field(default=0.0, init=False)
    limited: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.rate_up_per_s = _checks.positive(
            "RampLimiter", "rate_up_per_s", self.rate_up_per_s, allow_inf=True)
        self.rate_down_per_s = _checks.positive(
            "RampLimiter", "rate_down_per_s", self.rate_down_per_s, allow_inf=True)
        if self.y0 is not None:
            self.y0 = _checks.finite("RampLimiter", "y0", self.y0)
        self.reset(self.y0)

    def step(self, x: float, dt: float) -> float:
        """Move toward ``x`` by at most the allowed rate; return the output."""
        y = self.y
        if x > y:
            top = y + self.rate_up_per_s * dt
            if x > top:
                y = top
                self.limited = True
            else:
                y = x
                self.limited = False
        elif x < y:
            bottom = y - self.rate_down_per_s * dt
            if x < bottom:
                y = bottom
                self.limited = True
            else:
                y = x
                self.limited = False
        else:
            if y != y:
                # Start-up (y is NaN until the first number): take x as is.
                y = x
            self.limited = False
        self.y = y
        return y

    def reset(self, y: float | None = None) -> None:
        """Restart at ``y``; ``None`` lets the next sample pass through."""
        self.y = math.nan if y is None else float(y)
        self.limited = False


@attrs.define(eq=False)
class SlewLimitedSetpoint:
    """A setpoint that travels to its target at a constant rate.

    Unlike ``RampLimiter`` it always has a defined value (``initial``, 0 by
    default), uses one rate for both directions, and reports ``at_target``
    and the time still needed, ``remaining_s``. Use ``reset(value)`` to jump,
    e.g. to the process value before a controller returns to automatic.
    """

    rate_per_s: float
    initial: float = 0.0
    sp: float = attrs.field(default=0.0, init=False)
    target: float = attrs.field(default=0.0, init=False)
    at_target: bool = attrs.field(default=True, init=False)

    def __attrs_post_init__(self) -> None:
        self.rate_per_s = _checks.positive(
            "SlewLimitedSetpoint", "rate_per_s", self.rate_per_s, allow_inf=True)
        self.initial = _checks.finite("SlewLimitedSetpoint", "initial", self.initial)
        self.reset(self.initial)

    @property
    def remaining_s(self) -> float:
        """Time to reach the target at the slew rate."""
        return abs(self.target - self.sp) / self.rate_per_s

    def step(self, target: float, dt: float) -> float:
        """Slew toward ``target``; return the present setpoint."""
        if target != target:
            return self.sp
        self.target = target
        sp = self.sp
        delta = self.rate_per_s * dt
        if target > sp + delta:
            sp += delta
        elif target < sp - delta:
            sp -= delta
        else:
            sp = target
        self.sp = sp
        self.at_target = sp == target
        return sp

    def reset(self, value: float) -> None:
        """Jump to ``value`` and make it the target."""
        v = _checks.finite("SlewLimitedSetpoint", "value", value)
        self.sp = v
        self.target = v
        self.at_target = True
