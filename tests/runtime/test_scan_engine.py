"""The scan engine: timing, overruns, driver faults, staleness, program faults, supervisor."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from testkit.drivers import FunctionDriver
from testkit.waiting import wait_until

from plc.program import Program, ScanContext
from plc.tags import Area, DType, Quality, TagSpec
from runtime.clock import RealClock, VirtualClock
from runtime.image import ProcessImage
from runtime.io.driver import DriverSettings, Point
from runtime.scan import InputBinding, OutputBinding, ScanEngine, Supervisor
from runtime.scan_stats import stats_tag_specs

SETPOINT = TagSpec("inverter_p_setpoint_w", DType.FLOAT32, Area.OUTPUT, unit="W", min=-5000, max=5000,
                   safe_value=0.0)
GRID = TagSpec("grid_power_w", DType.FLOAT32, Area.INPUT, unit="W", max_age_s=1.0)


class Recorder(Program):
    """Records every scan context and writes a fixed setpoint."""

    def __init__(self, setpoint_w: float = 1500.0, work: float = 0.0, work_every: int = 0):
        super().__init__("recorder")
        self.seen: list[tuple[float, float]] = []
        self.wall: list[float] = []
        self.setpoint_w = setpoint_w
        self.work = work
        self.work_every = work_every

    def bind(self, tags):  # type: ignore[no-untyped-def]
        self.out = tags["inverter_p_setpoint_w"]

    def execute(self, ctx: ScanContext) -> None:
        self.seen.append((ctx.t_s, ctx.dt_s))
        self.wall.append(time.monotonic())
        if self.work_every and ctx.scan % self.work_every == 0:
            time.sleep(self.work)  # deliberately: a program that runs long (overruns, a stuck scan)
        self.out.set(self.setpoint_w)


def make(clock, programs, source=lambda now: [100.0], period=0.1, poll=0.1):  # type: ignore[no-untyped-def]
    image = ProcessImage(stats_tag_specs() + [SETPOINT, GRID])
    driver = FunctionDriver("dev", [Point("grid_power_w", "grid")], [Point("inverter_p_setpoint_w", "p")], clock,
                            DriverSettings(poll_period_s=poll, backoff_initial_s=0.05, hang_timeout_s=0.3),
                            source)
    for p in programs:
        p.bind(image)
    engine = ScanEngine(
        image, programs, clock, period,
        inputs=[InputBinding(driver, (image["grid_power_w"],), (1.0,))],
        outputs=[OutputBinding(driver, (image["inverter_p_setpoint_w"],), (0.0,))],
    )
    return image, driver, engine


def test_virtual_clock_gives_every_scan_the_exact_period_as_dt():
    program = Recorder()
    _, _, engine = make(VirtualClock(), [program])
    engine.run(duration_s=10.0)
    assert len(program.seen) == 100
    assert all(dt == 0.1 for _, dt in program.seen)
    assert program.seen[-1][0] == pytest.approx(9.9, abs=1e-12)


def test_virtual_clock_runs_without_sleeping():
    program = Recorder()
    _, _, engine = make(VirtualClock(), [program])
    started = time.perf_counter()
    engine.run(duration_s=3600.0)
    assert len(program.seen) == 36000
    assert time.perf_counter() - started < 10.0


def test_inputs_are_copied_and_outputs_staged_each_scan():
    values = iter(range(1000))
    program = Recorder(setpoint_w=1234.0)
    image, driver, engine = make(VirtualClock(), [program], source=lambda now: [float(next(values))])
    engine.run(max_scans=3)
    assert image["grid_power_w"].value == 2.0
    assert image["grid_power_w"].quality is Quality.GOOD
    assert driver._staged == (1234.0,)


def test_a_program_that_sleeps_past_the_period_counts_overruns_without_a_catch_up_burst():
    period = 0.02
    program = Recorder(work=0.065, work_every=10)  # every 10th scan runs 3+ periods long
    _, _driver, engine = make(RealClock(), [program], period=period)
    engine.run(duration_s=1.0)
    assert engine.stats.overruns >= 3
    assert engine.stats.missed >= 3 * engine.stats.overruns
    starts = program.wall
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # After a long scan the next one starts on the grid point after it ended: never back to back.
    assert min(gaps) > period * 0.5
    assert len(starts) < 1.0 / period


def test_real_clock_scans_stay_on_their_grid_without_drift():
    period = 0.01
    program = Recorder()
    _, _, engine = make(RealClock(), [program], period=period)
    engine.run(duration_s=1.0)
    t0 = program.seen[0][0]
    lateness = [t - (t0 + i * period) for i, (t, _) in enumerate(program.seen)]
    assert len(program.seen) >= 95
    assert max(lateness) < 0.02  # late wake-ups do not accumulate
    assert engine.stats.overruns == 0 or max(lateness) < period * 2


def test_a_driver_that_raises_makes_its_tags_bad_and_the_scan_goes_on():
    calls = {"n": 0}

    def source(now: float):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 3:
            raise ConnectionError("meter unplugged")
        return [250.0]

    program = Recorder()
    image, driver, engine = make(RealClock(), [program], source=source, period=0.02, poll=0.02)
    driver.start()
    try:
        engine.run(duration_s=0.6)
    finally:
        driver.stop()
    assert image["grid_power_w"].quality is Quality.BAD
    assert image["grid_power_w"].value == 250.0  # last value kept, flagged bad
    assert driver.fault_count >= 2  # restarted with backoff, failed again
    assert len(program.seen) >= 25  # the scan never stopped


def test_a_driver_that_recovers_makes_its_tags_good_again():
    state = {"fail": True}

    def source(now: float):  # type: ignore[no-untyped-def]
        if state["fail"]:
            raise TimeoutError("no answer")
        return [42.0]

    image, driver, engine = make(RealClock(), [Recorder()], source=source, period=0.02, poll=0.02)
    driver.start()
    try:
        engine.run(duration_s=0.2)
        assert image["grid_power_w"].quality in (Quality.BAD, Quality.UNINIT)
        state["fail"] = False
        engine.stop_event.clear()
        engine.run(duration_s=0.6)
    finally:
        driver.stop()
    assert image["grid_power_w"].quality is Quality.GOOD
    assert image["grid_power_w"].value == 42.0


def test_a_hung_driver_is_replaced_and_its_tags_go_bad():
    release = threading.Event()
    state = {"hang": False}

    def source(now: float):  # type: ignore[no-untyped-def]
        if state["hang"]:
            release.wait(5.0)
        return [7.0]

    image, driver, engine = make(RealClock(), [Recorder()], source=source, period=0.02, poll=0.02)
    driver.start()
    try:
        engine.run(duration_s=0.2)
        state["hang"] = True
        engine.stop_event.clear()
        engine.run(duration_s=0.6)  # hang timeout is 0.3 s
        assert image["grid_power_w"].quality is Quality.BAD
        assert driver.restart_count >= 1
        state["hang"] = False
        release.set()
        engine.stop_event.clear()
        engine.run(duration_s=0.3)
        assert image["grid_power_w"].quality is Quality.GOOD
    finally:
        release.set()
        driver.stop()


def test_an_input_older_than_its_max_age_is_marked_stale():
    state = {"fresh": True}
    from runtime.io.driver import UNCHANGED

    def source(now: float):  # type: ignore[no-untyped-def]
        return [300.0] if state["fresh"] else [UNCHANGED]

    clock = VirtualClock()
    image, _driver, engine = make(clock, [Recorder()], source=source)
    engine.run(duration_s=1.0)
    assert image["grid_power_w"].quality is Quality.GOOD
    state["fresh"] = False
    engine.stop_event.clear()
    engine.run(duration_s=1.0)  # last sample is 1.0 s old at the final scan: not yet stale
    assert image["grid_power_w"].quality is Quality.GOOD
    engine.run(duration_s=0.3)
    assert image["grid_power_w"].quality is Quality.STALE
    assert image["grid_power_w"].value == 300.0


def test_a_program_that_raises_forces_safe_outputs_and_the_scan_goes_on():
    class Faulty(Program):
        def __init__(self) -> None:
            super().__init__("faulty")
            self.calls = 0

        def execute(self, ctx: ScanContext) -> None:
            self.calls += 1
            if ctx.scan == 5:
                raise ZeroDivisionError("division by zero")

    recorder = Recorder(setpoint_w=2000.0)
    faulty = Faulty()
    staged = []
    _, driver, engine = make(VirtualClock(), [recorder, faulty])
    engine.after_scan.append(lambda ctx: staged.append(driver._staged[0]))
    engine.run(max_scans=8)
    assert staged == [2000.0] * 4 + [0.0] + [2000.0] * 3
    assert engine.stats.program_faults == 1
    assert faulty.calls == 8


def test_the_supervisor_forces_safe_outputs_when_the_scan_stops_beating():
    period = 0.02
    program = Recorder(setpoint_w=3000.0, work=0.5, work_every=15)
    _, driver, engine = make(RealClock(), [program], period=period, poll=0.01)
    thread = threading.Thread(target=engine.run, args=(1.2,))
    supervisor = Supervisor(engine, thread, missed_scans=5, recover_s=0.2)
    driver.start()
    thread.start()
    supervisor.start()
    try:
        wait_until(lambda: driver.written and driver.written[-1] == [3000.0], 5.0, "the program's setpoint written")
        assert driver.written[-1] == [3000.0]
        wait_until(lambda: engine.safe_mode, 1.0, "the supervisor trips while the scan is stuck", 0.01)
        # the safe value stays until the scan is back (0.4 s after the trip) and healthy for 0.2 s
        wait_until(lambda: driver.written[-1] == [0.0], 0.3, "the safe value written while the scan is stuck", 0.01)
        thread.join(3.0)
    finally:
        supervisor.stop()
        driver.stop()
    assert supervisor.trips >= 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_supervisor_trips_when_the_scan_thread_dies():
    class Fatal(Program):
        def execute(self, ctx: ScanContext) -> None:
            if ctx.scan == 3:
                raise SystemExit("scan thread killed")

    _, driver, engine = make(RealClock(), [Recorder(setpoint_w=1000.0), Fatal("fatal")], period=0.02, poll=0.01)
    thread = threading.Thread(target=engine.run, args=(1.0,))
    supervisor = Supervisor(engine, thread, missed_scans=5)
    driver.start()
    thread.start()
    supervisor.start()
    try:
        thread.join(2.0)
        wait_until(lambda: engine.safe_mode and driver.written[-1] == [0.0], 5.0,
                   "the supervisor trips and the safe value is written")
        assert engine.safe_mode
        assert driver.written[-1] == [0.0]
    finally:
        supervisor.stop()
        driver.stop()


def test_stopping_a_driver_writes_the_safe_outputs_last():
    _, driver, engine = make(RealClock(), [Recorder(setpoint_w=2500.0)], period=0.02, poll=0.01)
    driver.start()
    engine.run(duration_s=0.2)
    assert driver.written[-1] == [2500.0]
    driver.stop(safe_outputs=(0.0,))
    assert driver.written[-1] == [0.0]


def test_stats_tags_report_the_scan_figures():
    image, _, engine = make(VirtualClock(), [Recorder()])
    engine.run(duration_s=30.0)
    assert image["scan_count"].value == 300
    assert image["scan_period_s"].value == pytest.approx(0.1)
    assert 0 < image["scan_duration_p99_s"].value < 0.01
    assert image["scan_overruns"].value == 0
    assert image["scan_duration_max_s"].value >= image["scan_duration_p99_s"].value
