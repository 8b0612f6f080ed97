"""Where the shipped files are: the one place that knows the repository's layout.

Site files, device profiles and DBC files ship under `io_maps/` beside the packages (the
project is installed in place, `pip install -e .`); a relative path in an io_map that does
not exist from the working directory is looked up there.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IO_MAPS_DIR = ROOT / "io_maps"
PROFILE_DIR = IO_MAPS_DIR / "devices"  # Modbus device profiles (TOML)
DBC_DIR = IO_MAPS_DIR / "dbc"  # CAN BMS databases
DEFAULT_IO_MAP = "io_maps/sim_home.toml"  # the embedded default site, relative to the working directory


def shipped(path: str | Path) -> Path:
    """`path` as given when it exists there (or is absolute); else the shipped file of that name
    under the repository (`io_maps/sim_home.toml` from any directory); else as given."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    beside = ROOT / given
    return beside if beside.exists() else given
