"""The frequency the services act on: measured (meter, else inverter) or an applied test frequency.

The measurement is taken as it is: never clamped (the reference forbids a saturated frequency
input), only checked for quality and plausibility (an outage reads 0 Hz). During a test an
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
                 valid_hz: tuple[float, float], test_timeout_s: float):
        self.measured = measured
        self.applied = applied
        self.active = active
        self.lo, self.hi = valid_hz
        self.timeout_s = test_timeout_s
        self.source = FrequencySource.NONE
        self.measured_hz = NAN  # the measurement, also while a test frequency replaces it
        self.testing = False

    def read(self, t_s: float) -> float:
        """This scan's frequency in Hz, or NaN when nothing usable is there."""
        self.measured_hz, source = self._measured()
        testing = self.active.value is True
        if testing and t_s - self.applied.stamp > self.timeout_s:
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
        for tag, source in self.measured:
            if tag.good:
                f = tag.value
                if lo <= f <= hi:
                    return f, source
        return NAN, FrequencySource.NONE
