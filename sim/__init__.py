"""Plant simulator of a battery energy storage site (battery, BMS, inverter,
grid/meter, PV, load). Knows nothing of the controller; see ``sim.plant``."""

from sim.config import (
                        BatteryConfig,
                        BmsConfig,
                        EventConfig,
                        GridConfig,
                        InverterConfig,
                        LoadConfig,
                        PlantConfig,
                        PvConfig,
                        SiteConfig,
)
from sim.plant import Plant, variables
from sim.profiles import ProfileError
from sim.variables import VariableInfo

__all__ = [
    "BatteryConfig", "BmsConfig", "EventConfig", "GridConfig", "InverterConfig",
    "LoadConfig", "Plant", "PlantConfig", "ProfileError", "PvConfig", "SiteConfig",
    "VariableInfo", "variables",
]
