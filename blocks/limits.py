"""Limits and switching: clamp, deadband, hysteresis switch, debounce.

``Clamp`` and ``Deadband`` are memoryless and propagate NaN (bad data stays
visible downstream). ``Hysteresis`` holds its state on NaN (no comparison
holds). ``Debounce`` uses the timer rule of ``blocks.timers``.
"""

from __future__ import annotations

import math

import attrs

from blocks import _checks
from blocks.timers import TIME_REL_TOL

_REACH = 1.0 - TIME_REL_TOL


def clamp(x: float, lo: float, hi: float) -> float:
    """``x`` limited to ``[lo, hi]``; NaN passes through. Assumes lo <= hi."""
    if x > hi:
        return hi
    if x < lo:
        return lo
    return x


@attrs.define(eq=False)
class Clamp:
    """Limit a signal to ``[lo, hi]``; ``at_lo``/``at_hi`` flag the limit hit.

    The limits may be changed between scans (e.g. from a charge limiter);
    use ``set_limits`` for a validated change.
    """

    lo: float = -math.inf
    hi: float = math.inf
    y: float = attrs.field(default=0.0, init=False)
    at_lo: bool = attrs.field(default=False, init=False)
    at_hi: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.set_limits(self.lo, self.hi)

    def set_limits(self, lo: float, hi: float) -> None:
        """Set new limits, validated (``lo <= hi``)."""
        self.lo, self.hi = _checks.limits("Clamp", "lo", lo, "hi", hi)

    def step(self, x: float, dt: float = 0.0) -> float:
        """Clamp one sample; return it."""
        if x > self.hi:
            y = self.hi
            self.at_hi = True
            self.at_lo = False
        elif x < self.lo:
            y = self.lo
            self.at_hi = False
            self.at_lo = True
        else:
            y = x
            self.at_hi = False
            self.at_lo = False
        self.y = y
        return y


@attrs.define(eq=False)
class Deadband:
    """Zero a signal's small deviations from ``center``.

    The output is the deviation ``x - center`` with the band
    ``[-half_width, +half_width]`` (edges included) mapped to 0. With
    ``continuous=True`` (default) the output outside the band is shifted by
    the half width, so it has no jump at the band edges (``x - center -
    half_width`` above); with ``continuous=False`` the deviation is passed
    unchanged outside the band (a gate, with a jump of ``half_width``).
    """

    half_width: float
    center: float = 0.0
    continuous: bool = True
    y: float = attrs.field(default=0.0, init=False)
    in_band: bool = attrs.field(default=True, init=False)

    def __attrs_post_init__(self) -> None:
        self.half_width = _checks.non_negative("Deadband", "half_width", self.half_width)
        self.center = _checks.finite("Deadband", "center", self.center)
        self.continuous = _checks.boolean("Deadband", "continuous", self.continuous)

    def step(self, x: float, dt: float = 0.0) -> float:
        """Apply the deadband to one sample; return the output deviation."""
        d = x - self.center
        hw = self.half_width
        if d > hw:
            y = d - hw if self.continuous else d
            self.in_band = False
        elif d < -hw:
            y = d + hw if self.continuous else d
            self.in_band = False
        else:
            y = 0.0 if d == d else d
            self.in_band = d == d
        self.y = y
        return y


@attrs.define(eq=False)
class Hysteresis:
    """On/off switch with two thresholds (comparisons include the threshold).

    ``on_threshold > off_threshold``: high-active, on when ``x >= on``, off
    when ``x <= off`` (a fan on temperature). ``on_threshold <
    off_threshold``: low-active, on when ``x <= on``, off when ``x >= off``
    (start charging at 20 % SOC, stop at 25 %). Between the thresholds the
    output holds. Equal thresholds are rejected: that is a comparator with
    no hysteresis and chatters.
    """

    on_threshold: float
    off_threshold: float
    initial: bool = False
    q: bool = attrs.field(default=False, init=False)
    _high: bool = attrs.field(default=True, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.initial = _checks.boolean("Hysteresis", "initial", self.initial)
        self.set_thresholds(self.on_threshold, self.off_threshold)
        self.q = self.initial

    def set_thresholds(self, on_threshold: float, off_threshold: float) -> None:
        """Set new thresholds, validated; the direction follows their order."""
        on = _checks.finite("Hysteresis", "on_threshold", on_threshold)
        off = _checks.finite("Hysteresis", "off_threshold", off_threshold)
        if on == off:
            raise ValueError(
                f"Hysteresis: on_threshold and off_threshold must differ, got {on!r} and {off!r}")
        self.on_threshold = on
        self.off_threshold = off
        self._high = on > off

    def step(self, x: float, dt: float = 0.0) -> bool:
        """Compare one sample; return ``q``."""
        if self._high:
            if self.q:
                if x <= self.off_threshold:
                    self.q = False
            elif x >= self.on_threshold:
                self.q = True
        elif self.q:
            if x >= self.off_threshold:
                self.q = False
        elif x <= self.on_threshold:
            self.q = True
        return self.q

    def reset(self) -> None:
        """Back to the initial state."""
        self.q = self.initial


@attrs.define(eq=False)
class Debounce:
    """A boolean that follows its input only after the input has held the
    new value for ``on_s`` (to become true) or ``off_s`` (to become false).

    ``off_s`` defaults to ``on_s``. ``et_s`` is how long the input has
    disagreed with ``q``; it follows the timer rule of ``blocks.timers``: the
    scan that first sees the change is time 0 and ``q`` switches in the scan
    where ``et_s`` reaches the hold time, so ``Debounce(on_s=t)`` rises like
    ``TON(pt_s=t)``. A change that does not last resets ``et_s``.
    """

    on_s: float
    off_s: float | None = None
    initial: bool = False
    q: bool = attrs.field(default=False, init=False)
    et_s: float = attrs.field(default=0.0, init=False)
    _pending: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.on_s = _checks.non_negative("Debounce", "on_s", self.on_s)
        if self.off_s is None:
            self.off_s = self.on_s
        self.off_s = _checks.non_negative("Debounce", "off_s", self.off_s)
        self.initial = _checks.boolean("Debounce", "initial", self.initial)
        self.q = self.initial

    def step(self, in_: bool, dt: float) -> bool:
        """Advance one scan; return the debounced ``q``."""
        q = self.q
        if (not q) if in_ else q:
            if self._pending:
                et = self.et_s + dt
            else:
                self._pending = True
                et = 0.0
            hold: float = self.off_s if q else self.on_s  # type: ignore[assignment]
            if et >= hold * _REACH:
                q = not q
                self.q = q
                self._pending = False
                et = 0.0
            self.et_s = et
        elif self._pending:
            self._pending = False
            self.et_s = 0.0
        return q

    def reset(self) -> None:
        """Back to the initial state, nothing pending."""
        self.q = self.initial
        self.et_s = 0.0
        self._pending = False
