"""The frequency the services act on: measured (meter, else inverter) or an applied test frequency.

The measurement is taken as it is: never clamped (the reference forbids a saturated frequency
input), only checked for quality and plausibility (an outage reads 0 Hz) and for glitches: a new
sample that moves faster than `max_rate_hz_per_s` from the last accepted one (no synchronous grid
changes its frequency by volts per scan: the Nordic system's steepest falls are about 1 Hz/s) is
held back for one sample; the next sample that agrees with it confirms it, one that returns near
the old value drops it. So a single bad sample (a 100 ms 45.5 Hz reading) never activates FFR or
saturates FCR-D; a real change costs at most one sample of delay only when it is faster than that.
A measurement that repeats the very same value in every new sample for `stuck_s` (0: not checked)
is stuck (a frozen meter or gateway): it reads as no frequency until it moves again. Only a meter
with a fine resolution can be checked so: the grid's frequency moves by some mHz every second, but
a 0.1 Hz display (an EM24) shows 50.0 Hz for minutes. During a test an
*applied test frequency*, written to a tag, replaces the measurement before the filter, so a
test exercises the whole chain; it is flagged in tags and logs and ends on its own when the
writer stops refreshing it (a dead test client must not leave the unit on a fake frequency).
"""

from __future__ import annotations

import enum
import logging
import math

from plc.program import TagRef

log = logging.getLogger(__name__)

NAN = math.nan


class FrequencySource(enum.IntEnum):
    """Where the frequency came from this scan (register-map order, append only)."""

    NONE = 0
    METER = 1
    INVERTER = 2
    TEST = 3


class FrequencyInput:
    """Picks the first GOOD, plausible measurement in order of preference, or the test frequency."""

    def __init__(self, measured: list[tuple[TagRef, FrequencySource]], applied: TagRef, active: TagRef,
                 valid_hz: tuple[float, float], test_timeout_s: float, max_rate_hz_per_s: float = math.inf,
                 stuck_s: float = 0.0):
        self.measured = measured
        self.stuck_s = stuck_s
        self._same: dict[int, tuple[float, float]] = {}  # per input: the value its samples repeat, since when
        self._stuck: set[int] = set()
        self.max_rate = max_rate_hz_per_s
        self._accepted = NAN  # the last sample let through, its time
        self._accepted_t = -math.inf
        self._held: float | None = None  # a sample held back as a possible glitch
        self._last_stamp: float | None = None
        self.glitches = 0  # samples dropped as glitches
        self.applied = applied
        self.active = active
        self.lo, self.hi = valid_hz
        self.timeout_s = test_timeout_s
        self.source = FrequencySource.NONE
        self.measured_hz = NAN  # the measurement, also while a test frequency replaces it
        self.testing = False
        self.timed_out = False  # this scan's read ended test mode because its client went silent

    def read(self, t_s: float) -> float:
        """This scan's frequency in Hz, or NaN when nothing usable is there."""
        self.measured_hz, source = self._measured()
        testing = self.active.value is True
        self.timed_out = False
        if testing and t_s - self.applied.stamp > self.timeout_s:
            self.timed_out = True
            log.warning("applied test frequency not refreshed for %.1f s: test mode ends", self.timeout_s)
            self.active.set(False)
            testing = False
        if testing != self.testing:
            self.testing = testing
            if testing:
                log.warning("TEST MODE: the applied test frequency replaces the measured frequency")
            else:
                log.warning("test mode ended: the services follow the measured frequency again")
        if testing:
            f = self.applied.value
            self.source = FrequencySource.TEST
            return f if self.lo <= f <= self.hi else NAN
        self.source = source
        return self.measured_hz

    def _measured(self) -> tuple[float, FrequencySource]:
        lo, hi = self.lo, self.hi
        for index, (tag, source) in enumerate(self.measured):
            if tag.good:
                f = tag.value
                if lo <= f <= hi and not self._frozen(index, f, tag.stamp):
                    return self._deglitched(f, tag.stamp), source
        self._accepted, self._held = NAN, None
        return NAN, FrequencySource.NONE

    @property
    def stuck(self) -> bool:
        """Some input is stuck (and none other stood in: the caller asks when there is no frequency)."""
        return bool(self._stuck)

    def _frozen(self, index: int, f: float, stamp: float) -> bool:
        """Input `index` has shown the same value in every sample for `stuck_s`: it is frozen."""
        if not self.stuck_s:
            return False
        value, since = self._same.get(index, (NAN, stamp))
        if f != value:
            self._same[index] = (f, stamp)
        elif stamp - since >= self.stuck_s:
            if index not in self._stuck:
                log.warning("frequency: input %d shows %.4f Hz unchanged for %.0f s: it is stuck; not used until "
                            "it moves", index + 1, f, stamp - since)
            self._stuck.add(index)
            return True
        if index in self._stuck:
            log.warning("frequency: input %d moves again (%.4f Hz)", index + 1, f)
            self._stuck.discard(index)
        return False

    def _deglitched(self, f: float, stamp: float) -> float:
        """`f`, unless it is a new sample that jumps faster than physics allows (see above)."""
        new, self._last_stamp = stamp != self._last_stamp, stamp
        if not new:
            return self._accepted if self._held is not None else f
        reach = self.max_rate * max(stamp - self._accepted_t, 0.0)
        jumps = self._accepted == self._accepted and abs(f - self._accepted) > reach
        if jumps and (self._held is None or abs(f - self._held) > reach):
            self._held = f  # possibly a glitch: the next sample tells
            return self._accepted
        if not jumps and self._held is not None:
            self.glitches += 1
            log.warning("frequency: a sample of %.3f Hz between %.3f Hz and %.3f Hz was a glitch (faster than "
                        "%.1f Hz/s): dropped", self._held, self._accepted, f, self.max_rate)
        self._held = None
        self._accepted, self._accepted_t = f, stamp
        return f
