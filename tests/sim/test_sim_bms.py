"""Simulated BMS: limits, alarms, protection trips, contactor, balancing, per-rack values."""

from __future__ import annotations

import pytest
from sim_helpers import evolve, quiet, run, start

from sim import Plant, PlantConfig
from sim.bms import ALARM_BITS


def _plant(**parts: dict) -> Plant:
    return Plant(quiet(evolve(PlantConfig.home(), **parts)))


def test_ccl_tapers_to_zero_at_full_and_dcl_at_empty() -> None:
    full, half, empty = (_plant(battery={"initial_soc_pct": s}).bms for s in (100.0, 50.0, 0.0))
    assert half.charge_current_limit_a == pytest.approx(100.0)
    assert half.discharge_current_limit_a == pytest.approx(150.0)
    assert full.charge_current_limit_a < 1.0
    assert full.discharge_current_limit_a == pytest.approx(150.0)
    assert empty.discharge_current_limit_a < 1.0
    assert empty.charge_current_limit_a == pytest.approx(100.0)


def test_ccl_tapers_between_90_and_100_percent_of_the_highest_cell() -> None:
    bms = _plant(battery={"initial_soc_pct": 95.0, "soc_spread_pct": 0.0}).bms
    assert bms.max_cell_soc_pct == pytest.approx(95.0)
    assert bms.charge_current_limit_a == pytest.approx(50.0)  # factor 0.5 at 95 %


@pytest.mark.parametrize("temp_degc, ccl_a, dcl_a", [
    (-5.0, 0.0, 150.0 * 0.5),   # LFP must not be charged below 0 degC
    (2.0, 100.0 * 0.12, 150.0 * 0.76),
    (25.0, 100.0, 150.0),
    (52.0, 100.0 * 0.18, 150.0 * 0.51),
])
def test_limits_derate_when_cold_and_hot(temp_degc: float, ccl_a: float, dcl_a: float) -> None:
    bms = _plant(battery={"ambient_degc": temp_degc, "initial_temperature_degc": temp_degc,
                          "temperature_spread_degc": 0.0}).bms
    assert bms.charge_current_limit_a == pytest.approx(ccl_a, abs=0.01)
    assert bms.discharge_current_limit_a == pytest.approx(dcl_a, abs=0.01)


def test_overcurrent_raises_alarm_then_opens_contactor_after_delay() -> None:
    plant = start(_plant(bms={"max_charge_current_a": 20.0}), -3000.0)  # ~57 A > 27 A
    alarm_t = open_t = None
    while open_t is None and plant.t_s < 30.0:
        plant.step(0.1)
        if alarm_t is None and plant.bms.alarm_oc_charge:
            alarm_t = plant.t_s
        if not plant.bms.contactor_closed:
            open_t = plant.t_s
    assert alarm_t is not None and open_t is not None
    assert open_t - alarm_t == pytest.approx(5.0, abs=0.15)
    assert plant.bms.trip_cause == "overcurrent_charge"
    run(plant, 0.2)
    assert plant.battery.current_a == 0.0
    assert plant.inverter.state == "fault" and plant.inverter.fault_code & 4  # DC lost


def test_charging_past_full_raises_cell_overvoltage_and_trips() -> None:
    plant = start(_plant(battery={"initial_soc_pct": 99.0},
                         bms={"overcurrent_margin_a": 1000.0}), -5000.0)
    max_v = 0.0
    while plant.bms.contactor_closed and plant.t_s < 600.0:
        plant.step(0.1)
        max_v = max(max_v, plant.bms.max_cell_v)
    assert plant.bms.alarm_cell_ov
    assert plant.bms.trip_cause == "cell_ov"
    assert max_v > 3.65
    assert plant.bms.max_cell_soc_pct > 100.0
    assert plant.bms.soc_pct == 100.0 or plant.bms.soc_pct > 99.5


def test_discharging_past_empty_raises_cell_undervoltage_and_trips() -> None:
    plant = start(_plant(battery={"initial_soc_pct": 4.0, "soc_spread_pct": 0.0},
                         bms={"overcurrent_margin_a": 1000.0}), 5000.0)
    while plant.bms.contactor_closed and plant.t_s < 600.0:
        plant.step(0.1)
    assert plant.bms.alarm_cell_uv
    assert plant.bms.trip_cause == "cell_uv"
    assert plant.bms.min_cell_v < 2.8


def test_hot_ambient_raises_overtemperature_trip_and_blocks_reclosing() -> None:
    plant = _plant(battery={"ambient_degc": 60.0, "initial_temperature_degc": 60.0})
    run(plant, 3.5)
    assert plant.bms.alarm_cell_ot
    assert plant.bms.trip_cause == "cell_ot" and not plant.bms.contactor_closed
    plant.bms.contactor_cmd = False
    run(plant, 0.5)
    plant.bms.contactor_cmd = True
    run(plant, 5.0)
    assert not plant.bms.contactor_closed  # refused while too hot


