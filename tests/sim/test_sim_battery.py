"""Battery physics: SOC integration, IR drop, cell spread, heat, injected cell faults."""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import evolve, quiet, run, start

from sim import Plant, PlantConfig


def test_charging_1_kwh_raises_soc_by_charge_times_coulombic_efficiency() -> None:
    plant = start(Plant(quiet()), -5000.0)
    soc0 = plant.bms.soc_pct
    energy_wh = charge_ah = 0.0
    while energy_wh < 1000.0:
        plant.step(0.1)
        energy_wh -= plant.battery.power_w * 0.1 / 3600.0
        charge_ah -= plant.battery.current_a * 0.1 / 3600.0
    plant.bms.contactor_cmd = False  # stop the current, then let the BMS scan
    run(plant, 2.0)
    rise = plant.bms.soc_pct - soc0
    assert rise == pytest.approx(0.995 * charge_ah / 200.0 * 100.0, abs=0.05)
    # 1 kWh at ~53 V is ~19 Ah = ~9.4 % of 200 Ah
    assert rise == pytest.approx(9.4, abs=0.4)


def test_coulombic_losses_leave_soc_lower_after_equal_ah_in_and_out() -> None:
    plant = start(Plant(quiet(evolve(PlantConfig.home(), battery={"coulombic_efficiency": 0.9}))))
    soc0 = plant.battery.soc_pct
    for p in (-3000.0, 3000.0):
        plant.inverter.p_setpoint_w = p
        moved = 0.0
        while moved < 20.0:  # 20 Ah each way
            plant.step(0.1)
            moved += abs(plant.battery.current_a) * 0.1 / 3600.0
    # in: +0.9*20 Ah = +9 %, out: -20 Ah = -10 %
    assert plant.battery.soc_pct - soc0 == pytest.approx(-1.0, abs=0.1)


def test_pack_voltage_drops_under_discharge_by_current_times_resistance() -> None:
    plant = start(Plant(quiet()), 5000.0)
    run(plant, 5.0)
    b = plant.battery
    r_pack = float(b.cell_resistance_ohm.sum()) + plant.config.battery.rack_resistance_ohm
    drop = b.ocv_v - b.voltage_v
    # rel 1e-4: the step solves V with the OCV at the start of the step
    assert drop == pytest.approx(b.current_a * r_pack, rel=1e-4)
    assert b.current_a == pytest.approx(5000.0 / 0.962 / 52.0, rel=0.08)  # ~100 A
    assert 0.8 < drop < 1.3  # ~100 A x ~10 mOhm
    assert plant.bms.voltage_v == b.voltage_v


def test_cell_spread_gives_min_below_mean_below_max() -> None:
    bms = Plant(quiet()).bms
    assert bms.min_cell_v < bms.mean_cell_v < bms.max_cell_v
    assert bms.min_cell_temp_degc < bms.mean_cell_temp_degc < bms.max_cell_temp_degc
    assert bms.min_cell_soc_pct < 50.0 < bms.max_cell_soc_pct
    assert bms.min_cell_v_rack == bms.max_cell_v_rack == 0
    assert 0 <= bms.min_cell_v_cell < 16 and 0 <= bms.max_cell_v_cell < 16
    assert bms.min_cell_v_cell != bms.max_cell_v_cell


def test_temperature_rises_under_sustained_current_and_falls_faster_with_fan() -> None:
    cfg = quiet(evolve(PlantConfig.home(), battery={"initial_soc_pct": 95.0}))
    plant = start(Plant(cfg), 5000.0)
    t0 = plant.battery.temperature_degc
    run(plant, 3600.0, dt=1.0)
    rise = plant.battery.temperature_degc - t0
    assert rise > 2.5  # ~100 W of I^2 R into 100 kJ/K for an hour
    assert plant.bms.max_cell_temp_degc > t0 + 2.5

    plant.inverter.p_setpoint_w = 0.0
    twin = Plant(cfg)
    twin.battery._temp[:] = plant.battery._temp  # same heat, no fan
    plant.battery.fan_cmd = True
    run(plant, 1800.0, dt=1.0)
    run(twin, 1800.0, dt=1.0)
    fallen_fan = t0 + rise - plant.battery.temperature_degc
    fallen_still = t0 + rise - twin.battery.temperature_degc
    assert fallen_fan > 0.4 * rise  # tau with fan ~ 2900 s
    assert fallen_fan > 3 * fallen_still


def test_heater_warms_a_cold_battery() -> None:
    cfg = quiet(evolve(PlantConfig.home(),
                       battery={"ambient_degc": -10.0, "initial_temperature_degc": -10.0}))
    plant = Plant(cfg)
    plant.battery.heater_cmd = True
    run(plant, 3600.0, dt=1.0)
    # 300 W into 100 kJ/K with 5 W/K losses: +10.3 K after an hour
    assert plant.battery.temperature_degc == pytest.approx(-10.0 + 10.3, abs=0.5)


def test_injected_soc_offset_makes_a_weak_cell_at_its_position() -> None:
    plant = Plant(quiet())
    plant.battery.inject_cell_index = 5
    plant.battery.inject_cell_soc_offset_pct = -20.0
    run(plant, 1.1)
    bms = plant.bms
    assert bms.min_cell_soc_pct == pytest.approx(30.0, abs=3.0)
    assert (bms.min_cell_v_rack, bms.min_cell_v_module, bms.min_cell_v_cell) == (0, 0, 5)
    assert bms.alarm_imbalance
    assert bms.discharge_current_limit_a == pytest.approx(150.0)
    plant.battery.inject_cell_soc_offset_pct = -45.0  # the weak cell at ~5 % now limits the pack
    run(plant, 1.0)
    assert bms.discharge_current_limit_a < 0.5 * 150.0


def test_injected_capacity_fade_makes_that_cell_charge_faster() -> None:
    plant = start(Plant(quiet()), -4000.0)
    plant.battery.inject_cell_index = 3
    plant.battery.inject_cell_capacity_fade_pct = 30.0
    run(plant, 1.0)
    before = plant.battery.cell_soc_pct.copy()
    run(plant, 600.0)
    rise = plant.battery.cell_soc_pct[0] - before[0]
    others = np.delete(rise, 3)
    assert rise[3] == pytest.approx(others.mean() / 0.7, rel=0.03)


def test_parallel_racks_share_current_and_sum_to_pack_current() -> None:
    plant = start(Plant(quiet(PlantConfig.commercial())), 20_000.0)
    run(plant, 10.0)
    racks = [r.current_a for r in plant.battery.racks]
    assert sum(racks) == pytest.approx(plant.battery.current_a, rel=1e-9)
    assert all(abs(i - plant.battery.current_a / 4) < 0.1 * plant.battery.current_a / 4
               for i in racks)
    assert len(set(racks)) == 4  # unequal racks share unequally
