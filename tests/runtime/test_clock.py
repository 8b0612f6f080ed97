"""The wall clock in the scan: read afresh every scan, its steps detected, logged and counted,
its synchronisation and offset in the runtime tags. Deadlines stay on monotonic time.

The wall clock is injected (VirtualClock.step_wall, RealClock(wall=...)): no test touches the
machine's clock.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from testkit.waiting import wait_until

from plc.program import Program, ScanContext
from runtime.clock import ClockEvent, ClockSync, RealClock, VirtualClock, kernel_clock_sync, parse_timex
from runtime.image import ProcessImage
from runtime.scan import ScanEngine
from runtime.scan_stats import stats_tag_specs

AT_01_50 = datetime(2026, 1, 1, 1, 50, tzinfo=UTC).timestamp()


class WallRecorder(Program):
    """Records each scan's monotonic time, dt and wall time."""

    def __init__(self) -> None:
        super().__init__("wall_recorder")
        self.scans: list[tuple[float, float, float]] = []

    def execute(self, ctx: ScanContext) -> None:
        self.scans.append((ctx.t_s, ctx.dt_s, ctx.wall_s))


def engine_on(clock, period_s: float = 0.1) -> tuple[ScanEngine, WallRecorder, list[ClockEvent]]:  # type: ignore[no-untyped-def]
    recorder = WallRecorder()
    engine = ScanEngine(ProcessImage(stats_tag_specs()), [recorder], clock, period_s)
    events: list[ClockEvent] = []
    engine.clock_watch.listeners.append(events.append)
    return engine, recorder, events


def scan(engine: ScanEngine, n: int = 1) -> None:
    """n scans of the virtual clock, one period apart (as the engine's loop runs them)."""
    clock, period = engine.clock, engine.period_s
    for _ in range(n):
        t = clock.now() + period
        clock.sleep_until(t)
        engine.scan_once(t, period)


def tag(engine: ScanEngine, name: str):  # type: ignore[no-untyped-def]
    return engine.image[name].value


def at(wall_s: float) -> object:
    return pytest.approx(wall_s, abs=1e-6)


# --- the real clock ----------------------------------------------------------------------------------
def test_the_real_clock_reads_the_wall_clock_on_every_call():
    calendar = [AT_01_50]
    clock = RealClock(wall=lambda: calendar[0])
    assert clock.wall() == AT_01_50
    calendar[0] += 2400.0  # NTP steps the system clock from 01:50 to 02:30
    assert clock.wall() == AT_01_50 + 2400.0


def test_the_real_clock_keeps_monotonic_time_for_deadlines_when_the_wall_clock_steps():
    calendar = [AT_01_50]
    clock = RealClock(wall=lambda: calendar[0])
    before = clock.now()
    calendar[0] -= 86400.0
    assert clock.now() >= before


# --- step detection ------------------------------------------------------------------------------
def test_a_forward_step_reaches_the_programs_in_the_next_scan():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, recorder, _ = engine_on(clock)
    scan(engine, 10)
    clock.step_wall(2400.0)
    scan(engine, 1)
    assert recorder.scans[9][2] == at(AT_01_50 + 1.0)  # 01:50:01
    assert recorder.scans[10][2] == at(AT_01_50 + 1.1 + 2400.0)  # 02:30:01.1, at once


def test_a_forward_step_is_counted_with_its_size():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, _, _ = engine_on(clock)
    scan(engine, 10)
    clock.step_wall(2400.0)
    scan(engine, 1)
    assert tag(engine, "clock_steps") == 1
    assert tag(engine, "clock_last_step_s") == pytest.approx(2400.0)


def test_a_backward_step_is_counted_with_a_negative_size():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, recorder, _ = engine_on(clock)
    scan(engine, 10)
    clock.step_wall(-3600.0)
    scan(engine, 1)
    assert recorder.scans[10][2] == at(AT_01_50 + 1.1 - 3600.0)  # 00:50:01.1
    assert tag(engine, "clock_steps") == 1
    assert tag(engine, "clock_last_step_s") == pytest.approx(-3600.0)


def test_the_scan_keeps_its_monotonic_grid_and_dt_across_a_step():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, recorder, _ = engine_on(clock)
    scan(engine, 10)
    clock.step_wall(2400.0)
    scan(engine, 10)
    times = [t for t, _, _ in recorder.scans]
    assert times[10] - times[9] == pytest.approx(0.1)
    assert all(dt == 0.1 for _, dt, _ in recorder.scans[1:])


def test_every_step_is_counted_forwards_and_backwards():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, _, events = engine_on(clock)
    for step in (2400.0, -2400.0, 5.0):
        scan(engine, 5)
        clock.step_wall(step)
    scan(engine, 5)
    assert tag(engine, "clock_steps") == 3
    assert [e.step_s for e in events if e.name == "clock_step"] == pytest.approx([2400.0, -2400.0, 5.0])


def test_a_clock_slewed_by_ntp_or_stepped_below_1_s_is_no_step():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, _, events = engine_on(clock)
    scan(engine, 1)
    for _ in range(100):
        clock.step_wall(0.0005)  # 5 ms/s: ten times the kernel's largest slew
        scan(engine, 1)
    clock.step_wall(0.9)
    scan(engine, 1)
    assert tag(engine, "clock_steps") == 0
    assert [e for e in events if e.name == "clock_step"] == []


