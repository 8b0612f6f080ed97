"""Inverter: states, ramp, ratings with Q, efficiency, trips and derating."""

from __future__ import annotations

import math

import pytest
from sim_helpers import evolve, quiet, run, start

from sim import Plant, PlantConfig


def _plant(**inverter: object) -> Plant:
    return Plant(quiet(evolve(PlantConfig.home(), inverter=inverter)))


def test_goes_standby_ready_running_and_back_to_ready() -> None:
    plant = _plant()
    assert plant.inverter.state == "standby"
    run(plant, 1.9)
    assert plant.inverter.state == "standby"
    run(plant, 0.2)
    assert plant.inverter.state == "ready"  # after ready_delay_s = 2 s with DC and grid
    plant.inverter.run_cmd = True
    run(plant, 0.9)
    assert plant.inverter.state == "ready"
    run(plant, 0.2)
    assert plant.inverter.state == "running"  # after start_delay_s = 1 s
    assert plant.inverter.state_code == 2
    plant.inverter.run_cmd = False
    run(plant, 0.1)
    assert plant.inverter.state == "ready" and plant.inverter.p_ac_w == 0.0


def test_stays_standby_while_the_contactor_is_open() -> None:
    plant = _plant()
    plant.bms.contactor_cmd = False
    plant.inverter.run_cmd = True
    run(plant, 10.0)
    assert plant.inverter.state == "standby"
    assert plant.inverter.p_dc_w == 0.0 and plant.inverter.dc_voltage_v == 0.0


def test_ramps_at_the_configured_rate() -> None:
    plant = start(_plant(), 5000.0)
    run(plant, 1.0)
    p1 = plant.inverter.p_ac_w
    run(plant, 1.0)
    p2 = plant.inverter.p_ac_w
    assert p2 - p1 == pytest.approx(2500.0, rel=0.01)  # ramp_w_per_s
    run(plant, 2.0)
    assert plant.inverter.p_ac_w == pytest.approx(5000.0, rel=1e-3)


def test_first_order_lag_follows_a_small_step() -> None:
    plant = start(_plant(ramp_w_per_s=1e9, response_tau_s=0.5), 1000.0)
    run(plant, 0.5)
    assert plant.inverter.p_ac_w == pytest.approx(1000.0 * (1 - math.exp(-1.0)), rel=0.01)


def test_active_power_is_clamped_to_rating() -> None:
    plant = start(_plant(), 8000.0)
    run(plant, 5.0)
    assert plant.inverter.p_ac_w == pytest.approx(5000.0, rel=1e-6)
    plant.inverter.p_setpoint_w = -8000.0
    run(plant, 10.0)
    assert plant.inverter.p_ac_w == pytest.approx(-5000.0, rel=1e-6)


def test_p_priority_cuts_q_to_respect_kva() -> None:
    plant = start(_plant(), 4000.0)
    plant.inverter.q_setpoint_var = 4000.0
    run(plant, 5.0)
    assert plant.inverter.p_ac_w == pytest.approx(4000.0, rel=1e-4)
    assert plant.inverter.q_ac_var == pytest.approx(3000.0, rel=1e-4)
    assert plant.inverter.s_ac_va == pytest.approx(5000.0, rel=1e-4)


def test_q_priority_cuts_p_to_respect_kva() -> None:
    plant = start(_plant(q_priority=True), 4000.0)
    plant.inverter.q_setpoint_var = -4000.0
    run(plant, 5.0)
    assert plant.inverter.p_ac_w == pytest.approx(3000.0, rel=1e-4)
    assert plant.inverter.q_ac_var == pytest.approx(-4000.0, rel=1e-4)


def test_efficiency_curve_sets_dc_power_on_discharge_and_charge() -> None:
    plant = start(_plant(), 2500.0)
    run(plant, 5.0)
    assert plant.inverter.p_dc_w == pytest.approx(2500.0 / 0.970 + 15.0, rel=1e-3)
    assert plant.battery.power_w == pytest.approx(plant.inverter.p_dc_w, rel=1e-9)
    plant.inverter.p_setpoint_w = -2500.0
    run(plant, 5.0)
    assert plant.inverter.p_dc_w == pytest.approx(-2500.0 * 0.970 + 15.0, rel=1e-3)
    assert plant.inverter.efficiency_pct == pytest.approx(100 * 2410.0 / 2500.0, abs=0.2)


def test_injected_fault_trips_and_reset_returns_to_standby_only_when_cleared() -> None:
    plant = start(_plant(), 3000.0)
    run(plant, 3.0)
    plant.inverter.inject_fault = True
    run(plant, 0.1)
    inv = plant.inverter
    assert inv.state == "fault" and inv.fault_code & 1 and inv.p_ac_w == 0.0
    inv.fault_reset_cmd = True
    run(plant, 1.0)
    assert inv.state == "fault"  # cause still active
    inv.inject_fault = False
    run(plant, 0.1)
    assert inv.state == "standby" and inv.fault_code == 0


def test_contactor_opening_under_load_faults_the_inverter_dc_lost() -> None:
    plant = start(_plant(), 3000.0)
    run(plant, 2.0)
    plant.bms.contactor_cmd = False
    run(plant, 0.2)
    assert plant.inverter.state == "fault" and plant.inverter.fault_code == 4
    assert plant.inverter.p_ac_w == 0.0 and plant.battery.current_a == 0.0


def test_hot_heatsink_derates_then_trips() -> None:
    plant = start(_plant(), 5000.0)
    run(plant, 3.0)
    plant.inverter.temperature_degc = 77.5  # halfway between derate 70 and trip 85
    run(plant, 3.0)
    assert plant.inverter.p_max_w == pytest.approx(2500.0, rel=0.02)
    assert plant.inverter.p_ac_w == pytest.approx(plant.inverter.p_max_w, rel=0.02)
    plant.inverter.temperature_degc = 90.0
    run(plant, 1.1)
    assert plant.inverter.state == "fault" and plant.inverter.fault_code & 8


def test_losses_heat_the_inverter() -> None:
    plant = start(_plant(), 5000.0)
    run(plant, 1800.0, dt=1.0)
    # ~205 W of losses with 8 W/K cooling and 1000 s time constant: ~+22 K
    assert plant.inverter.temperature_degc == pytest.approx(25.0 + 22.0, abs=3.0)


def test_phase_currents_and_voltages_match_apparent_power() -> None:
    plant = start(_plant(), 3000.0)
    plant.inverter.q_setpoint_var = 1000.0
    run(plant, 5.0)
    inv = plant.inverter
    volts = [inv.v_l1_v, inv.v_l2_v, inv.v_l3_v]
    amps = [inv.i_l1_a, inv.i_l2_a, inv.i_l3_a]
    assert all(abs(v - 230.0) < 10.0 for v in volts)
    assert sum(v * i for v, i in zip(volts, amps)) == pytest.approx(inv.s_ac_va, rel=1e-9)
    assert inv.s_ac_va == pytest.approx(math.hypot(3000.0, 1000.0), rel=1e-3)
    assert inv.dc_voltage_v == plant.battery.voltage_v
    assert inv.dc_current_a == plant.battery.current_a
