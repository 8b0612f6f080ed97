"""Every shipped site whose programs drive field devices (Modbus, CAN) asks for real-time priority:
at normal priority the scan's wake-up jitter under Modbus load is ten times larger."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIELD_DRIVERS = ("modbus", "can")


def controller_sites_on_field_drivers() -> list[Path]:
    sites = []
    for path in sorted((ROOT / "io_maps").rglob("*.toml")):
        data = tomllib.loads(path.read_text())
        if "site" not in data or data.get("cluster", {}).get("plant"):  # a device profile or a plant
            continue
        devices = data.get("devices", [])
        if any(str(d.get("driver", "")).startswith(FIELD_DRIVERS) for d in devices if isinstance(d, dict)):
            sites.append(path)
    return sites


def test_every_site_on_field_drivers_sets_realtime_priority():
    sites = controller_sites_on_field_drivers()
    assert len(sites) >= 2
    missing = [str(p.relative_to(ROOT)) for p in sites if "realtime_priority" not in tomllib.loads(p.read_text())["site"]]
    assert missing == []
