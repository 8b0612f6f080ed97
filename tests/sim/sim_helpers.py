"""Helpers for the plant tests: quiet sites (no PV, constant load) and runners."""

from __future__ import annotations

from typing import Any

import attrs

from sim import LoadConfig, Plant, PlantConfig, PvConfig

DT = 0.1


def quiet(cfg: PlantConfig | None = None, load_w: float = 500.0, **overrides: Any) -> PlantConfig:
    """A site with no PV and a constant load, so the numbers are predictable."""
    cfg = cfg or PlantConfig.home()
    return attrs.evolve(cfg, pv=PvConfig(source="none"),
                        load=LoadConfig(source="constant", constant_w=load_w), **overrides)


def evolve(cfg: PlantConfig, **parts: dict[str, Any]) -> PlantConfig:
    """cfg with nested fields replaced: ``evolve(cfg, battery={"initial_soc_pct": 90})``."""
    return attrs.evolve(cfg, **{k: attrs.evolve(getattr(cfg, k), **v) for k, v in parts.items()})


def run(plant: Plant, seconds: float, dt: float = DT) -> None:
    for _ in range(int(round(seconds / dt))):
        plant.step(dt)


def start(plant: Plant, p_w: float = 0.0, dt: float = DT) -> Plant:
    """Command run, step until the inverter is running, then set P."""
    plant.inverter.run_cmd = True
    for _ in range(1000):
        if plant.inverter.state == "running":
            break
        plant.step(dt)
    assert plant.inverter.state == "running"
    plant.inverter.p_setpoint_w = p_w
    return plant


def balance_error(plant: Plant) -> float:
    """load - pv - inverter - meter; 0 when the site balances."""
    return (plant.load.power_w - plant.pv.power_w - plant.inverter.p_ac_w
            - plant.meter.p_w)
