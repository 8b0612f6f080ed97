"""The plant of a cluster's site (sim/cluster.py): one meter sees the shared load and every unit."""

from __future__ import annotations

import pytest

from sim import BatteryConfig, LoadConfig, PlantConfig, PvConfig
from sim.cluster import ClusterPlant

SITE = PlantConfig(load=LoadConfig(source="constant", constant_w=6000.0), pv=PvConfig(source="none"))


def unit(soc: float) -> PlantConfig:
    return PlantConfig(battery=BatteryConfig(cell_capacity_ah=20.0, initial_soc_pct=soc))


@pytest.fixture
def plant() -> ClusterPlant:
    return ClusterPlant(SITE, {"node1": unit(70.0), "node2": unit(50.0), "node3": unit(30.0)})


def run(plant: ClusterPlant, seconds: float, setpoints: dict[str, float]) -> None:
    for node, p in setpoints.items():
        plant.set(f"{node}.bms.contactor_cmd", True)
        plant.set(f"{node}.inverter.run_cmd", True)
        plant.set(f"{node}.inverter.p_setpoint_w", p)
    for _ in range(int(seconds / 0.05)):
        plant.step(0.05)


def test_the_site_meter_reads_the_load_less_every_unit(plant: ClusterPlant) -> None:
    run(plant, 1.0, {})
    assert plant.get("meter.p_w") == pytest.approx(6000.0, abs=1.0)  # nothing runs yet: all from the grid
    run(plant, 10.0, {"node1": 3000.0, "node2": 2000.0, "node3": 1000.0})
    units = sum(plant.get(f"{n}.inverter.p_ac_w") for n in ("node1", "node2", "node3"))
    assert units == pytest.approx(6000.0, abs=60.0)
    assert plant.get("meter.p_w") == pytest.approx(6000.0 - units, abs=1.0)


def test_each_unit_is_a_battery_of_its_own(plant: ClusterPlant) -> None:
    run(plant, 10.0, {"node1": 4000.0, "node2": 0.0, "node3": -2000.0})
    socs = [plant.get(f"{n}.bms.soc_pct") for n in ("node1", "node2", "node3")]
    assert socs[0] < 70.0 and socs[1] == pytest.approx(50.0, abs=0.05) and socs[2] > 30.0


def test_a_unit_has_no_load_or_pv_of_its_own(plant: ClusterPlant) -> None:
    run(plant, 1.0, {})
    assert plant.nodes["node1"].load.power_w == 0.0 and plant.nodes["node1"].pv.power_w == 0.0
    assert plant.get("load.power_w") == 6000.0


def test_every_variable_is_a_path_of_the_site_the_meter_or_a_unit(plant: ClusterPlant) -> None:
    names = plant.variables()
    wanted = {"meter.p_w", "meter.comm_ok", "load.override_w", "node2.bms.soc_pct", "node3.inverter.run_cmd"}
    assert wanted <= set(names)
    plant.set("meter.comm_ok", False)
    assert plant.get("meter.comm_ok") is False
    with pytest.raises(KeyError):
        plant.setter("meter.p_w")  # a reading, not a command


def test_a_node_name_may_not_shadow_a_plant_path() -> None:
    with pytest.raises(ValueError, match="clashes"):
        ClusterPlant(SITE, {"meter": unit(50.0)})