def test_a_step_is_logged_in_one_line_with_its_size_and_both_times(caplog: pytest.LogCaptureFixture):
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, _, _ = engine_on(clock)
    scan(engine, 10)
    clock.step_wall(2400.0)
    with caplog.at_level(logging.WARNING, logger="runtime.clock"):
        scan(engine, 10)
    lines = [r.getMessage() for r in caplog.records if "stepped" in r.getMessage()]
    assert len(lines) == 1
    assert "+2400.000 s" in lines[0] and "2026-01-01 01:50:01 -> 2026-01-01 02:30:01 UTC" in lines[0]


def test_a_step_is_handed_to_the_listeners_as_a_warning_event():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, _, events = engine_on(clock)
    scan(engine, 10)
    clock.step_wall(2400.0)
    scan(engine, 1)
    (step,) = [e for e in events if e.name == "clock_step"]
    assert (step.kind, step.severity, step.source) == ("clock", 1, "raspberry_pi")
    assert step.wall_s == at(AT_01_50 + 1.1 + 2400.0)
    assert step.t_s == pytest.approx(1.1)


def test_the_real_clock_detects_a_step_of_its_injected_wall_clock_while_it_scans():
    offset = [AT_01_50 - time.monotonic()]
    clock = RealClock(wall=lambda: time.monotonic() + offset[0], sync=lambda: ClockSync(True, 0.0, 0.01))
    engine, recorder, _ = engine_on(clock, period_s=0.02)
    thread = threading.Thread(target=engine.run, name="scan", daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(recorder.scans) >= 5)
        offset[0] += 2400.0
        wait_until(lambda: tag(engine, "clock_steps") == 1)
        assert tag(engine, "clock_last_step_s") == pytest.approx(2400.0, abs=0.005)
        wait_until(lambda: recorder.scans[-1][2] - AT_01_50 > 2400.0)
    finally:
        engine.stop()
        thread.join(5.0)
    assert tag(engine, "clock_steps") == 1


# --- synchronisation -------------------------------------------------------------------------------
def test_the_sync_state_offset_and_error_bound_are_tags():
    clock = RealClock(sync=lambda: ClockSync(True, 0.0021, 0.035))
    engine, _, _ = engine_on(clock)
    engine.scan_once(clock.now(), 0.1)
    assert tag(engine, "clock_synced") is True
    assert tag(engine, "clock_offset_s") == pytest.approx(0.0021)
    assert tag(engine, "clock_max_error_s") == pytest.approx(0.035)


def test_a_clock_that_loses_its_sync_is_a_warning_event_within_a_second():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, _, events = engine_on(clock)
    scan(engine, 5)
    assert tag(engine, "clock_synced") is True
    clock.synced = False
    scan(engine, 10)
    assert tag(engine, "clock_synced") is False
    assert [(e.name, e.severity) for e in events] == [("clock_unsynchronized", 1)]


def test_a_clock_that_regains_its_sync_is_an_info_event():
    clock = VirtualClock(start_wall_s=AT_01_50, synced=False)
    engine, _, events = engine_on(clock)
    scan(engine, 5)
    clock.synced = True
    scan(engine, 10)
    assert tag(engine, "clock_synced") is True
    assert [(e.name, e.severity) for e in events] == [("clock_unsynchronized", 1), ("clock_synchronized", 0)]


def test_a_clock_not_synchronized_at_start_is_an_event_in_the_first_scan():
    clock = VirtualClock(start_wall_s=AT_01_50, synced=False)
    engine, _, events = engine_on(clock)
    scan(engine, 1)
    assert [e.name for e in events] == ["clock_unsynchronized"]
    assert "2026-01-01 01:50:00 UTC" in events[0].message


def test_adjtimex_time_error_or_sta_unsync_is_not_synchronized():
    assert parse_timex(5, 0x2040, 0, 16_000_000) == ClockSync(False, 0.0, 16.0)  # TIME_ERROR, STA_UNSYNC|STA_NANO
    assert parse_timex(0, 0x0040, 0, 16_000_000).synced is False  # STA_UNSYNC alone
    assert parse_timex(5, 0x0001, 0, 16_000_000).synced is False  # TIME_ERROR alone


def test_adjtimex_offset_is_in_ns_with_sta_nano_and_in_us_without():
    nano = parse_timex(0, 0x2001, 1_500_000, 35_000)  # STA_PLL|STA_NANO: 1.5 ms off, error below 35 ms
    micro = parse_timex(0, 0x0001, -250, 8_000)  # STA_PLL: 250 us behind, error below 8 ms
    assert (nano.synced, nano.offset_s, nano.max_error_s) == (True, pytest.approx(0.0015), pytest.approx(0.035))
    assert (micro.synced, micro.offset_s, micro.max_error_s) == (True, pytest.approx(-0.00025), pytest.approx(0.008))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_kernel_answers_with_a_bounded_error():
    state = kernel_clock_sync()
    assert 0.0 <= state.max_error_s <= 16.0


def test_a_listener_that_raises_never_stops_the_scan():
    clock = VirtualClock(start_wall_s=AT_01_50)
    engine, recorder, _ = engine_on(clock)

    def broken(event: ClockEvent) -> None:
        raise OSError("event log closed")

    engine.clock_watch.listeners.insert(0, broken)
    scan(engine, 10)
    clock.step_wall(2400.0)
    scan(engine, 10)
    assert len(recorder.scans) == 20
    assert tag(engine, "clock_steps") == 1
