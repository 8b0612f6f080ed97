"""A driver writes each scan's outputs at once, not at its next poll (runtime/io/driver.py)."""

from __future__ import annotations

import time

from testkit.drivers import FunctionDriver
from testkit.waiting import wait_until

from runtime.clock import RealClock
from runtime.io.driver import DriverSettings, Point


def slow_poller() -> tuple[FunctionDriver, list[float]]:
    polls: list[float] = []

    def source(now: float) -> list[float]:
        polls.append(now)
        return [100.0]

    driver = FunctionDriver("dev", [Point("grid_power_w", "grid")], [Point("inverter_p_setpoint_w", "p")], RealClock(),
                            DriverSettings(poll_period_s=2.0), source)
    return driver, polls


def test_staged_outputs_reach_the_device_long_before_the_next_poll() -> None:
    driver, polls = slow_poller()
    driver.start()
    try:
        wait_until(lambda: polls, 2.0, "the first poll")
        driver.wrote.clear()
        staged = time.monotonic()
        driver.stage((1234.0,))
        assert driver.wrote.wait(0.5), "not written within 0.5 s of the scan (the next poll is 2 s away)"
        assert time.monotonic() - staged < 0.5
        assert driver.written[-1] == [1234.0]
        assert len(polls) == 1  # written without a poll
    finally:
        driver.stop()


def test_outputs_staged_again_unchanged_are_written_once_per_stage_and_not_again_at_the_poll() -> None:
    driver, polls = slow_poller()
    driver.start()
    try:
        wait_until(lambda: polls, 2.0, "the first poll")
        for value in (1.0, 2.0, 3.0):
            driver.wrote.clear()
            driver.stage((value,))
            assert driver.wrote.wait(0.5)
        wait_until(lambda: len(polls) >= 2, 3.0, "the second poll")
        assert [w[0] for w in driver.written] == [1.0, 2.0, 3.0]
    finally:
        driver.stop()
