"""Benchmark of ``Plant.step`` alone (no controller) for the home and commercial sites.

Runs each plant with the inverter running and a setpoint that changes every
10 simulated seconds (so the ramp, lag and current limits stay busy), at the
controller's 100 ms period, and prints microseconds per step (best of
``--repeat`` runs, sites interleaved) and simulated seconds per wall-clock
second. Baseline measured in the same run: the same loop calling a no-op
``step``, i.e. the floor of any plant. Budgets: home <= 25 us, commercial
<= 60 us; exit status 1 when one is missed.

    .venv/bin/python bench/plant_step.py [--sim-hours H] [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim import Plant, PlantConfig

DT_S = 0.1
BUDGET_US = {"home": 25.0, "commercial": 60.0}


def running_plant(cfg: PlantConfig) -> Plant:
    plant = Plant(cfg)
    plant.inverter.run_cmd = True
    while plant.inverter.state != "running":
        plant.step(DT_S)
    return plant


class _NoOpPlant:
    """Baseline: what the benchmark loop costs around a plant that does nothing."""

    def __init__(self) -> None:
        self.inverter = self
        self.p_setpoint_w = 0.0

    def step(self, dt_s: float) -> None:
        pass


def measure(cfg: PlantConfig | None, sim_s: float) -> float:
    """Wall seconds per step over ``sim_s`` simulated seconds (cfg None: baseline)."""
    plant = running_plant(cfg) if cfg is not None else _NoOpPlant()
    rated = cfg.inverter.rated_p_w if cfg is not None else 1.0
    pattern = [0.6 * rated, -0.5 * rated, 0.2 * rated, -0.8 * rated, 0.0, 0.9 * rated]
    steps_per_chunk = int(round(10.0 / DT_S))
    chunks = int(sim_s / 10.0)
    step = plant.step
    gc.collect()
    t0 = time.perf_counter()
    for c in range(chunks):
        plant.inverter.p_setpoint_w = pattern[c % len(pattern)]
        for _ in range(steps_per_chunk):
            step(DT_S)
    wall = time.perf_counter() - t0
    return wall / (chunks * steps_per_chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-hours", type=float, default=2.0,
                        help="simulated time per site (default 2 h)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per site, best counts")
    args = parser.parse_args()
    sim_s = args.sim_hours * 3600.0
    sites: dict[str, PlantConfig | None] = {
        "baseline": None, "home": PlantConfig.home(), "commercial": PlantConfig.commercial()}
    best = {name: float("inf") for name in sites}
    for _ in range(args.repeat):
        for name, cfg in sites.items():
            best[name] = min(best[name], measure(cfg, sim_s))
    print(f"plant step at dt = {DT_S} s, {args.sim_hours:g} h simulated per run, "
          f"best of {args.repeat}")
    failed = False
    for name, seconds in best.items():
        us = seconds * 1e6
        line = f"{name:<10} {us:7.2f} us/step {DT_S / seconds:10.0f} sim-s/wall-s"
        if name in BUDGET_US:
            ok = us <= BUDGET_US[name]
            failed |= not ok
            line += (f"  budget {BUDGET_US[name]:.0f} us: {'ok' if ok else 'OVER'}"
                     f"  ({us / (best['baseline'] * 1e6):.0f}x baseline)")
        else:
            line += "  (no-op step: loop overhead)"
        print(line)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
