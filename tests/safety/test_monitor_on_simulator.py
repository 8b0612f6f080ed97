"""The battery monitor on the plant simulator: auto-charge, SOC drift and recalibration, full charge,
cell balancing and BMS inactivity, with the warnings they raise through the safety program."""

from __future__ import annotations

from site_run import SiteRun


def test_auto_charge_lifts_a_critically_low_battery_from_the_grid_and_stops_at_its_target(tmp_path):
    run = SiteRun(tmp_path, plant={"battery": {"initial_soc_pct": 3.5}},
                  monitor={"auto_charge_soc_pct": 4.0, "auto_charge_stop_pct": 4.6, "auto_charge_w": 2000.0})
    run.demand(800.0)  # self-consumption would discharge; the SOC is below soc_min, so it may not
    run.until(lambda: run.active("soc_critically_low"), 5.0, "auto-charge started")
    assert run["auto_charge_active"] is True
    assert run.logged_error("soc_critically_low", "raised")
    run.run(10.0)
    assert run["inverter_p_w"] < -1800.0  # charging at 2 kW from the grid
    assert run["grid_power_w"] > 2500.0

    run.until(lambda: not run.active("soc_critically_low"), 900.0, "auto-charge ended")
    assert run["soc_pct"] >= 4.6
    assert run.logged_error("soc_critically_low", "cleared")
    run.run(10.0)
    assert run["inverter_p_w"] > -50.0  # back to what the mode wants: nothing below soc_min
    run.stop()


def test_a_sudden_jump_of_the_bms_soc_is_reported_as_drift(tmp_path):
    run = SiteRun(tmp_path, monitor={"drift_alarm_pct": 2.0})
    run.demand(1000.0)
    run.run(30.0)
    assert abs(run["soc_drift_pct"]) < 0.5  # the counted SOC follows the BMS while nothing is wrong
    run.set_plant("battery.inject_cell_index", 3)
    run.set_plant("battery.inject_cell_soc_offset_pct", 48.0)  # the BMS's mean SOC jumps 3 %, no charge flowed
    run.until(lambda: run.active("soc_drift"), 3.0, "drift warning")
    assert 2.5 < run["soc_drift_pct"] < 3.5
    assert run["error_highest_severity"] == 1

    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    run.until(lambda: not run.active("soc_drift"), 3.0, "drift gone")
    run.stop()


def test_a_rest_on_the_steep_end_of_the_ocv_curve_recalibrates_the_counted_soc(tmp_path):
    run = SiteRun(tmp_path, plant={"battery": {"initial_soc_pct": 12.0}}, monitor={"rest_s": 60.0})
    run.demand(0.0)  # nothing to do: the battery rests
    run.until(lambda: run["soc_recalibrations"] == 1, 90.0, "recalibrated at rest")
    assert abs(run["soc_estimate_pct"] - 12.0) < 2.0
    assert any("rest, OCV" in e.message for e in run.logged("monitor"))
    run.stop()


def test_full_charge_is_detected_stamped_and_recalibrates_to_100_percent(tmp_path):
    run = SiteRun(tmp_path, plant={"battery": {"initial_soc_pct": 100.0}}, monitor={"full_empty_s": 5.0})
    run.demand(0.0)
    run.until(lambda: run["battery_full"] is True, 10.0, "full")
    assert abs(run["last_full_charge_wall_s"] - run.site.clock.wall()) <= 1.0
    assert run["soc_estimate_pct"] == 100.0
    assert abs(run["soc_delta_pct"] - (run["soc_pct"] - 100.0)) < 0.1
    run.stop()


def test_a_spread_near_full_requests_balancing_and_the_session_is_kept(tmp_path):
    run = SiteRun(tmp_path, plant={"battery": {"initial_soc_pct": 95.0}},
                  monitor={"balance_start_v": 0.05, "balance_stop_v": 0.03})  # the plant's cells spread 25 mV here
    run.demand(0.0)
    run.run(5.0)
    assert run["balancing_request"] is False
    run.set_plant("battery.inject_cell_index", 6)
    run.set_plant("battery.inject_cell_soc_offset_pct", 4.0)  # one cell near 99 %: about 60 mV above the rest
    run.until(lambda: run["balancing_request"] is True, 3.0, "balancing requested")
    assert run["bms_balancing_cmd"] is True and run["balancing_sessions"] == 1
    assert run["balancing_last_spread_v"] > 0.05
    run.run(60.0)
    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    run.until(lambda: run["balancing_request"] is False, 5.0, "balancing ended")
    assert run["bms_balancing_cmd"] is False
    assert 60.0 <= run["balancing_last_duration_s"] <= 63.0
    assert [e.name for e in run.logged("monitor")][-2:] == ["balancing_started", "balancing_ended"]
    run.stop()


def test_no_current_for_the_timeout_marks_the_bms_inactive_and_counts_its_sleep(tmp_path):
    run = SiteRun(tmp_path, monitor={"bms_inactive_timeout_s": 120.0})
    run.demand(0.0)
    run.until(lambda: run.active("bms_inactive"), 140.0, "BMS inactive")
    assert run["bms_sleep_request"] is True
    run.run(30.0)
    assert 29.0 <= run["bms_sleep_total_s"] <= 32.0
    run.demand(2500.0)
    run.until(lambda: not run.active("bms_inactive"), 10.0, "active again")
    assert run["bms_sleep_request"] is False
    run.stop()
