"""Checks of the `[cluster]` section that need more than its own record: the devices a plant
file gives each node, and the plant tables (`[cluster.plant]`, each node's `plant`), which
take the keys of `[devices.sim]` (a preset plus overrides of sim/config.py's records)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.config.lines import Path
from runtime.config.schema import ClusterConfig
from runtime.config.structure import Errors


def plant_config(data: dict[str, Any], path: Path, errors: Errors, preset: str = "home") -> Any:
    """A PlantConfig from a plant table (MISSING after recording the errors)."""
    from runtime.io.sim_driver import parse_options

    return parse_options({"preset": preset, **data}, path, errors)


def check(cfg: ClusterConfig, devices: Iterable[str], errors: Errors) -> None:
    """Every node's devices exist and belong to one node only; the plant tables parse."""
    known = set(devices)
    owner: dict[str, str] = {}
    preset = cfg.plant.get("preset", "home")
    if cfg.plant:
        plant_config(cfg.plant, ("cluster", "plant"), errors)
    for i, node in enumerate(cfg.nodes):
        path: Path = ("cluster", "nodes", i)
        for device in node.devices:
            if device not in known:
                errors.add(path + ("devices",), f"no device named {device!r} in this file")
            elif device in owner:
                errors.add(path + ("devices",), f"device {device!r} already belongs to node {owner[device]!r}")
            else:
                owner[device] = node.id
        if node.plant:
            plant_config(node.plant, path + ("plant",), errors, preset if isinstance(preset, str) else "home")
