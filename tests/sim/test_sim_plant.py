"""Whole plant: energy balance, determinism, variables and resolvers, events, site signals."""

from __future__ import annotations

import math
import operator
import random

import pytest
from sim_helpers import balance_error, evolve, quiet, run, start

from sim import EventConfig, Plant, PlantConfig, PvConfig, SiteConfig, variables

_OUTAGE = (EventConfig(t_s=600.0, variable="grid.outage", value=1.0),
           EventConfig(t_s=900.0, variable="grid.outage", value=0.0))


def _drive(plant: Plant, seconds: float, seed: int, check: bool = True) -> list[tuple]:
    """Random setpoints every 10 s, reset faults; returns a trajectory sample."""
    rnd = random.Random(seed)
    inv, rated = plant.inverter, plant.config.inverter.rated_p_w
    trace = []
    start(plant)
    for k in range(int(seconds / 0.1)):
        if k % 100 == 0:
            inv.p_setpoint_w = rnd.uniform(-rated, rated)
            inv.q_setpoint_var = rnd.uniform(-0.3, 0.3) * rated
            inv.fault_reset_cmd = inv.state == "fault"
            plant.bms.contactor_cmd = plant.bms.contactor_closed or not plant.bms.trip_latched
        plant.step(0.1)
        if check:
            assert abs(balance_error(plant)) < 1e-6 * max(1.0, plant.load.power_w)
        trace.append((plant.meter.p_w, plant.battery.current_a, plant.bms.soc_pct,
                       plant.grid.frequency_hz, plant.pv.power_w, plant.load.power_w))
    return trace


@pytest.mark.parametrize("site, grid_forming", [
    ("home", False), ("home", True), ("commercial", False), ("commercial", True)])
def test_energy_balance_holds_every_step(site: str, grid_forming: bool) -> None:
    base = getattr(PlantConfig, site)(start_time_of_day_s=11 * 3600.0, events=_OUTAGE,
                                      pv=PvConfig(source="cloudy",
                                                  peak_power_w=6000.0 if site == "home"
                                                  else 40_000.0))
    plant = Plant(evolve(base, inverter={"grid_forming": grid_forming}))
    _drive(plant, 1200.0, seed=1)
    assert plant.meter.import_energy_wh > 0.0 and plant.meter.export_energy_wh > 0.0


def test_same_seed_and_commands_give_identical_trajectories() -> None:
    cfg = PlantConfig.home(seed=11, pv=PvConfig(source="cloudy"), start_time_of_day_s=36000.0)
    a = _drive(Plant(cfg), 300.0, seed=3, check=False)
    b = _drive(Plant(cfg), 300.0, seed=3, check=False)
    c = _drive(Plant(PlantConfig.home(seed=12, pv=PvConfig(source="cloudy"),
                                      start_time_of_day_s=36000.0)), 300.0, seed=3, check=False)
    assert a == b
    assert a != c


def test_variables_list_the_writable_commands_and_fault_inputs() -> None:
    infos = Plant(quiet()).variables()
    writable = {path for path, info in infos.items() if info.writable}
    assert writable == {
        "inverter.p_setpoint_w", "inverter.q_setpoint_var", "inverter.run_cmd",
        "inverter.fault_reset_cmd", "inverter.inject_fault", "inverter.comm_ok",
        "bms.contactor_cmd", "bms.sleep_cmd", "bms.balancing_cmd", "bms.comm_ok",
        "battery.heater_cmd", "battery.fan_cmd", "battery.ambient_degc", "battery.inject_heat_w",
        "battery.inject_cell_index", "battery.inject_cell_soc_offset_pct",
        "battery.inject_cell_capacity_fade_pct", "grid.outage", "grid.frequency_override_hz",
        "meter.comm_ok", "pv.override_w", "pv.limit_w", "load.override_w",
        "site.estop_pressed", "site.cpu_temp_degc", "site.humidity_pct"}
    assert infos["inverter.p_setpoint_w"].unit == "W"
    assert infos["bms.soc_pct"].unit == "%" and not infos["bms.soc_pct"].writable
    assert infos["bms.contactor_cmd"].type == "bool"


@pytest.mark.parametrize("site", ["home", "commercial"])
def test_every_listed_path_resolves_via_get_and_attrgetter(site: str) -> None:
    plant = Plant(quiet(getattr(PlantConfig, site)()))
    infos = plant.variables()
    assert infos == variables(plant.config)
    racks = plant.config.battery.n_racks
    assert f"bms.racks.{racks - 1}.soc_pct" in infos and f"bms.racks.{racks}.soc_pct" not in infos
    types = {"float": float, "bool": bool, "int": int, "str": str}
    for path, info in infos.items():
        value = plant.get(path)
        assert operator.attrgetter(path)(plant) == value or math.isnan(value), path
        assert isinstance(value, types[info.type]), (path, value)
        assert plant.getter(path)() == value or math.isnan(value)


