"""One recorded scenario run, importable by the worker processes of the control tests."""

from __future__ import annotations

from pathlib import Path

from ems.scenario import load_scenario
from ems.simulate import Summary, simulate

ROOT = Path(__file__).resolve().parents[2]
HOME = str(ROOT / "io_maps" / "sim_home.toml")


def simulate_scenario(name: str, rate_hz: float | None, out_dir: str) -> Summary:
    """scenarios/<name>.toml on its site (the default site unless it names one), rows kept."""
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    io_map = str(ROOT / scenario.info.io_map) if scenario.info.io_map else HOME
    hours = scenario.info.hours or 24.0
    rate = rate_hz or scenario.info.sample_rate_hz or 1.0
    out = Path(out_dir) / f"{name}-{hours}-{rate}.csv"
    return simulate(io_map, hours, str(out), scenario, sample_rate_hz=rate, keep_rows=True)
