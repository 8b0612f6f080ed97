"""Modes that follow the site's net load: self-consumption, load matching, peak shaving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blocks import PID, Hysteresis, LowPass
from plc.program import TagLookup
from programs.modes.base import Measurements, ModeBase, soc_taper

if TYPE_CHECKING:
    from programs.site_control import Params

TRIM_BAND_W = 150.0


class NetLoadTracker:
    """Battery power that holds the grid at a setpoint, without flicker.

    Feed-forward from the filtered net load (load - pv, which the battery does not change)
    plus a slow, bounded PI trim on the grid error for meter/inverter offsets. Feeding
    forward instead of integrating the grid error is what avoids the limit cycles of
    controllers that chase their own delayed effect. The trim integrates near steady state (grid
    error under `TRIM_BAND_W`), or when the error pulls it back toward zero: the error of a load
    step is the feed-forward's to remove, and integrating it would leave an offset to unwind
    afterwards. Around zero a hysteresis keeps the battery at 0 W instead of flipping between
    small charge and discharge.
    """

    def __init__(self, tau_s: float, kp: float, ki: float, trim_limit_w: float, zero_band_w: float):
        self.filter = LowPass(tau_s=tau_s)
        self.trim = PID(kp=kp, ki=ki, reverse=True, out_min=-trim_limit_w, out_max=trim_limit_w)
        self.zero_band_w = zero_band_w
        self.active = Hysteresis(on_threshold=zero_band_w, off_threshold=zero_band_w / 2)

    def start(self, present_w: float, m: Measurements) -> None:
        self.filter = LowPass(tau_s=self.filter.tau_s)
        self.trim.reset()
        feed = m.net_load_w
        self.trim.track(max(min(present_w - feed, self.trim.out_max), self.trim.out_min))

    def step(self, m: Measurements, grid_setpoint_w: float, acting: bool) -> float:
        feed = self.filter.step(m.net_load_w, m.dt_s) - grid_setpoint_w
        error = m.grid_w - grid_setpoint_w  # > 0: too much import, more discharge needed
        held = self.trim.out
        if acting and (abs(error) < TRIM_BAND_W or (held > 0.0) != (error > 0.0)):
            trim = self.trim.step(grid_setpoint_w, m.grid_w, m.dt_s)
        else:  # a transient, or the battery is not acting: hold the trim instead of winding it up
            trim = self.trim.out
        target = feed + trim
        on = self.active.step(abs(target))
        return target if on else 0.0


class SelfConsumption(ModeBase):
    """Grid exchange toward `grid_setpoint_w` (0 W by default), keeping the backup reserve."""

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.tracker = NetLoadTracker(params.net_load_tau_s, params.trim_kp, params.trim_ki,
                                      params.trim_limit_w, params.zero_band_w)
        self.setpoint = tags["grid_setpoint_w"]

    def start(self, present_w: float, m: Measurements) -> None:
        self.tracker.start(present_w, m)

    def request(self, m: Measurements) -> float:
        return self.tracker.step(m, self.setpoint.value, acting=m.baseline_w != 0.0 and not m.constrained)


class LoadMatching(ModeBase):
    """Discharge to cover the load; never export, never charge."""

    may_charge = False

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.tracker = NetLoadTracker(params.net_load_tau_s, params.trim_kp, params.trim_ki,
                                      params.trim_limit_w, params.zero_band_w)

    def start(self, present_w: float, m: Measurements) -> None:
        self.tracker.start(present_w, m)

    def request(self, m: Measurements) -> float:
        p = self.tracker.step(m, 0.0, acting=m.baseline_w > 0.0 and not m.constrained)
        return p if p > 0.0 else 0.0


class PeakShaving(ModeBase):
    """Act only beyond the import and export limits; recharge below them.

    The shaving itself is the site-wide import/export constraint, applied to every mode by
    the mode manager; this mode adds the recharge: it refills the battery toward
    `peak_recharge_soc_pct` with whatever headroom is left under the import limit.
    """

    respects_reserve = False

    def __init__(self, params: Params, tags: TagLookup) -> None:
        self.import_limit = tags["import_limit_w"]
        self.recharge_soc = tags["peak_recharge_soc_pct"]
        self.recharge_power = tags["peak_recharge_power_w"]
        self.margin_w = params.peak_margin_w
        self.filter = LowPass(tau_s=params.net_load_tau_s)

    def request(self, m: Measurements) -> float:
        net = self.filter.step(m.net_load_w, m.dt_s)
        headroom = self.import_limit.value - self.margin_w - net
        if headroom <= 0.0:
            return 0.0  # at or over the limit: the constraint makes the battery discharge
        power = min(self.recharge_power.value, headroom)
        return -power * soc_taper(m.soc_pct, self.recharge_soc.value, 1.0)
