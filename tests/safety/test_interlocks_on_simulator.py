"""One fault-injection test per interlock, on the plant simulator (home site, 100 ms scan).

Each test brings the site into Run with a known battery job, injects the fault into the plant
between two scans, and checks: the safe reaction happens within the configured time counted
in scans (debounce, plus the time the fault takes to reach the controller's inputs: the
simulated BMS measures cells once a second, and an input goes STALE after its 1 s max_age),
the error is in the active list and in the event log on disk, and when the fault clears the
site recovers as its error's clear rule says: by itself after `clear_after_s`, or, for latched
critical errors, only after an operator's acknowledgement.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from site_run import SiteRun, scans_for

BMS_SCAN_S = 1.0  # the simulated BMS updates cell voltages and temperatures once a second
STALE_S = 1.0  # max_age of the home site's inputs (stale_after_s of the plant device)
SLACK = 2  # scans: the plant step that sees the fault, and the scan that reads it


def within(seconds: float) -> float:
    """A reaction's deadline: the configured time in scans plus SLACK scans, as seconds."""
    return (scans_for(seconds) + SLACK) * 0.1


def running(tmp_path: Path, load_w: float = 2000.0, pv_w: float = 0.0, **kwargs) -> SiteRun:
    """The home site in Run, discharging (or charging) steadily."""
    run = SiteRun(tmp_path, **kwargs)
    run.demand(load_w, pv_w)
    run.until(lambda: run.state == "run" and abs(run["inverter_p_w"]) > 0.8 * abs(load_w - pv_w), 60.0,
              "site running with power flowing")
    run.run(2.0)
    return run


def assert_raised(run: SiteRun, name: str) -> None:
    assert run.active(name)
    assert run[f"error_{name}"] is True
    assert run.logged_error(name, "raised"), f"{name} raised is not in the event log"


def assert_cleared(run: SiteRun, name: str) -> None:
    assert not run.active(name)
    assert run[f"error_{name}"] is False
    assert run.logged_error(name, "cleared"), f"{name} cleared is not in the event log"


def power_back(run: SiteRun, within_s: float = 30.0, at_least_w: float = 500.0) -> int:
    return run.until(lambda: abs(run["inverter_p_w"]) > at_least_w, within_s, "power flowing again")


# --- critical, latched ---------------------------------------------------------------------------
def test_estop_stops_at_once_then_opens_the_contactor_and_holds_error_until_acknowledged(tmp_path):
    run = running(tmp_path)
    first = len(run.scans)
    run.set_plant("site.estop_pressed", True)
    run.until(run.stopped, within(0.0), "0 W and run off")  # debounce 0: the next scan
    run.until(lambda: run["bms_contactor_cmd"] is False, 3 * run.period, "contactor open")
    after = run.scans[first:]
    opened = next(i for i, s in enumerate(after) if not s.contactor)
    assert after[opened - 1].setpoint_w == 0.0 and not after[opened - 1].run  # power first, contactor second
    run.run(1.0)
    assert run.state == "error" and run["error_critical_active"] is True
    assert_raised(run, "estop")

    run.set_plant("site.estop_pressed", False)
    run.run(10.0)
    assert run.state == "error" and run.active("estop")  # latched: the button alone does not restart
    assert run["bms_contactor_cmd"] is False

    run.acknowledge()
    run.until(lambda: run.state == "run", 10.0, "site back in Run")
    assert_cleared(run, "estop")
    assert run["bms_contactor_cmd"] is True
    power_back(run)
    run.stop()


def test_estop_acknowledged_while_still_pressed_stays_in_error(tmp_path):
    run = running(tmp_path)
    run.set_plant("site.estop_pressed", True)
    run.run(1.0)
    run.acknowledge()
    run.run(5.0)
    assert run.state == "error" and run.active("estop")
    assert any("still present" in e.message for e in run.logged_error("estop", "acknowledged"))
    run.stop()


