"""Wall clock steps on the whole home site: schedules and tariffs switch in the next scan, the
step is in the event log, and a clock far ahead never deletes the event log's history.

The site runs on the virtual clock; `VirtualClock.step_wall` moves its calendar as NTP moves a
Pi's system clock (monotonic time, and with it every deadline and timer, does not move).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import attrs
from site_run import HOME, SiteRun
from testkit.waiting import wait_until

from ems.simulate import prepare
from programs.schedule import Schedule, ScheduleEntry
from programs.site_control import TariffEntry
from runtime.clock import ClockSync, RealClock, VirtualClock
from runtime.events import Event, EventLog, read_events
from runtime.site import build_site

DAY = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
H = 3600.0
AT_01_50 = 1 * H + 50 * 60.0  # seconds after midnight (UTC: the home site's time zone)
SCHEDULE = Schedule((ScheduleEntry(DAY + 1 * H, DAY + 2 * H, p_w=-3000.0),  # 01:00-02:00 charge 3 kW
                     ScheduleEntry(DAY + 2 * H, DAY + 3 * H, p_w=2000.0)))  # 02:00-03:00 discharge 2 kW
TARIFF = (TariffEntry("00:00", 0.10), TariffEntry("02:00", 0.45))


def home_at(tmp_path: Path, time_of_day_s: float, **control: object) -> SiteRun:
    return SiteRun(tmp_path, plant={"start_time_of_day_s": time_of_day_s}, params={"control": control})


def on_schedule(tmp_path: Path, time_of_day_s: float) -> SiteRun:
    run = home_at(tmp_path, time_of_day_s, mode="external")
    control = next(p for p in run.site.programs if p.kind == "site_control")
    control.replace_schedule(SCHEDULE)  # type: ignore[attr-defined]
    return run


def step(run: SiteRun, seconds: float) -> None:
    run.site.clock.step_wall(seconds)  # type: ignore[attr-defined]


# --- schedules and tariffs -------------------------------------------------------------------------
def test_a_step_from_01_50_to_02_30_switches_the_schedule_to_the_02_00_slot_in_the_next_scan(tmp_path):
    run = on_schedule(tmp_path, AT_01_50)
    run.run(5.0)
    assert run["mode_request_w"] == -3000.0  # 01:50:05, the 01:00 slot
    step(run, 40 * 60.0)
    run.scan()
    assert run["mode_request_w"] == 2000.0  # 02:30:05, the 02:00 slot
    run.stop()


def test_a_step_back_from_02_25_to_01_45_switches_the_schedule_back_in_the_next_scan(tmp_path):
    run = on_schedule(tmp_path, 2 * H + 25 * 60.0)
    run.run(5.0)
    assert run["mode_request_w"] == 2000.0
    step(run, -40 * 60.0)
    run.scan()
    assert run["mode_request_w"] == -3000.0
    run.stop()


def test_a_step_from_01_50_to_02_30_takes_the_02_00_price_in_the_next_scan(tmp_path):
    run = home_at(tmp_path, AT_01_50, mode="cost_saving", tariff=TARIFF)
    run.run(5.0)
    assert run["price_now"] == 0.10
    step(run, 40 * 60.0)
    run.scan()
    assert run["price_now"] == 0.45
    run.stop()


def test_a_step_is_in_the_event_log_and_counted_in_the_tags(tmp_path):
    run = on_schedule(tmp_path, AT_01_50)
    run.run(5.0)
    step(run, 40 * 60.0)
    run.scan()
    (logged,) = run.logged("clock")
    assert logged.name == "clock_step" and logged.severity == 1
    assert "+2400.000 s (2026-01-01 01:50:05 -> 2026-01-01 02:30:05 UTC)" in logged.message
    assert logged.text().startswith("2026-01-01 02:30:05  warning  clock")
    assert (run["clock_steps"], run["clock_last_step_s"]) == (1, 2400.0)
    run.stop()


def test_on_the_real_clock_no_scan_after_an_ntp_step_runs_the_slot_before_it(tmp_path):
    cfg, _ = prepare(str(HOME), None, None, None)
    params = {**cfg.program_params, "control": attrs.evolve(cfg.program_params["control"], mode="external")}
    started, offset = time.monotonic(), [DAY + AT_01_50]
    clock = RealClock(wall=lambda: time.monotonic() - started + offset[0], sync=lambda: ClockSync(True, 0.0, 0.01))
    site = build_site(attrs.evolve(cfg, program_params=params), clock)
    next(p for p in site.programs if p.kind == "site_control").replace_schedule(SCHEDULE)  # type: ignore[attr-defined]
    seen: list[tuple[float, float]] = []
    site.engine.after_scan.append(lambda ctx: seen.append((ctx.wall_s, site.image["mode_request_w"].value)))
    thread = threading.Thread(target=site.run, args=(60.0,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(seen) > 5 and seen[-1][1] == -3000.0)
        offset[0] += 40 * 60.0  # NTP steps the Pi's clock from 01:50 to 02:30
        wait_until(lambda: seen[-1][0] >= DAY + 2.5 * H)
    finally:
        site.stop()
        thread.join(5.0)
    after = [request for wall_s, request in seen if wall_s >= DAY + 2.5 * H]
    assert after and set(after) == {2000.0}  # the first scan on the new time already runs the 02:00 slot
    assert site.image["clock_steps"].value == 1


# --- the event log's history ---------------------------------------------------------------------
REAL_NOW = DAY + AT_01_50  # what the calendar really is
HISTORY = [REAL_NOW - days * 86400.0 for days in range(300, 0, -30)]  # ten events over the past 300 days


def with_history(path: Path) -> None:
    log = EventLog(path)
    for i, wall_s in enumerate(HISTORY):
        log.append(Event(wall_s, 0.0, "error", 2, "bms", 112, f"e{i}", "cell_overvoltage raised"))
    log.close(REAL_NOW)


def start_home(tmp_path: Path, wall_s: float, synced: bool) -> None:
    """The home site started with its clock at `wall_s`, run for a minute and stopped cleanly."""
    cfg, _ = prepare(str(HOME), None, None, None)
    site = build_site(cfg, VirtualClock(start_wall_s=wall_s, synced=synced))
    site.attach_services(tmp_path)
    site.run(60.0)
    site.stop()


def history_left(tmp_path: Path) -> list[float]:
    return [e.wall_s for e in read_events(tmp_path / "events.sqlite", kinds=["error"])]


def test_a_start_400_days_ahead_on_an_unsynchronized_clock_keeps_the_event_log(tmp_path):
    with_history(tmp_path / "events.sqlite")
    start_home(tmp_path, REAL_NOW + 400 * 86400.0, synced=False)
    assert history_left(tmp_path) == HISTORY  # max_age_days = 365 measured from a wrong clock deletes nothing


def test_a_start_400_days_ahead_is_logged_as_a_clock_not_synchronized(tmp_path):
    with_history(tmp_path / "events.sqlite")
    start_home(tmp_path, REAL_NOW + 400 * 86400.0, synced=False)
    clock = read_events(tmp_path / "events.sqlite", kinds=["clock"])
    assert [e.name for e in clock] == ["clock_unsynchronized"]
    assert "reads 2027-02-05 01:50:00 UTC" in clock[0].message


def test_a_synchronized_clock_400_days_on_deletes_the_events_older_than_365_days(tmp_path):
    with_history(tmp_path / "events.sqlite")  # the site was off for 400 days, and its clock is right
    start_home(tmp_path, REAL_NOW + 400 * 86400.0, synced=True)
    assert history_left(tmp_path) == []  # each of them more than 365 days before the clock


def test_a_synchronized_clock_deletes_only_what_is_older_than_max_age(tmp_path):
    with_history(tmp_path / "events.sqlite")
    start_home(tmp_path, REAL_NOW + 100 * 86400.0, synced=True)
    assert history_left(tmp_path) == [w for w in HISTORY if w >= REAL_NOW + 100 * 86400.0 - 365 * 86400.0]


def test_a_synchronized_clock_behind_the_newest_event_deletes_nothing_by_age(tmp_path):
    path = tmp_path / "events.sqlite"
    log = EventLog(path, max_age_days=30.0, clock_synced=lambda: True)
    log.append(Event(REAL_NOW - 40 * 86400.0, 0.0, "error", 2, "bms", 112, "old", "40 days ago"))
    log.append(Event(REAL_NOW + 400 * 86400.0, 0.0, "error", 2, "bms", 112, "ahead", "stamped 400 days ahead"))
    log.append(Event(REAL_NOW, 0.0, "error", 2, "bms", 112, "now", "now"))
    log.close(REAL_NOW)
    assert [e.name for e in read_events(path)] == ["old", "ahead", "now"]


def test_an_unsynchronized_clock_still_keeps_the_log_within_max_rows(tmp_path):
    path = tmp_path / "events.sqlite"
    log = EventLog(path, max_rows=100, clock_synced=lambda: False)
    for i in range(250):
        log.append(Event(REAL_NOW + i, 0.0, "error", 2, "bms", 112, f"e{i}", "cell_overvoltage raised"))
    log.close(REAL_NOW + 250)
    events = read_events(path)
    assert len(events) == 100
    assert events[0].name == "e150" and events[-1].name == "e249"
