"""PV, load and site signals (e-stop, controller CPU temperature, humidity).

PV and load read their precomputed series (``sim.profiles``) at the time
of day; a non-NaN ``override_w`` replaces the series, and ``pv.limit_w``
(NaN = none) is the PV inverters' curtailment setpoint. ``power_w`` is what
is actually produced/served after the plant has balanced the site (PV is
off and the load unserved during a dark outage; in backup the load is shed
and PV curtailed to what the battery inverter can carry).
"""

from __future__ import annotations

import math

from sim.config import LoadConfig, PvConfig, SiteConfig
from sim.profiles import Series
from sim.variables import Var

NAN = math.nan


class Pv:
    """PV generation, + = production."""

    VARS = (
        Var("power_w", "W", False, "float", "PV power delivered to the site bus"),
        Var("available_w", "W", False, "float", "PV power the sun offers (profile/override)"),
        Var("override_w", "W", True, "float", "force the available PV power (NaN = profile)"),
        Var("limit_w", "W", True, "float", "PV curtailment setpoint (NaN = no limit)"),
    )

    def __init__(self, cfg: PvConfig, series: Series) -> None:
        self.cfg = cfg
        self._series = series
        self.override_w = NAN
        self.limit_w = NAN
        self.available_w = 0.0
        self.power_w = 0.0

    def potential(self, tod_s: float) -> float:
        """Available power at time of day tod_s, after the curtailment limit."""
        p = self.override_w
        if p != p:
            p = self._series.at(tod_s)
        self.available_w = p
        lim = self.limit_w
        if lim == lim and p > lim:
            p = lim if lim > 0.0 else 0.0
        return p


class Load:
    """Site consumption, + = consumption."""

    VARS = (
        Var("power_w", "W", False, "float", "load actually served"),
        Var("demand_w", "W", False, "float", "load demanded (profile/override)"),
        Var("shed_w", "W", False, "float", "demand not served (outage, backup overload)"),
        Var("q_var", "var", False, "float", "reactive power served (inductive +)"),
        Var("override_w", "W", True, "float", "force the demand (NaN = profile)"),
    )

    def __init__(self, cfg: LoadConfig, series: Series) -> None:
        self.cfg = cfg
        self._series = series
        self._tan_phi = math.tan(math.acos(cfg.power_factor))
        self.override_w = NAN
        self.demand_w = 0.0
        self.power_w = 0.0

    def demand(self, tod_s: float) -> float:
        p = self.override_w
        if p != p:
            p = self._series.at(tod_s)
        self.demand_w = p
        return p

    @property
    def q_var(self) -> float:
        return self.power_w * self._tan_phi

    @property
    def shed_w(self) -> float:
        return self.demand_w - self.power_w


class Site:
    """Signals of the site that are inputs to the controller, not power flows."""

    VARS = (
        Var("estop_pressed", "", True, "bool", "fault: emergency stop pressed"),
        Var("cpu_temp_degc", "degC", True, "float", "controller CPU temperature"),
        Var("humidity_pct", "%", True, "float", "enclosure relative humidity"),
    )

    def __init__(self, cfg: SiteConfig) -> None:
        self.cfg = cfg
        self.estop_pressed = False
        self.cpu_temp_degc = cfg.cpu_temp_degc
        self.humidity_pct = cfg.humidity_pct
