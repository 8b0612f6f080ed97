"""Modes that move energy in time: charge only (to a SOC in a window) and cost saving (tariffs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plc.program import TagLookup
from programs.modes.base import Measurements, ModeBase, in_window, soc_taper
from programs.modes.tracking import NetLoadTracker

if TYPE_CHECKING:
    from programs.site_control import Params

TAPER_BAND_PCT = 2.0


class ChargeOnly(ModeBase):
    """Charge toward a SOC target at a limited rate inside a time window; never discharge."""

    may_discharge = False

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.target = tags["charge_target_soc_pct"]
        self.power = tags["charge_power_w"]
        self.start_min = tags["charge_window_start_min"]
        self.end_min = tags["charge_window_end_min"]

    def request(self, m: Measurements) -> float:
        if not in_window(m.day_s, self.start_min.value * 60.0, self.end_min.value * 60.0):
            return 0.0
        return -self.power.value * soc_taper(m.soc_pct, self.target.value, TAPER_BAND_PCT)


class CostSaving(ModeBase):
    """Charge from the grid in cheap hours, cover the load in expensive ones, else store PV surplus.

    Prices come from a time-of-use table (local time); `cost_cheap_price` and
    `cost_expensive_price` are the thresholds (writable tags).
    """

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.tariff = sorted((_minutes(t.start) * 60.0, t.price) for t in params.tariff)
        self.cheap = tags["cost_cheap_price"]
        self.expensive = tags["cost_expensive_price"]
        self.charge_power = tags["cost_charge_power_w"]
        self.charge_soc = tags["cost_charge_soc_pct"]
        self.price_tag = tags["price_now"]
        self.tracker = NetLoadTracker(params.net_load_tau_s, params.trim_kp, params.trim_ki,
                                      params.trim_limit_w, params.zero_band_w)

    def price(self, day_s: float) -> float:
        price = self.tariff[-1][1] if self.tariff else 0.0  # before the first entry: yesterday's last
        for start_s, value in self.tariff:
            if day_s >= start_s:
                price = value
        return price

    def start(self, present_w: float, m: Measurements) -> None:
        self.tracker.start(present_w, m)

    def request(self, m: Measurements) -> float:
        price = self.price(m.day_s)
        self.price_tag.set(price)
        cheap = price <= self.cheap.value
        # The tracker steers only outside cheap hours; then it must not integrate an error it causes not.
        follow = self.tracker.step(m, 0.0, acting=not cheap and m.baseline_w != 0.0 and not m.constrained)
        if cheap:
            return -self.charge_power.value * soc_taper(m.soc_pct, self.charge_soc.value, TAPER_BAND_PCT)
        if price >= self.expensive.value:
            return max(follow, 0.0)  # cover the load, never export
        return min(follow, 0.0)  # store PV surplus, keep the energy for expensive hours


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
