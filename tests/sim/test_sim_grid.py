"""Grid: outage and backup, frequency noise/override/events/CSV, meter readings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import balance_error, evolve, quiet, run, start

from sim import EventConfig, GridConfig, Plant, PlantConfig, PvConfig
from sim.grid import Grid


def _plant(load_w: float = 500.0, pv_w: float = 0.0, grid_forming: bool = False, **kw: object
           ) -> Plant:
    cfg = quiet(evolve(PlantConfig.home(), inverter={"grid_forming": grid_forming}),
                load_w=load_w, **kw)
    if pv_w:
        cfg = evolve(cfg, pv={"source": "constant", "constant_w": pv_w})
    return Plant(cfg)


def test_outage_trips_a_grid_following_inverter_and_darkens_the_site() -> None:
    plant = start(_plant(load_w=1500.0, pv_w=2000.0), 2000.0)
    run(plant, 5.0)
    plant.grid.outage = True
    run(plant, 0.1)
    inv, meter = plant.inverter, plant.meter
    assert inv.state == "fault" and inv.fault_code == 2  # grid lost
    assert inv.p_ac_w == meter.p_w == plant.pv.power_w == plant.load.power_w == 0.0
    assert plant.load.shed_w == 1500.0
    assert meter.frequency_hz == meter.v_l1_v == plant.grid.frequency_hz == 0.0
    plant.grid.outage = False
    run(plant, 5.0)
    assert inv.state == "fault"  # latched until reset
    inv.fault_reset_cmd = True
    run(plant, 0.1)
    assert inv.state == "standby"


def test_grid_forming_inverter_supplies_the_load_in_an_outage() -> None:
    plant = start(_plant(load_w=2000.0, grid_forming=True), -1000.0)
    run(plant, 5.0)
    plant.grid.outage = True
    run(plant, 0.1)
    inv = plant.inverter
    assert inv.state == "running" and inv.island
    assert inv.p_ac_w == pytest.approx(2000.0)
    assert plant.meter.p_w == 0.0 and plant.load.power_w == 2000.0
    assert inv.q_ac_var == pytest.approx(plant.load.q_var) and plant.meter.q_var == 0.0
    assert plant.meter.frequency_hz == 50.0 and plant.meter.v_l2_v == 230.0
    assert plant.battery.current_a > 0.0
    plant.grid.outage = False
    run(plant, 10.0)
    assert not inv.island and inv.p_ac_w == pytest.approx(-1000.0, rel=1e-3)


def test_backup_sheds_load_beyond_the_inverter_rating() -> None:
    plant = start(_plant(load_w=8000.0, pv_w=1000.0, grid_forming=True))
    plant.grid.outage = True
    run(plant, 1.0)
    assert plant.inverter.p_ac_w == pytest.approx(5000.0)
    assert plant.load.power_w == pytest.approx(6000.0) and plant.load.shed_w == 2000.0
    assert balance_error(plant) == pytest.approx(0.0, abs=1e-9)


def test_backup_curtails_pv_the_battery_cannot_absorb() -> None:
    plant = start(_plant(load_w=500.0, pv_w=7000.0, grid_forming=True))
    plant.grid.outage = True
    run(plant, 1.0)
    assert plant.inverter.p_ac_w == pytest.approx(-5000.0)
    assert plant.pv.power_w == pytest.approx(5500.0) and plant.pv.available_w == 7000.0


def test_backup_respects_the_bms_discharge_limit() -> None:
    cfg = evolve(PlantConfig.home(), battery={"initial_soc_pct": 6.0, "soc_spread_pct": 0.0},
                 inverter={"grid_forming": True})
    plant = start(Plant(quiet(cfg, load_w=4000.0)))
    plant.grid.outage = True
    run(plant, 1.0)
    dcl_a = plant.bms.discharge_current_limit_a
    assert 0.0 < dcl_a < 100.0  # tapered at 6 % SOC
    # the limit is applied with the voltage of the previous step: within the IR sag (~1 %)
    assert plant.battery.current_a == pytest.approx(dcl_a, rel=0.02)
    assert 0.0 < plant.inverter.p_ac_w < 4000.0 and plant.load.shed_w > 0.0


def test_frequency_noise_stays_near_nominal_with_configured_sigma() -> None:
    cfg = GridConfig(frequency_sigma_hz=0.02, frequency_tau_s=30.0)
    f = Grid(cfg, 172_800, np.random.default_rng(7))._freq.array()
    assert f.mean() == pytest.approx(50.0, abs=0.003)
    assert f.std() == pytest.approx(0.02, rel=0.1)
    assert np.abs(f - 50.0).max() < 0.12
    x = f - f.mean()
    lag30 = float((x[:-30] * x[30:]).mean() / x.var())
    assert lag30 == pytest.approx(math.exp(-1.0), abs=0.08)  # tau = 30 s


def test_frequency_override_replaces_the_source_and_nan_restores_it() -> None:
    plant = _plant()
    plant.set("grid.frequency_override_hz", 49.5)
    run(plant, 0.1)
    assert plant.grid.frequency_hz == 49.5
    assert plant.meter.frequency_hz == plant.inverter.frequency_hz == 49.5
    plant.grid.frequency_override_hz = math.nan
    run(plant, 0.1)
    assert abs(plant.grid.frequency_hz - 50.0) < 0.1 and plant.grid.frequency_hz != 49.5


def test_frequency_step_ramp_and_release_events() -> None:
    events = (EventConfig(t_s=10.0, kind="frequency_step", value=49.8),
              EventConfig(t_s=20.0, kind="frequency_ramp", value=50.2, rate_hz_per_s=0.1),
              EventConfig(t_s=30.0, kind="frequency_release"))
    plant = Plant(quiet(events=events))
    run(plant, 10.0)
    assert plant.grid.frequency_hz != 49.8
    run(plant, 0.1)
    assert plant.grid.frequency_hz == 49.8
    run(plant, 11.9)  # t = 22.0: 2.0 s into the ramp
    assert plant.grid.frequency_hz == pytest.approx(50.0, abs=1e-9)
    assert plant.grid.frequency_ramp_active
    run(plant, 4.0)  # t = 26.0: ramp done at 24 s
    assert plant.grid.frequency_hz == pytest.approx(50.2) and not plant.grid.frequency_ramp_active
    run(plant, 4.1)  # t = 30.1
    assert math.isnan(plant.grid.frequency_override_hz)
    assert abs(plant.grid.frequency_hz - 50.0) < 0.1


def test_frequency_csv_is_interpolated_in_elapsed_time(tmp_path: Path) -> None:
    path = tmp_path / "freq.csv"
    path.write_text("t_s,frequency_hz\n0,50.0\n10,49.5\n20,49.5\n")
    plant = Plant(quiet(grid=GridConfig(frequency_source="csv", frequency_csv_path=str(path),
                                        frequency_csv_end="hold")))
    run(plant, 5.0)
    assert plant.grid.frequency_hz == pytest.approx(49.75)
    run(plant, 100.0)
    assert plant.grid.frequency_hz == pytest.approx(49.5)


def test_meter_counts_import_and_export_energy() -> None:
    plant = start(_plant(load_w=1000.0))
    i0 = plant.meter.import_energy_wh
    run(plant, 360.0)
    assert plant.meter.import_energy_wh - i0 == pytest.approx(100.0, rel=1e-6)
    assert plant.meter.export_energy_wh == 0.0
    plant.inverter.p_setpoint_w = 3000.0
    run(plant, 2.5)  # ramp 0 -> 3000 W and lag settle
    e0 = plant.meter.export_energy_wh
    run(plant, 360.0)
    assert plant.meter.export_energy_wh - e0 == pytest.approx(200.0, rel=1e-4)


def test_meter_reactive_power_and_phase_values_follow_the_load_and_inverter() -> None:
    plant = start(_plant(load_w=1000.0))
    plant.inverter.q_setpoint_var = 200.0
    run(plant, 3.0)
    meter = plant.meter
    assert plant.load.q_var == pytest.approx(1000.0 * math.tan(math.acos(0.95)))
    assert meter.q_var == pytest.approx(328.68 - 200.0, abs=0.1)
    assert meter.p_l1_w * 3 == pytest.approx(meter.p_w)
    volts = [meter.v_l1_v, meter.v_l2_v, meter.v_l3_v]
    assert len(set(volts)) == 3 and all(abs(v - 230.0) < 10.0 for v in volts)
    amps = [meter.i_l1_a, meter.i_l2_a, meter.i_l3_a]
    assert sum(v * i for v, i in zip(volts, amps)) == pytest.approx(meter.s_va)
    assert 0.9 < meter.pf <= 1.0


def test_pv_limit_curtails_pv() -> None:
    plant = _plant(pv_w=4000.0)
    plant.pv.limit_w = 1500.0
    run(plant, 0.1)
    assert plant.pv.power_w == 1500.0 and plant.pv.available_w == 4000.0
    plant.pv.limit_w = math.nan
    run(plant, 0.1)
    assert plant.pv.power_w == 4000.0


def test_pv_and_load_overrides_replace_the_profiles() -> None:
    plant = Plant(PlantConfig.home(pv=PvConfig(source="cloudy")))
    plant.pv.override_w = 1234.0
    plant.load.override_w = 4321.0
    run(plant, 0.1)
    assert plant.pv.power_w == 1234.0 and plant.load.power_w == 4321.0
    assert plant.meter.p_w == pytest.approx(4321.0 - 1234.0)