def test_critical_low_cell_voltage_trips_to_error_and_waits_for_acknowledgement(tmp_path):
    run = running(tmp_path)
    run.set_plant("battery.inject_cell_index", 5)
    run.set_plant("battery.inject_cell_soc_offset_pct", -55.0)  # that cell near -5 % SOC: about 1.8 V
    run.until(run.stopped, within(1.0 + BMS_SCAN_S), "0 W and run off")
    run.until(lambda: run["bms_contactor_cmd"] is False, 3 * run.period, "contactor open")
    assert_raised(run, "cell_v_critical_low")
    run.run(1.0)
    assert run.state == "error"

    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    run.run(20.0)
    assert run.state == "error" and run.active("cell_v_critical_low")
    run.acknowledge()
    run.until(lambda: run.state == "run", 10.0, "site back in Run")
    assert_cleared(run, "cell_v_critical_low")
    power_back(run)
    run.stop()


def test_bms_protection_trip_is_critical_and_the_contactor_recloses_after_acknowledgement(tmp_path):
    run = running(tmp_path, wide_bms=False)  # the simulated BMS protects itself here: it trips
    run.set_plant("battery.inject_cell_index", 2)
    run.set_plant("battery.inject_cell_soc_offset_pct", 55.0)  # cell over 3.75 V: the BMS trips after 2 s
    run.until(lambda: run.active("bms_trip"), 5.0, "bms trip seen")
    run.until(run.stopped, within(0.0), "0 W and run off")
    run.until(lambda: run["bms_contactor_cmd"] is False, 3 * run.period, "contactor command open")
    assert_raised(run, "bms_trip")
    run.run(1.0)
    assert run.state == "error"

    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    run.run(15.0)  # the BMS releases its latch while the contactor command is open; still no restart
    assert run.state == "error" and run.active("bms_trip")
    run.acknowledge()
    run.until(lambda: run.state == "run", 10.0, "site back in Run")
    run.until(lambda: run["bms_contactor_closed"] is True, 5.0, "contactor closed again")
    assert_cleared(run, "bms_trip")
    power_back(run)
    run.stop()


# --- cells ---------------------------------------------------------------------------------------
def test_cell_overvoltage_blocks_charging_but_lets_the_battery_discharge(tmp_path):
    run = running(tmp_path, load_w=3000.0)  # discharging 3 kW
    run.set_plant("battery.inject_cell_index", 7)
    run.set_plant("battery.inject_cell_soc_offset_pct", 55.0)  # that cell near 105 %: about 4 V
    run.until(lambda: run["safety_p_min_w"] == 0.0, within(2.0 + BMS_SCAN_S), "charging blocked")
    assert_raised(run, "cell_overvoltage")
    run.run(5.0)
    assert run["inverter_p_w"] > 2500.0  # discharging goes on: it lowers the cell
    run.demand(500.0, 4000.0)  # a PV surplus the site would store: not now
    run.run(10.0)
    assert run["inverter_p_setpoint_w"] >= 0.0 and run["inverter_p_w"] > -50.0
    assert run.active("cell_overvoltage")

    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    n = run.until(lambda: not run.active("cell_overvoltage"), 20.0, "error cleared")
    assert n >= scans_for(10.0)  # clears 10 s after the voltage is back below 3.45 V
    assert_cleared(run, "cell_overvoltage")
    run.until(lambda: run["inverter_p_w"] < -2000.0, 20.0, "charging again")
    run.stop()


def test_cell_undervoltage_blocks_discharging_but_lets_the_battery_charge(tmp_path):
    run = running(tmp_path, interlocks={"cell_v_critical_low": {"trip": 2.0, "clear": 2.3}})
    run.set_plant("battery.inject_cell_index", 9)
    run.set_plant("battery.inject_cell_soc_offset_pct", -50.0)  # that cell near 0 %: about 2.5 V
    run.until(lambda: run["safety_p_max_w"] == 0.0, within(2.0 + BMS_SCAN_S), "discharging blocked")
    assert run["inverter_p_setpoint_w"] <= 0.0
    assert_raised(run, "cell_undervoltage")
    run.demand(500.0, 4000.0)  # the sun comes out: charging is allowed
    run.until(lambda: run["inverter_p_w"] < -2000.0, 20.0, "charging despite the under-voltage")

    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    n = run.until(lambda: not run.active("cell_undervoltage"), 20.0, "error cleared")
    assert n >= scans_for(10.0)
    assert_cleared(run, "cell_undervoltage")
    run.demand(3000.0, 0.0)
    run.until(lambda: run["inverter_p_w"] > 2000.0, 20.0, "discharging again")
    run.stop()


