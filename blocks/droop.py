"""Frequency droop: active power as a piecewise-linear function of frequency.

Sign convention: positive power is discharge/injection into the grid, which
is the response to low frequency; negative power is charging, the response
to high frequency. A droop characteristic therefore never rises with
frequency; that is checked when the block is made.

The output is a pure function of the present frequency: no filter, no
ramp, no memory, so the block adds no delay (grid-code response times are
the business of the caller). The frequency input is never clamped; only
the power saturates, at the values of the curve's end breakpoints. A NaN
frequency gives a NaN power.

Nordic products (capacity C in W), all built on the same curve block:

* FCR-N: ``P = C * (50.0 - f) / 0.1`` clamped to +-C, no deadband
  (``Droop.fcr_n``), i.e. full activation at 49.9 and 50.1 Hz.
* FCR-D up: ``P = C * (49.9 - f) / 0.4`` below 49.9 Hz, saturating at C at
  49.5 Hz, 0 at and above 49.9 Hz (``Droop.fcr_d_up``).
* FCR-D down: ``P = -C * (f - 50.1) / 0.4`` above 50.1 Hz, saturating at -C
  at 50.5 Hz, 0 at and below 50.1 Hz (``Droop.fcr_d_down``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from blocks import _checks
from blocks.curve import Curve

NORDIC_F_NOMINAL_HZ = 50.0


@attrs.define(eq=False)
class Droop:
    """Power (W) from frequency (Hz) along a droop ``curve``.

    Build from ``Droop.from_points([(f_hz, p_w), ...])``, a generic
    four-threshold characteristic (``four_point``), a symmetric one around a
    nominal frequency (``symmetric``), or the Nordic products (``fcr_n``,
    ``fcr_d_up``, ``fcr_d_down``). ``f_hz`` and ``p_w`` hold the last input
    and output.
    """

    curve: Curve
    f_hz: float = attrs.field(default=math.nan, init=False)
    p_w: float = attrs.field(default=0.0, init=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.curve, Curve):
            raise ValueError(f"Droop: curve must be a Curve, got {self.curve!r}")
        ys = [p[1] for p in self.curve.points]
        for k in range(1, len(ys)):
            if ys[k] > ys[k - 1]:
                raise ValueError(
                    "Droop: power must not increase with frequency (positive = injection at "
                    f"low frequency), got p[{k - 1}]={ys[k - 1]!r} and p[{k}]={ys[k]!r}")

    @property
    def p_max_w(self) -> float:
        """Largest power (full up-regulation / injection)."""
        return self.curve.y_max

    @property
    def p_min_w(self) -> float:
        """Smallest power (full down-regulation / charging)."""
        return self.curve.y_min

    def power_w(self, f_hz: float) -> float:
        """Power at ``f_hz`` without touching the attributes."""
        return self.curve.value(f_hz)

    def step(self, f_hz: float, dt: float = 0.0) -> float:
        """Power for the present frequency; return ``p_w``."""
        p = self.curve.value(f_hz)
        self.f_hz = f_hz
        self.p_w = p
        return p

    @classmethod
    def from_points(cls, points: Iterable[tuple[float, float]]) -> Droop:
        """From (frequency_hz, power_w) breakpoints, clamped at both ends."""
        return cls(Curve(tuple(points), monotonic="decreasing"))

    @classmethod
    def four_point(cls, f1_hz: float, f2_hz: float, f3_hz: float, f4_hz: float,
                   p_up_w: float, p_down_w: float) -> Droop:
        """Legacy four-threshold droop, ``f1 < f2 <= f3 < f4``.

        Full up-regulation ``+p_up_w`` at and below f1, linear to 0 at f2,
        zero from f2 to f3 (deadband), linear to full down-regulation
        ``-p_down_w`` at f4 and above. Both capacities are given as
        magnitudes (>= 0).
        """
        f1 = _checks.finite("Droop", "f1_hz", f1_hz)
        f2 = _checks.finite("Droop", "f2_hz", f2_hz)
        f3 = _checks.finite("Droop", "f3_hz", f3_hz)
        f4 = _checks.finite("Droop", "f4_hz", f4_hz)
        _checks.ordered("Droop", "f1_hz", f1, "f2_hz", f2, strict=True)
        _checks.ordered("Droop", "f2_hz", f2, "f3_hz", f3)
        _checks.ordered("Droop", "f3_hz", f3, "f4_hz", f4, strict=True)
        up = _checks.non_negative("Droop", "p_up_w", p_up_w)
        down = _checks.non_negative("Droop", "p_down_w", p_down_w)
        mid = [(f2, 0.0)] if f2 == f3 else [(f2, 0.0), (f3, 0.0)]
        return cls.from_points([(f1, up), *mid, (f4, -down)])

    @classmethod
    def symmetric(cls, capacity_w: float, *, full_activation_dev_hz: float,
                  deadband_hz: float = 0.0,
                  f_nominal_hz: float = NORDIC_F_NOMINAL_HZ) -> Droop:
        """Symmetric droop around ``f_nominal_hz``: zero within
        +-``deadband_hz``, full +-``capacity_w`` at +-``full_activation_dev_hz``."""
        fn = _checks.finite("Droop", "f_nominal_hz", f_nominal_hz)
        db = _checks.non_negative("Droop", "deadband_hz", deadband_hz)
        full = _checks.positive("Droop", "full_activation_dev_hz", full_activation_dev_hz)
        _checks.ordered("Droop", "deadband_hz", db, "full_activation_dev_hz", full, strict=True)
        c = _checks.non_negative("Droop", "capacity_w", capacity_w)
        return cls.four_point(fn - full, fn - db, fn + db, fn + full, c, c)

    @classmethod
    def fcr_n(cls, capacity_w: float) -> Droop:
        """Nordic FCR-N: linear +-C over 49.9..50.1 Hz, no deadband.

        50.0 Hz is a breakpoint so the nominal frequency gives exactly 0.
        """
        c = _checks.non_negative("Droop", "capacity_w", capacity_w)
        return cls.from_points([(49.9, c), (NORDIC_F_NOMINAL_HZ, 0.0), (50.1, -c)])

    @classmethod
    def fcr_d_up(cls, capacity_w: float) -> Droop:
        """Nordic FCR-D up: 0 at/above 49.9 Hz, +C at/below 49.5 Hz."""
        c = _checks.non_negative("Droop", "capacity_w", capacity_w)
        return cls.from_points([(49.5, c), (49.9, 0.0)])

    @classmethod
    def fcr_d_down(cls, capacity_w: float) -> Droop:
        """Nordic FCR-D down: 0 at/below 50.1 Hz, -C at/above 50.5 Hz."""
        c = _checks.non_negative("Droop", "capacity_w", capacity_w)
        return cls.from_points([(50.1, 0.0), (50.5, -c)])
