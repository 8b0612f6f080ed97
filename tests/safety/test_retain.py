"""Retained tags and system information across restarts of the controller."""

from __future__ import annotations

import json
import logging
import sqlite3
import time

from site_run import SiteRun
from testkit.waiting import wait_until

from programs.enums import Mode


def stored(data_dir, name):
    db = sqlite3.connect(data_dir / "retain.sqlite")
    try:
        row = db.execute("SELECT value FROM retain WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    return None if row is None else json.loads(row[0])


def test_a_parameter_written_from_outside_is_restored_after_a_restart(tmp_path):
    run = SiteRun(tmp_path)
    run.image.request_writes([("soc_reserve_pct", 35.0), ("mode", int(Mode.PEAK_SHAVING))], "modbus 127.0.0.1")
    run.run(1.0)
    run.stop()

    again = SiteRun(tmp_path)
    assert again["soc_reserve_pct"] == 35.0  # before the first scan
    assert again["mode"] == Mode.PEAK_SHAVING
    again.run(2.0)
    assert again["mode_active"] == Mode.PEAK_SHAVING
    again.stop()


def test_a_write_is_stored_within_a_second_without_a_clean_stop(tmp_path):
    run = SiteRun(tmp_path)
    run.image.request_writes([("import_limit_w", 4000.0)], "modbus 127.0.0.1")
    run.scan(2)
    wait_until(lambda: stored(tmp_path, "import_limit_w") == 4000.0, 1.0, "import_limit_w stored")
    assert stored(tmp_path, "import_limit_w") == 4000.0


def test_a_stored_value_that_no_longer_fits_its_tag_is_skipped_with_a_log_line(tmp_path, caplog):
    SiteRun(tmp_path).stop()
    db = sqlite3.connect(tmp_path / "retain.sqlite")
    with db:
        db.execute("UPDATE retain SET value = '150.0' WHERE name = 'soc_max_pct'")
        db.execute("UPDATE retain SET value = '\"full\"' WHERE name = 'soc_min_pct'")
    db.close()
    with caplog.at_level(logging.WARNING, logger="runtime.retain"):
        run = SiteRun(tmp_path)
    assert run["soc_max_pct"] == 95.0 and run["soc_min_pct"] == 5.0  # the io_map's values
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "soc_max_pct: stored value 150.0 skipped" in messages
    assert "soc_min_pct: stored value 'full' skipped" in messages
    run.run(1.0)
    run.stop()


def test_an_io_map_starting_value_changed_since_the_value_was_stored_wins(tmp_path):
    run = SiteRun(tmp_path)
    run.image.request_writes([("soc_reserve_pct", 35.0)], "hmi")
    run.run(1.0)
    run.stop()
    edited = SiteRun(tmp_path, params={"control": {"soc_reserve_pct": 25.0}})  # the integrator edits the io_map
    assert edited["soc_reserve_pct"] == 25.0
    edited.stop()


def test_system_information_counts_boots_and_runtime_and_knows_a_clean_stop(tmp_path):
    first = SiteRun(tmp_path)
    assert first["sys_boot_count"] == 1 and first["sys_firmware_version"] == "0.1.0"
    boot_wall = first["sys_last_boot_wall_s"]
    first.run(120.0)
    first.stop()
    assert stored(tmp_path, "sys_runtime_total_s") == 120
    assert stored(tmp_path, "sys_last_stop_clean") is True

    second = SiteRun(tmp_path)
    assert second["sys_boot_count"] == 2
    assert second["sys_last_boot_wall_s"] >= boot_wall
    assert second["sys_last_stop_clean"] is False  # until this run stops cleanly
    assert stored(tmp_path, "sys_boot_count") == 2  # counted durably before the first scan
    second.run(30.0)
    second.image.request_writes([("mode", int(Mode.PASSIVE))], "hmi")
    second.run(31.0)
    assert abs(second["sys_last_mode_change_wall_s"] - (second.site.clock.wall() - 31.0)) <= 1.0
    second.stop()
    assert stored(tmp_path, "sys_runtime_total_s") == 120 + 61


def test_the_monitors_battery_history_survives_a_restart(tmp_path):
    run = SiteRun(tmp_path, monitor={"bms_inactive_timeout_s": 10.0})
    run.demand(0.0)
    run.run(60.0)
    slept = run["bms_sleep_total_s"]
    assert slept > 40.0
    run.stop()
    again = SiteRun(tmp_path, monitor={"bms_inactive_timeout_s": 10.0})
    assert again["bms_sleep_total_s"] == slept
    again.demand(0.0)
    again.run(30.0)
    assert again["bms_sleep_total_s"] > slept + 15.0
    again.stop()


def test_a_site_stopped_before_its_first_scan_keeps_a_valid_runtime(tmp_path):
    """On the real clock the scan time is the monotonic clock's, far from 0 before any scan."""
    from site_run import HOME

    from runtime.clock import RealClock
    from runtime.config.io_map import load_io_map
    from runtime.site import build_site

    site = build_site(load_io_map(HOME), RealClock())
    site.attach_services(tmp_path)
    time.sleep(1.1)  # deliberately: the real time before any scan is what the stored runtime must count
    site.stop()  # no scan ran: start failed, or a signal came first
    assert stored(tmp_path, "sys_runtime_total_s") in (1, 2)
    assert stored(tmp_path, "sys_last_stop_clean") is True