def test_cell_overtemperature_stops_the_battery_until_it_has_cooled(tmp_path):
    # A light thermal mass (2 kJ/K instead of 100 kJ/K) so heating and cooling take minutes, not hours.
    run = running(tmp_path, plant={"battery": {"heat_capacity_j_per_degc": 2000.0}},
                  interlocks={"cell_overtemperature": {"clear_after_s": 20.0}})
    run.set_plant("battery.inject_heat_w", 600.0)
    run.until(lambda: run["cell_t_max_degc"] > 50.0, 200.0, "hottest cell above 50 degC")
    run.until(run.stopped, within(5.0 + BMS_SCAN_S), "0 W and run off")
    assert_raised(run, "cell_overtemperature")
    assert run.state == "run"  # an error, not critical: the site stays in Run at 0 W

    run.set_plant("battery.inject_heat_w", 0.0)
    run.until(lambda: run["cell_t_max_degc"] < 45.0, 300.0, "cooled below 45 degC")
    run.run(19.0)
    assert run.active("cell_overtemperature") and run.stopped()  # 20 s below the clear threshold first
    run.until(lambda: not run.active("cell_overtemperature"), 3.0, "error cleared")
    assert_cleared(run, "cell_overtemperature")
    power_back(run)
    run.stop()


def test_cell_undertemperature_stops_the_battery_until_it_has_warmed(tmp_path):
    run = running(tmp_path, plant={"battery": {"heat_capacity_j_per_degc": 2000.0}},
                  interlocks={"cell_undertemperature": {"clear_after_s": 20.0}})
    run.set_plant("battery.ambient_degc", -30.0)
    run.until(lambda: run["cell_t_min_degc"] < -10.0, 900.0, "coldest cell below -10 degC")
    run.until(run.stopped, within(5.0 + BMS_SCAN_S), "0 W and run off")
    assert_raised(run, "cell_undertemperature")

    run.set_plant("battery.ambient_degc", 25.0)
    run.until(lambda: run["cell_t_min_degc"] > -5.0, 300.0, "warmed above -5 degC")
    run.run(19.0)
    assert run.active("cell_undertemperature")
    run.until(lambda: not run.active("cell_undertemperature"), 3.0, "error cleared")
    assert_cleared(run, "cell_undertemperature")
    power_back(run)
    run.stop()


def test_overcurrent_against_a_falling_bms_limit_stops_the_inverter_before_the_bms_trips(tmp_path):
    """The battery charges at about 90 A through an inverter that ramps only 100 W/s. One cell is
    then pushed near full, so the BMS's charge limit falls to about 10 A at its next cell scan.
    The controller lowers its setpoint at once, but the slow inverter keeps charging at far more
    than the new limit: the measured current exceeds the limit, which is what the interlock
    watches. Its stop (run command off) ends the current before the BMS's own 5 s trip."""
    run = SiteRun(tmp_path, wide_bms=False, plant={"inverter": {"ramp_w_per_s": 100.0}})
    run.demand(500.0, 5000.0)
    run.until(lambda: run["inverter_p_w"] < -4000.0, 120.0, "charging at 4 kW")
    run.set_plant("battery.inject_cell_index", 4)
    run.set_plant("battery.inject_cell_soc_offset_pct", 49.0)
    run.until(lambda: run["bms_charge_limit_a"] < 20.0, 2.0, "BMS charge limit down")
    assert -run["battery_current_a"] > 1.1 * run["bms_charge_limit_a"] + 5.0  # the overcurrent is real
    run.until(run.stopped, within(1.0), "0 W and run off")
    assert_raised(run, "overcurrent")
    run.scan(2)
    assert abs(run["battery_current_a"]) < 2.0
    assert not run.active("bms_trip") and not run["bms_alarm_bits"] & 0x100

    run.until(lambda: not run.active("overcurrent"), 12.0, "error cleared after 10 s")
    assert_cleared(run, "overcurrent")
    run.run(30.0)  # charging resumes within the BMS limit, without a new overcurrent
    assert not run.active("overcurrent")
    assert -run["battery_current_a"] <= 1.1 * run["bms_charge_limit_a"] + 5.0
    run.stop()


