"""The IO cycle: each poll ends just before the scan deadline it feeds (runtime/io/driver.py).

On the real clock, a driver started on the scan's grid times each poll to end LEAD_MARGIN_S
(8 ms) before a deadline, by the slowest of its last polls of the same shape. Before, polls
fell half a period off the scan's grid: at 100 ms the scan used inputs 50 ms + a poll old.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Hashable, Sequence
from typing import Any

from io_kit import modbus_driver, point
from testkit.drivers import FunctionDriver
from testkit.waiting import wait_until

from runtime.clock import RealClock
from runtime.io.driver import DriverSettings, Point

PERIOD_S = 0.1


class TimedDevice(FunctionDriver):
    """A device whose read takes `slow_s` at every third scan deadline and `fast_s` at the others
    (a poll that reads a slow register group too), with the poll shape saying which is which."""

    def __init__(self, epoch: float, fast_s: float, slow_s: float):
        super().__init__("dev", [Point("grid_power_w", "grid")], [], RealClock(),
                         DriverSettings(poll_period_s=PERIOD_S), self._read)
        self.epoch, self.fast_s, self.slow_s = epoch, fast_s, slow_s
        self.ends: list[tuple[int, bool, float]] = []  # (deadline number, slow poll, poll end to deadline, s)

    def _index(self, at: float) -> int:
        return round((at - self.epoch) / PERIOD_S + 0.49)  # the deadline a poll started at `at` feeds

    def poll_shape(self, at: float) -> Hashable:
        return self._index(at) % 3 == 0

    def _read(self, now: float) -> Sequence[Any]:
        slow = self.poll_shape(now)
        time.sleep(self.slow_s if slow else self.fast_s)
        end = time.monotonic()
        index = self._index(now)
        self.ends.append((index, bool(slow), self.epoch + index * PERIOD_S - end))
        return [100.0]


def polled(fast_s: float, slow_s: float, polls: int = 30) -> TimedDevice:
    epoch = time.monotonic()
    device = TimedDevice(epoch, fast_s, slow_s)
    device.start(epoch)
    try:
        wait_until(lambda: len(device.ends) >= polls, 10.0, f"{polls} polls")
    finally:
        device.stop()
    return device


def margins(device: TimedDevice, slow: bool) -> list[float]:
    return [left for _, kind, left in device.ends[6:] if kind is slow]  # after each shape was timed


def test_a_poll_ends_a_few_ms_before_the_scan_deadline_not_half_a_period_off_it() -> None:
    device = polled(fast_s=0.015, slow_s=0.015)
    left = margins(device, False) + margins(device, True)
    assert 0.0 < statistics.median(left) < 0.025, f"poll ends {statistics.median(left) * 1e3:.1f} ms before"
    assert sum(1 for m in left if m > 0) >= 0.8 * len(left), "most polls end before their deadline"


def test_a_slower_kind_of_poll_starts_earlier_so_both_end_just_before_their_deadlines() -> None:
    """Polls of 5 ms and, every third, 35 ms: each kind ends a few ms before its deadline (a
    single lead for both would leave the fast ones' inputs 30 ms older)."""
    device = polled(fast_s=0.005, slow_s=0.035, polls=36)
    for slow in (False, True):
        left = margins(device, slow)
        assert 0.0 < statistics.median(left) < 0.025, \
            f"{'slow' if slow else 'fast'} polls end {statistics.median(left) * 1e3:.1f} ms before their deadline"


def test_polls_keep_their_period_on_the_scan_grid() -> None:
    """None skipped, none doubled while the leads change: after the first poll (at once), one
    poll per deadline, each feeding the next one."""
    device = polled(fast_s=0.005, slow_s=0.035, polls=30)
    numbers = [number for number, _, _ in device.ends[1:]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_the_modbus_driver_reads_its_fastest_group_last_nearest_the_scan(serve) -> None:  # type: ignore[no-untyped-def]
    """The EM24's fast (0.2 s) and slow groups due together: the slow blocks are read first."""
    meter = serve("carlo_gavazzi_em24")
    driver = modbus_driver("carlo_gavazzi_em24", meter.port, [point("e", register="energy_import"),
                           point("p", register="p_total")], poll_s=0.1)
    groups = driver.profile.poll_groups
    periods = [groups[driver.blocks[i].group].period_s for i in driver.poll_shape(0.0)]
    assert len(set(periods)) == 2
    assert periods == sorted(periods, reverse=True)
