"""`ems simulate-devices` for the site of a cluster: several battery units behind one meter.

An io_map whose `[[cluster.nodes]]` list `devices` describes such a site (io_maps/sim_cluster/
plant.toml): each node's devices (its inverter, its BMS) are bound to that node's battery unit,
every other device (the site meter) to the site (sim/cluster.py). The units start from the
node's `plant` table, the shared PV, load and grid from `[cluster.plant]` (both with the keys of
`[devices.sim]`). An extension of ems/devsim/runner.py through its `plant_for` hook.
"""

from __future__ import annotations

from typing import Any

from ems.devsim.runner import DeviceSimulation
from runtime.cluster.config import plant_config
from runtime.config.schema import IoMap
from runtime.config.structure import ConfigError, ConfigErrors, Errors
from sim.cluster import ClusterPlant


def is_cluster_site(io_map: IoMap) -> bool:
    return any(node.devices for node in io_map.cluster.nodes)


def cluster_plant(io_map: IoMap, preset: str, seed: int) -> ClusterPlant:
    errors = Errors()
    cluster = io_map.cluster
    preset = cluster.plant.get("preset", preset)
    site = plant_config({"seed": seed, **cluster.plant}, ("cluster", "plant"), errors, preset)
    nodes = {node.id: plant_config({"seed": seed + k + 1, **node.plant}, ("cluster", "nodes", k, "plant"), errors,
                                   preset) for k, node in enumerate(cluster.nodes)}
    if errors:
        raise ConfigErrors([ConfigError(e.path, e.message, io_map.path) for e in errors.items])
    return ClusterPlant(site, nodes)


class ClusterDeviceSimulation(DeviceSimulation):
    """The devices of a cluster's site, each bound to its own unit's plant."""

    plant: ClusterPlant

    def __init__(self, io_map: IoMap, preset: str = "home", seed: int = 0, step_s: float = 0.05):
        super().__init__(io_map, preset=preset, seed=seed, step_s=step_s)
        self.plant = cluster_plant(io_map, preset, seed)
        self.owner = {device: node.id for node in io_map.cluster.nodes for device in node.devices}

    def plant_for(self, device: str) -> Any:
        node = self.owner.get(device)
        return self.plant.nodes[node] if node is not None else self.plant

    def describe(self) -> list[str]:
        units = ", ".join(f"{node}: {', '.join(d for d, n in self.owner.items() if n == node)}"
                          for node in self.plant.nodes)
        return super().describe() + [f"site meter sees every unit ({units})"]


def simulation_for(io_map: IoMap, preset: str = "home", seed: int = 0) -> DeviceSimulation:
    """The simulation for an io_map: a cluster's site when its nodes list devices, else one plant."""
    if is_cluster_site(io_map):
        return ClusterDeviceSimulation(io_map, preset=preset, seed=seed)
    return DeviceSimulation(io_map, preset=preset, seed=seed)
