"""Shared set-up for benchmarks: the repository on sys.path and the default site built on a clock."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runtime.clock import Clock
from runtime.config.io_map import load_io_map
from runtime.site import Site, build_site

DEFAULT_IO_MAP = ROOT / "io_maps" / "sim_home.toml"


def default_site(clock: Clock, io_map: Path = DEFAULT_IO_MAP, period_s: float | None = None) -> Site:
    """The default site without its network mirrors (benchmarks measure the scan, not the server)."""
    logging.basicConfig(level=logging.WARNING)
    cfg = load_io_map(io_map)
    site_cfg = attrs.evolve(cfg.site, scan_period_s=period_s) if period_s is not None else cfg.site
    cfg = attrs.evolve(cfg, site=site_cfg, modbus_server=attrs.evolve(cfg.modbus_server, enabled=False))
    return build_site(cfg, clock)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]
