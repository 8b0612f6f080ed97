"""Power-control modes. Each turns this scan's measurements into a battery power request."""

from programs.modes.base import Measurements, ModeBase
from programs.modes.energy import ChargeOnly, CostSaving
from programs.modes.setpoint import External, Local, Passive
from programs.modes.tracking import LoadMatching, PeakShaving, SelfConsumption

__all__ = ["ChargeOnly", "CostSaving", "External", "LoadMatching", "Local", "Measurements", "ModeBase",
           "Passive", "PeakShaving", "SelfConsumption"]