def test_injected_heat_drives_the_battery_into_overtemperature() -> None:
    plant = _plant()
    plant.battery.inject_heat_w = 5000.0  # +0.05 K/s into 100 kJ/K
    run(plant, 300.0, dt=1.0)
    assert not plant.bms.alarm_cell_ot and plant.bms.contactor_closed
    run(plant, 600.0, dt=1.0)
    assert plant.bms.alarm_cell_ot and plant.bms.trip_cause == "cell_ot"


def test_cold_battery_raises_undertemperature_alarm() -> None:
    plant = _plant(battery={"ambient_degc": -15.0, "initial_temperature_degc": -15.0})
    assert plant.bms.alarm_cell_ut
    assert plant.bms.charge_current_limit_a == 0.0


def test_trip_latch_clears_on_open_command_and_contactor_recloses_after_delay() -> None:
    plant = start(_plant(bms={"max_charge_current_a": 20.0}), -3000.0)
    run(plant, 8.0)
    assert plant.bms.trip_latched and not plant.bms.contactor_closed
    plant.bms.contactor_cmd = True
    run(plant, 3.0)
    assert not plant.bms.contactor_closed  # still latched: must command open first
    plant.bms.contactor_cmd = False
    run(plant, 0.1)
    assert not plant.bms.trip_latched and plant.bms.trip_cause == ""
    plant.bms.contactor_cmd = True
    run(plant, 0.9)
    assert not plant.bms.contactor_closed
    run(plant, 0.2)
    assert plant.bms.contactor_closed  # after contactor_close_delay_s = 1 s


def test_sleep_opens_contactor_and_zeroes_limits() -> None:
    plant = _plant()
    plant.bms.sleep_cmd = True
    run(plant, 1.1)
    assert not plant.bms.contactor_closed and not plant.bms.awake
    assert plant.bms.charge_current_limit_a == plant.bms.discharge_current_limit_a == 0.0


def test_balancing_bleeds_high_cells_and_narrows_the_spread() -> None:
    plant = _plant(bms={"balancing_current_a": 2.0}, battery={"soc_spread_pct": 3.0})
    spread0 = plant.bms.max_cell_soc_pct - plant.bms.min_cell_soc_pct
    plant.bms.balancing_cmd = True
    run(plant, 2.0)
    assert plant.bms.balancing_active and plant.bms.balancing_cells > 0
    run(plant, 3 * 3600.0, dt=1.0)
    spread = plant.bms.max_cell_soc_pct - plant.bms.min_cell_soc_pct
    # the highest cell is bled 2 A x 3 h = 6 Ah = 3 % of 200 Ah; the lowest is not
    assert spread0 - spread == pytest.approx(3.0, abs=0.15)


def test_alarm_bits_mirror_the_alarm_flags() -> None:
    plant = _plant(battery={"ambient_degc": -15.0, "initial_temperature_degc": -15.0})
    plant.bms.contactor_cmd = False
    run(plant, 0.1)
    bits = plant.bms.alarm_bits
    assert bits & (1 << ALARM_BITS.index("alarm_cell_ut"))
    assert bits & (1 << ALARM_BITS.index("alarm_contactor_open"))
    assert not bits & (1 << ALARM_BITS.index("alarm_cell_ot"))
    assert bits == sum(1 << i for i, n in enumerate(ALARM_BITS) if getattr(plant.bms, n))


def test_commercial_bms_reports_four_racks_and_capacity_weighted_soc() -> None:
    plant = start(Plant(quiet(PlantConfig.commercial())), 15_000.0)
    run(plant, 20.0)
    bms = plant.bms
    assert len(bms.racks) == 4
    cap = plant.battery._cap_mean
    weighted = sum(r.soc_pct * c for r, c in zip(bms.racks, cap)) / sum(cap)
    assert bms.soc_pct == pytest.approx(weighted)
    assert len({r.soc_pct for r in bms.racks}) == 4  # racks differ
    assert sum(r.current_a for r in bms.racks) == pytest.approx(bms.current_a)
    assert bms.charge_current_limit_a == pytest.approx(
        4 * min(r.charge_current_limit_a for r in bms.racks))
    for r in bms.racks:
        assert r.min_cell_v < r.max_cell_v and r.voltage_v == pytest.approx(bms.voltage_v)
    assert bms.voltage_v == pytest.approx(64 * 3.29, abs=3.0)
    assert bms.full_capacity_ah == pytest.approx(400.0)