def test_cell_imbalance_derates_power_to_half(tmp_path):
    run = running(tmp_path, load_w=4500.0,
                  interlocks={"cell_imbalance": {"trip": 0.05, "clear": 0.03, "clear_after_s": 10.0}})
    assert run["inverter_p_w"] > 4000.0
    run.set_plant("battery.inject_cell_index", 11)
    run.set_plant("battery.inject_cell_soc_offset_pct", -35.0)  # one cell near 15 %: 3.21 V, 85 mV low
    run.until(lambda: run["safety_p_max_w"] == 2500.0, within(30.0 + BMS_SCAN_S), "derated")
    assert run["inverter_p_setpoint_w"] <= 2500.0
    assert_raised(run, "cell_imbalance")
    run.run(10.0)
    assert 2000.0 < run["inverter_p_w"] <= 2510.0

    run.set_plant("battery.inject_cell_soc_offset_pct", 0.0)
    run.until(lambda: not run.active("cell_imbalance"), 15.0, "error cleared")
    assert_cleared(run, "cell_imbalance")
    run.until(lambda: run["inverter_p_w"] > 4000.0, 20.0, "full power again")
    run.stop()


# --- grid ----------------------------------------------------------------------------------------
def test_grid_loss_stops_and_reconnects_after_the_grid_has_been_back_for_its_delay(tmp_path):
    run = running(tmp_path, interlocks={"grid_loss": {"clear_after_s": 20.0}})
    run.set_plant("grid.outage", True)
    run.until(run.stopped, within(0.2), "0 W and run off")
    assert_raised(run, "grid_loss")
    run.run(10.0)
    assert run.active("inverter_fault")  # the (grid-following) inverter tripped on the outage too

    run.set_plant("grid.outage", False)
    run.run(19.0)
    assert run.active("grid_loss") and run.stopped()
    run.until(lambda: not run.active("grid_loss"), 2.0, "grid loss cleared after 20 s")
    assert_cleared(run, "grid_loss")
    run.until(lambda: not run.active("inverter_fault"), 10.0, "inverter fault reset by itself")
    power_back(run)
    run.stop()


@pytest.mark.parametrize("name, hz", [("underfrequency", 47.0), ("overfrequency", 52.0)])
def test_frequency_out_of_band_stops_and_recovers_after_the_frequency_is_back(tmp_path, name, hz):
    run = running(tmp_path, interlocks={name: {"clear_after_s": 15.0}})
    run.set_plant("grid.frequency_override_hz", hz)
    run.until(run.stopped, within(0.5), "0 W and run off")
    assert_raised(run, name)
    assert not run.active("grid_loss")

    run.set_plant("grid.frequency_override_hz", math.nan)
    run.run(14.0)
    assert run.active(name)
    run.until(lambda: not run.active(name), 2.0, "cleared 15 s after the frequency is back")
    assert_cleared(run, name)
    power_back(run)
    run.stop()


# --- inverter ------------------------------------------------------------------------------------
def test_inverter_fault_stops_and_needs_an_acknowledgement_to_reset_the_inverter(tmp_path):
    run = running(tmp_path)
    run.set_plant("inverter.inject_fault", True)
    run.until(run.stopped, within(0.5), "0 W and run off")
    assert_raised(run, "inverter_fault")
    run.set_plant("inverter.inject_fault", False)
    run.run(10.0)
    assert run.active("inverter_fault")  # the inverter latches its fault: nothing resets it by itself

    run.acknowledge()
    run.until(lambda: run["inverter_fault_reset_cmd"] is True, 0.3, "fault reset pulse")
    run.until(lambda: not run.active("inverter_fault"), 5.0, "error cleared")
    assert_cleared(run, "inverter_fault")
    power_back(run)
    run.stop()


