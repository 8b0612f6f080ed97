"""LER energy management of one FCR product: NEM and AEM exactly as TR 3.5 defines them.

Stepped once per second (the reference's 1 s samples):

* SOC thresholds are minutes of full activation left: `C x minutes / 60` Wh of energy above
  the service floor (and, for FCR-N and FCR-D down, below the service ceiling).
* NEM: `NEM_allowed` is -1 below the lower threshold (charge), +1 above the upper one, 0
  otherwise, and 0 whenever the frequency is outside 49.9 < f < 50.1 Hz. `NEM_current` is the
  mean of the last 300 values (so it ramps over 5 minutes); NEM adds `gain x C x NEM_current`.
  When the frequency leaves the window, NEM_allowed is 0 and NEM ramps out through the same mean
  (TR 3.5: never cut in one step, which would step several kW at every 49.9/50.1 Hz crossing).
* AEM is switched by SOC alone (on below the AEM-on threshold, off above AEM-off). The
  reference `f_ref` is the 300 s mean of `f_AEM`: the band edge while AEM is off, the measured
  frequency saturated to the linear range while it is on. The response is
  `C / band x (f_ref - f_sat)`, i.e. the droop plus `offset_w = C / band x (f_ref - edge)`.
"""

from __future__ import annotations

import attrs

from blocks import MovingAverage
from programs.grid.products import NEM_WINDOW_HZ, ProductSpec

WINDOW_S = 300  # 300 one-second values


@attrs.frozen
class Energy:
    """What the battery holds for the services this second (Wh)."""

    low_wh: float  # above the service floor: what discharging may still use
    high_wh: float  # below the service ceiling: what charging may still fill


def _filled(n: int, value: float) -> MovingAverage:
    average = MovingAverage(window_n=n)
    for _ in range(n):
        average.step(value)
    return average


class LerManager:
    """NEM and AEM state of one product with capacity `capacity_w`."""

    def __init__(self, spec: ProductSpec, capacity_w: float):
        self.spec = spec
        self.capacity_w = capacity_w
        self.nem_state = 0  # -1 / 0 / +1 from SOC, with each threshold's hysteresis
        self.nem_allowed = 0  # this second's value, after the frequency window
        self.nem_current = 0.0
        self.nem_w = 0.0
        self.aem = False
        self.aem_side = 0  # -1: battery low, +1: battery high
        self.f_ref_hz = spec.edge_hz
        self.offset_w = 0.0
        self._nem = _filled(WINDOW_S, 0.0)
        self._ref = _filled(WINDOW_S, spec.edge_hz)

    def retune(self, capacity_w: float) -> None:
        """A new capacity: NEM's 300 s mean and AEM's reference carry on (a setting change does not
        restart them); the powers they give scale with the capacity from now."""
        self.capacity_w = capacity_w
        self.nem_w = self.spec.nem_gain * capacity_w * self.nem_current
        self.offset_w = capacity_w / self.spec.band_hz * (self.f_ref_hz - self.spec.edge_hz)

    def threshold_wh(self, minutes: float) -> float:
        return self.capacity_w * minutes / 60.0

    def second(self, f_hz: float, energy: Energy) -> None:
        """One 1 s step: switch AEM and NEM, update NEM_current and AEM's reference."""
        self._switch_aem(energy)
        self._switch_nem(energy)
        lo, hi = NEM_WINDOW_HZ
        self.nem_allowed = self.nem_state if lo < f_hz < hi else 0
        self.nem_current = self._nem.step(float(self.nem_allowed))
        self.nem_w = self.spec.nem_gain * self.capacity_w * self.nem_current
        self._update_reference(f_hz)

    def _switch_aem(self, e: Energy) -> None:
        spec, th = self.spec, self.threshold_wh
        if not self.aem:
            if spec.uses_low and e.low_wh < th(spec.aem_on_min):
                self.aem, self.aem_side = True, -1
            elif spec.uses_high and e.high_wh < th(spec.aem_on_min):
                self.aem, self.aem_side = True, 1
            return
        left = e.low_wh if self.aem_side < 0 else e.high_wh
        if left > th(spec.aem_off_min):
            self.aem, self.aem_side = False, 0

    def _switch_nem(self, e: Energy) -> None:
        spec, th = self.spec, self.threshold_wh
        if self.nem_state == 0:
            if spec.uses_low and e.low_wh < th(spec.nem_on_min):
                self.nem_state = -1
            elif spec.uses_high and e.high_wh < th(spec.nem_on_min):
                self.nem_state = 1
        elif self.nem_state < 0 and e.low_wh > th(spec.nem_off_min) or self.nem_state > 0 and e.high_wh > th(spec.nem_off_min):
            self.nem_state = 0

    def _update_reference(self, f_hz: float) -> None:
        spec = self.spec
        if self.aem and f_hz == f_hz:
            lo, hi = spec.f_sat_hz
            f_aem = lo if f_hz < lo else (hi if f_hz > hi else f_hz)
        else:
            f_aem = spec.edge_hz
        f_ref = self._ref.step(f_aem)
        if abs(f_ref - spec.edge_hz) < 1e-9:
            f_ref = spec.edge_hz  # at rest: the droop's exact characteristic, no rounding residue
        self.f_ref_hz = f_ref
        self.offset_w = self.capacity_w / spec.band_hz * (f_ref - spec.edge_hz)
