"""The grid operator's log: the TSO's file names and timestamps, 10 Hz in tests and 1 Hz in operation,
14 days kept, written by its own thread."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from grid_kit import Harness

from runtime.grid_log import GridLog, Session, file_name, stamp, tz_token

START = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC).timestamp()
STAMP = re.compile(r"^\d{8}T\d{6}\.\d{3}$")


def scans(h: Harness, log: GridLog, seconds: float, test: bool = False, wall0: float = START) -> float:
    wall = wall0
    for _ in range(int(round(seconds / h.period_s))):
        if test:
            h.test_frequency(49.8)
        else:
            h.scan()
        h.ctx.wall_s = wall
        log(h.ctx)
        wall += h.period_s
    return wall


def make(tmp_path: Path, h: Harness, **kw) -> GridLog:  # type: ignore[no-untyped-def]
    return GridLog(h.image, tmp_path, "BESS7", "SE3", UTC, **kw)


def test_the_file_name_follows_the_tso_convention():
    start = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
    end = datetime(2026, 3, 2, 10, 17, 30, tzinfo=UTC)
    name = file_name(Session("BESS7", "FCR-D-UP", "RAMP", "SE3", 10.0), start, end)
    assert name == "BESS7_FCR-D-UP_RAMP_SE3_UTC_20260302T100000-20260302T101730_10Hz.csv"


def test_timestamps_are_yyyymmddthhmmss_nnn_and_the_zone_is_named():
    when = datetime(2026, 7, 1, 12, 3, 4, 56_000, tzinfo=ZoneInfo("Europe/Stockholm"))
    assert stamp(when) == "20260701T120304.056"
    assert tz_token(when) == "UTC+0200"


def test_operation_is_logged_at_1_hz_in_a_file_per_day(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 30.0)
    log.stop()
    (path,) = tmp_path.glob("*.csv")
    assert path.name == "BESS7_FCR-D-UP_OPERATION_SE3_UTC_20260302T000000-20260303T000000_1Hz.csv"
    rows = path.read_text().splitlines()[1:]
    assert len(rows) == 30


def test_a_test_is_logged_at_10_hz_in_its_own_file_from_first_to_last_row(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h, test_session=("FCR-D-UP", "RAMP"))
    log.start()
    wall = scans(h, log, 5.0)
    wall = scans(h, log, 20.0, test=True, wall0=wall)
    h.set(test_frequency_active=False)  # the test client ends the test
    scans(h, log, 5.0, wall0=wall)
    log.stop()
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    test_file = "BESS7_FCR-D-UP_RAMP_SE3_UTC_20260302T100005-20260302T100024_10Hz.csv"
    assert test_file in names
    rows = (tmp_path / test_file).read_text().splitlines()
    assert len(rows) == 1 + 200
    assert not list(tmp_path.glob("*.part"))


def test_each_row_holds_the_signals_the_reference_lists(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h, test_session=("FCR-D-UP", "RAMP"))
    log.start()
    scans(h, log, 2.0, test=True)
    log.stop()
    path = next(tmp_path.glob("*RAMP*.csv"))
    header, first = path.read_text().splitlines()[:2]
    for column in ("timestamp", "grid_frequency_hz", "applied_frequency_hz", "baseline_w", "test_mode", "soc_pct",
                   "endurance_up_min", "nem_allowed_fcr_d_up", "nem_current_fcr_d_up", "aem_active_fcr_d_up"):
        assert column in header.split(","), column
    cells = dict(zip(header.split(","), first.split(",")))
    assert STAMP.match(cells["timestamp"])
    assert cells["applied_frequency_hz"] == "49.8000"
    assert cells["test_mode"] == "1"
    assert re.match(r"^-?\d+\.\d{3,}$", cells["soc_pct"])


def test_files_older_than_the_kept_days_are_deleted(tmp_path):
    old = tmp_path / "BESS7_FCR-N_OPERATION_SE3_UTC_20260210T000000-20260211T000000_1Hz.csv"
    recent = tmp_path / "BESS7_FCR-N_OPERATION_SE3_UTC_20260220T000000-20260221T000000_1Hz.csv"
    old.write_text("x\n")
    recent.write_text("x\n")
    h = Harness(fcr_n_capacity_w=10_000.0)
    log = make(tmp_path, h, keep_days=14.0)
    log.start()
    scans(h, log, 2.0)
    log.stop()
    assert not old.exists()
    assert recent.exists()


def test_the_scan_hook_only_queues_the_writer_thread_writes(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h)
    scans(h, log, 10.0)  # writer not started: the hook must not have touched the disk
    assert len(log.rows) == 10
    assert list(tmp_path.iterdir()) == []
    log.start()
    log.stop()
    assert log.written == 10
    assert not any(t.name == "grid-log" for t in threading.enumerate())


def test_nothing_is_logged_while_no_product_is_sold_and_no_test_runs(tmp_path):
    h = Harness()
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 10.0)
    log.stop()
    assert log.written == 0
    assert list(tmp_path.glob("*.csv")) == []


def test_a_test_file_is_closed_and_named_when_the_test_ends_and_nothing_is_sold(tmp_path):
    h = Harness()
    log = make(tmp_path, h, test_session=("FCR-D-UP", "LINEARITY"))
    wall = scans(h, log, 3.0, test=True)
    h.set(test_frequency_active=False)
    scans(h, log, 2.0, wall0=wall)
    log._drain()  # what the writer thread does every 0.5 s (not started here: one thread)
    assert [p.name for p in tmp_path.iterdir()] == [
        "BESS7_FCR-D-UP_LINEARITY_SE3_UTC_20260302T100000-20260302T100002_10Hz.csv"]
    log.stop()


def test_at_least_14_days_are_kept():
    from programs.grid.params import LogParams

    with pytest.raises(ValueError):
        LogParams(keep_days=7.0)