def test_set_writes_commands_and_rejects_read_only_paths() -> None:
    plant = Plant(quiet())
    plant.set("inverter.p_setpoint_w", 1500.0)
    plant.setter("bms.balancing_cmd")(True)
    assert plant.inverter.p_setpoint_w == 1500.0 and plant.bms.balancing_cmd is True
    with pytest.raises(KeyError):
        plant.set("meter.p_w", 1.0)
    with pytest.raises(KeyError):
        plant.get("inverter.no_such_value")


def test_set_converts_values_to_the_variable_type() -> None:
    plant = Plant(quiet())
    plant.set("grid.outage", 1)
    plant.set("battery.inject_cell_index", 3.0)
    plant.set("battery.ambient_degc", 30)
    plant.set("bms.balancing_cmd", "on")
    assert plant.grid.outage is True and plant.bms.balancing_cmd is True
    assert plant.battery.inject_cell_index == 3 and isinstance(plant.battery.inject_cell_index, int)
    assert isinstance(plant.battery.ambient_degc, float)
    with pytest.raises(ValueError, match="battery.ambient_degc"):
        plant.set("battery.ambient_degc", "hot")


def test_scripted_events_fire_at_their_time_with_typed_values() -> None:
    events = (EventConfig(t_s=10.0, variable="grid.outage", value=True),
              EventConfig(t_s=10.0, variable="bms.balancing_cmd", value="on"),
              EventConfig(t_s=10.0, variable="battery.inject_cell_index", value=7.0),
              EventConfig(t_s=20.0, variable="battery.ambient_degc", value=40.0))
    plant = start(Plant(quiet(events=events)), 1000.0)
    run(plant, 10.0 - plant.t_s)
    assert plant.t_s == pytest.approx(10.0) and not plant.grid.outage
    run(plant, 0.1)
    assert plant.grid.outage is True and plant.meter.p_w == 0.0
    assert plant.bms.balancing_cmd is True
    assert plant.battery.inject_cell_index == 7 and isinstance(plant.battery.inject_cell_index, int)
    run(plant, 10.0)
    assert plant.battery.ambient_degc == 40.0


def test_events_setting_unknown_or_read_only_variables_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown variable 'grid.outtage'"):
        Plant(quiet(events=(EventConfig(t_s=1.0, variable="grid.outtage", value=1.0),)))
    with pytest.raises(ValueError, match="'meter.p_w' is not writable"):
        Plant(quiet(events=(EventConfig(t_s=1.0, variable="meter.p_w", value=1.0),)))


def test_hardwired_estop_opens_contactor_and_trips_inverter() -> None:
    plant = start(Plant(quiet(site=SiteConfig(estop_hardwired=True))), 2000.0)
    run(plant, 3.0)
    plant.site.estop_pressed = True
    run(plant, 0.2)
    assert not plant.bms.contactor_closed and plant.bms.trip_cause == "estop"
    assert plant.inverter.state == "fault" and plant.inverter.fault_code & 16
    plant.site.estop_pressed = False
    plant.bms.contactor_cmd = False
    run(plant, 0.1)
    plant.bms.contactor_cmd = True
    run(plant, 1.2)
    assert plant.bms.contactor_closed


def test_estop_that_is_not_hardwired_is_only_an_input() -> None:
    plant = start(Plant(quiet()), 2000.0)
    plant.site.estop_pressed = True
    run(plant, 3.0)
    assert plant.bms.contactor_closed and plant.inverter.state == "running"
    assert plant.get("site.estop_pressed") is True


def test_comm_flags_and_site_signals_are_plain_settable_values() -> None:
    plant = Plant(quiet())
    for path in ("bms.comm_ok", "inverter.comm_ok", "meter.comm_ok"):
        assert plant.get(path) is True
        plant.set(path, False)
        assert plant.get(path) is False
    plant.set("site.cpu_temp_degc", 85.0)
    plant.set("site.humidity_pct", 95.0)
    run(plant, 1.0)
    assert plant.site.cpu_temp_degc == 85.0 and plant.site.humidity_pct == 95.0


def test_time_of_day_starts_at_configured_time_and_wraps() -> None:
    plant = Plant(quiet(start_time_of_day_s=86000.0))
    run(plant, 500.0, dt=1.0)
    assert plant.t_s == pytest.approx(500.0)
    assert plant.time_of_day_s == pytest.approx(100.0)


def test_larger_steps_give_nearly_the_same_soc() -> None:
    fine = start(Plant(quiet()), 3000.0)
    coarse = start(Plant(quiet()), 3000.0, dt=1.0)
    run(fine, 600.0, dt=0.1)
    run(coarse, 600.0, dt=1.0)
    assert fine.battery.soc_pct == pytest.approx(coarse.battery.soc_pct, abs=0.05)