# --- communication -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, flag", [("bms_comm_timeout", "bms.comm_ok"),
                                        ("inverter_comm_timeout", "inverter.comm_ok"),
                                        ("meter_comm_timeout", "meter.comm_ok")])
def test_communication_timeout_stops_and_recovers_when_data_flows_again(tmp_path, name, flag):
    run = running(tmp_path)
    run.set_plant(flag, False)
    run.until(run.stopped, within(STALE_S + 2.0), "0 W and run off")
    run.until(lambda: run.active(name), within(STALE_S + 2.0), f"{name} raised")
    assert_raised(run, name)

    run.set_plant(flag, True)
    n = run.until(lambda: not run.active(name), 8.0, "error cleared")
    assert n >= scans_for(5.0)
    assert_cleared(run, name)
    power_back(run)
    run.stop()


# --- controller and enclosure --------------------------------------------------------------------
def test_cpu_overtemperature_stops_until_the_cpu_has_cooled(tmp_path):
    run = running(tmp_path, interlocks={"cpu_overtemperature": {"clear_after_s": 30.0}})
    run.set_plant("site.cpu_temp_degc", 90.0)
    run.until(run.stopped, within(10.0), "0 W and run off")
    assert_raised(run, "cpu_overtemperature")

    run.set_plant("site.cpu_temp_degc", 60.0)
    run.run(29.0)
    assert run.active("cpu_overtemperature")
    run.until(lambda: not run.active("cpu_overtemperature"), 2.0, "cleared 30 s after cooling")
    assert_cleared(run, "cpu_overtemperature")
    power_back(run)
    run.stop()


def test_high_humidity_warns_without_touching_the_power(tmp_path):
    run = running(tmp_path, interlocks={"humidity_high": {"debounce_s": 20.0, "clear_after_s": 20.0}})
    run.set_plant("site.humidity_pct", 95.0)
    n = run.until(lambda: run.active("humidity_high"), within(20.0), "warning raised")
    assert n >= scans_for(20.0)
    assert_raised(run, "humidity_high")
    assert run["error_highest_severity"] == 1 and run["safety_reaction"] == 1  # warning, warn only
    run.run(5.0)
    assert run["inverter_p_w"] > 1500.0 and run["inverter_run_cmd"] is True

    run.set_plant("site.humidity_pct", 50.0)
    run.until(lambda: not run.active("humidity_high"), 22.0, "warning cleared")
    assert_cleared(run, "humidity_high")
    run.stop()


def test_unreadable_enclosure_sensor_is_a_sensor_fault_warning(tmp_path):
    run = running(tmp_path)
    run.set_plant("site.humidity_pct", math.nan)  # the reading is not a number: the tag goes BAD
    run.until(lambda: run.active("sensor_fault"), within(10.0), "sensor fault raised")
    assert_raised(run, "sensor_fault")
    assert not run.active("humidity_high")  # nothing is concluded from a value that is not there
    assert run["inverter_p_w"] > 1500.0

    run.set_plant("site.humidity_pct", 40.0)
    run.until(lambda: not run.active("sensor_fault"), 12.0, "sensor fault cleared")
    assert_cleared(run, "sensor_fault")
    run.stop()


def test_an_estop_input_that_goes_stale_counts_as_pressed(tmp_path):
    """A cut wire or a dead IO module: the e-stop input stops updating. Fail-safe: that is a press."""
    run = running(tmp_path)
    engine = run.site.engine
    read = engine._read_inputs
    estop = run.image["estop_pressed"]

    def read_with_dead_estop_module(t_s: float) -> None:
        read(t_s)
        estop.quality = type(estop.quality).STALE

    engine._read_inputs = read_with_dead_estop_module
    run.until(run.stopped, within(0.0), "0 W and run off")
    assert_raised(run, "estop")
    engine._read_inputs = read
    run.run(2.0)
    assert run.active("estop") and run.state == "error"  # latched: the input coming back is not enough
    run.acknowledge()
    run.until(lambda: run.state == "run", 10.0, "site back in Run")
    run.stop()
