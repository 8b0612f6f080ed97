"""Signal filters: first-order low-pass, rate of change, moving average.

NaN policy: ``LowPass`` and ``RateOfChange`` treat a NaN sample as missing
and hold their output (one bad sample must not poison a filter state for
ever). ``MovingAverage`` keeps the NaN in its window like any sample: the
mean is NaN while it is there and exact again at the first wrap of the ring
buffer after it has left, i.e. within one more window (see the class
docstring).
"""

from __future__ import annotations

import math

import attrs

from blocks import _checks


def _alpha(tau_s: float, dt: float) -> float:
    """Zero-order-hold gain of a first-order lag: 1 - exp(-dt/tau)."""
    if tau_s <= 0.0:
        return 1.0
    return -math.expm1(-dt / tau_s)


@attrs.define(eq=False)
class LowPass:
    """First-order low-pass ``tau_s * dy/dt = x - y``.

    Discretised exactly for an input held constant over each scan
    (``y += (1 - exp(-dt/tau_s)) * (x - y)``), so the result does not depend
    on the scan rate. The gain is cached and recomputed only when ``dt`` or
    ``tau_s`` changes. ``tau_s = 0`` passes the input through. With
    ``y0=None`` the output starts at the first sample.
    """

    tau_s: float
    y0: float | None = None
    y: float = attrs.field(default=math.nan, init=False)
    _dt: float = attrs.field(default=-1.0, init=False, repr=False)
    _tau: float = attrs.field(default=-1.0, init=False, repr=False)
    _a: float = attrs.field(default=1.0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.tau_s = _checks.non_negative("LowPass", "tau_s", self.tau_s)
        if self.y0 is not None:
            self.y0 = _checks.finite("LowPass", "y0", self.y0)
        self.reset(self.y0)

    def step(self, x: float, dt: float) -> float:
        """Filter one sample; return the output."""
        if x != x:
            return self.y
        y = self.y
        if y != y:
            self.y = x
            return x
        if dt != self._dt or self.tau_s != self._tau:
            self._dt = dt
            self._tau = self.tau_s
            self._a = _alpha(self.tau_s, dt)
        y += self._a * (x - y)
        self.y = y
        return y

    def reset(self, y: float | None = None) -> None:
        """Restart at ``y``; ``None`` starts at the next sample."""
        self.y = math.nan if y is None else float(y)


@attrs.define(eq=False)
class RateOfChange:
    """Rate of change of a signal in units per second, optionally smoothed.

    ``rate_per_s = (x_k - x_{k-1}) / dt``, passed through a first-order
    low-pass with time constant ``tau_s`` (0 = raw). The first sample gives
    0. After NaN samples the next valid sample is differenced against the
    last valid one over the whole elapsed time.
    """

    tau_s: float = 0.0
    rate_per_s: float = attrs.field(default=0.0, init=False)
    _x_prev: float = attrs.field(default=math.nan, init=False, repr=False)
    _gap_s: float = attrs.field(default=0.0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.tau_s = _checks.non_negative("RateOfChange", "tau_s", self.tau_s)

    def step(self, x: float, dt: float) -> float:
        """Differentiate one sample; return the (filtered) rate."""
        if x != x:
            self._gap_s += dt
            return self.rate_per_s
        prev = self._x_prev
        self._x_prev = x
        if prev != prev:
            self._gap_s = 0.0
            return self.rate_per_s
        span = dt + self._gap_s
        self._gap_s = 0.0
        rate = (x - prev) / span
        tau = self.tau_s
        if tau > 0.0:
            last = self.rate_per_s
            rate = last + _alpha(tau, span) * (rate - last)
        self.rate_per_s = rate
        return rate

    def reset(self) -> None:
        """Forget the previous sample and the rate."""
        self.rate_per_s = 0.0
        self._x_prev = math.nan
        self._gap_s = 0.0


def _window_samples(window_s: float, sample_period_s: float) -> int:
    ratio = window_s / sample_period_s
    n = round(ratio)
    if n < 1 or abs(ratio - n) > 1e-9 * ratio:
        raise ValueError(
            f"MovingAverage: window_s must be a whole number (>= 1) of sample_period_s, "
            f"got window_s={window_s!r}, sample_period_s={sample_period_s!r}"
        )
    return n


@attrs.define(eq=False)
class MovingAverage:
    """Mean of the last ``window_n`` samples, exact and O(1) per sample.

    Build it either from a time window and the period it is fed at,
    ``MovingAverage(window_s=300.0, sample_period_s=0.1)`` (3000 samples,
    the 5-minute mean of a 10 Hz signal), or from a sample count,
    ``MovingAverage(window_n=3000)``. Call ``step`` once per sample period;
    the window counts samples, so ``dt`` is accepted and ignored.

    Warm-up rule: until the window is full, ``mean`` is the mean of the
    samples seen so far (``count`` of them) and ``full`` is False. Before the
    first sample ``mean`` is NaN.

    Exactness: a ring buffer holds the window; the running sum is kept as an
    unevaluated pair ``(s, c)`` with Knuth's branch-free TwoSum, so every
    addition of the new sample and subtraction of the leaving one is
    error-free (the rounding error goes into ``c``). What is left is the
    final rounding of ``(s + c) / count`` and the rounding of ``c`` itself,
    of order eps**2 (1e-32) times the largest values that passed through the
    sum, so no drift builds up over any number of samples and large
    cancelling values leave no residue (a plain running sum keeps an error
    of order eps times them for ever). When the index wraps, ``(s, c)`` is
    renormalised (O(1)); if it is not finite (a NaN or inf sample has been
    in the window) it is recomputed with ``math.fsum`` (O(n), only in that
    case), so the mean recovers at the first wrap after the bad sample left.
    """

    window_s: float | None = None
    sample_period_s: float | None = None
    window_n: int | None = None
    mean: float = attrs.field(default=math.nan, init=False)
    count: int = attrs.field(default=0, init=False)
    full: bool = attrs.field(default=False, init=False)
    _buf: list[float] = attrs.field(factory=list, init=False, repr=False)
    _i: int = attrs.field(default=0, init=False, repr=False)
    _s: float = attrs.field(default=0.0, init=False, repr=False)
    _c: float = attrs.field(default=0.0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.window_n is not None:
            if self.window_s is not None:
                raise ValueError(
                    "MovingAverage: give either window_n or window_s with sample_period_s, "
                    f"not both, got window_n={self.window_n!r}, window_s={self.window_s!r}")
            self.window_n = _checks.integer("MovingAverage", "window_n", self.window_n, minimum=1)
            if self.sample_period_s is not None:
                self.sample_period_s = _checks.positive(
                    "MovingAverage", "sample_period_s", self.sample_period_s)
                self.window_s = self.window_n * self.sample_period_s
        else:
            if self.window_s is None or self.sample_period_s is None:
                raise ValueError(
                    "MovingAverage: give window_n, or window_s together with sample_period_s, "
                    f"got window_s={self.window_s!r}, sample_period_s={self.sample_period_s!r}")
            self.window_s = _checks.positive("MovingAverage", "window_s", self.window_s)
            self.sample_period_s = _checks.positive(
                "MovingAverage", "sample_period_s", self.sample_period_s)
            self.window_n = _window_samples(self.window_s, self.sample_period_s)
        self.reset()

    def step(self, x: float, dt: float = 0.0) -> float:
        """Add one sample; return the mean of the window."""
        buf = self._buf
        i = self._i
        old = buf[i]
        buf[i] = x
        s = self._s
        c = self._c
        t = s + x  # TwoSum(s, x)
        z = t - s
        c += (s - (t - z)) + (x - z)
        old = -old  # TwoSum(t, -old)
        s = t + old
        z = s - t
        c += (t - (s - z)) + (old - z)
        i += 1
        n = self.window_n
        assert n is not None, "__attrs_post_init__ sets window_n"
        if i == n:
            i = 0
            self.full = True
            s, c = self._renormalise(s, c)
        self._i = i
        self._s = s
        self._c = c
        count = n if self.full else i
        self.count = count
        m = (s + c) / count
        self.mean = m
        return m

    def _renormalise(self, s: float, c: float) -> tuple[float, float]:
        """Fold ``c`` into ``s`` (or recompute after a NaN/inf sample)."""
        t = s + c
        if t - t != 0.0:
            try:
                return math.fsum(self._buf), 0.0
            except (ValueError, OverflowError):
                return math.nan, 0.0
        return t, c - (t - s)

    def reset(self) -> None:
        """Empty the window."""
        assert self.window_n is not None
        self._buf = [0.0] * self.window_n
        self._i = 0
        self._s = 0.0
        self._c = 0.0
        self.count = 0
        self.full = False
        self.mean = math.nan
