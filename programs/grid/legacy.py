"""The original controller's droop settings, mapped onto the same blocks as the Nordic products.

The old configuration described one four-threshold droop: full up-regulation `p_up_w` at and
below f1, zero from f2 to f3, full down-regulation `p_down_w` at and above f4
(`Droop.four_point`), a 5-minute moving average of the frequency used as the reference of its
alert-state energy management, and activation / deactivation logic (a delay before the
response starts once the frequency leaves the deadband, a hold and a limited rate when it has
come back).

`as_products` recognises settings that *are* Nordic products (49.9/50.0/50.0/50.1 Hz is FCR-N,
49.5/49.9/50.1/50.5 Hz is FCR-D up and down) and turns them into product capacities, so they
get the products' exact characteristics and LER management. Anything else runs as
`LegacyResponse`, built from `Droop`, `TON`, `RampLimiter` and `MovingAverage`.
"""

from __future__ import annotations

import math

import attrs
from attrs import validators as v

from blocks import TON, Droop, MovingAverage, RampLimiter
from programs.grid.products import Product

FCR_N_POINTS = (49.9, 50.0, 50.0, 50.1)
FCR_D_POINTS = (49.5, 49.9, 50.1, 50.5)


@attrs.frozen
class LegacyDroop:
    """`[programs.params.legacy]`: the original controller's droop."""

    f1_hz: float
    f2_hz: float
    f3_hz: float
    f4_hz: float
    p_up_w: float = attrs.field(default=0.0, validator=v.ge(0))
    p_down_w: float = attrs.field(default=0.0, validator=v.ge(0))
    average_window_s: float = attrs.field(default=300.0, validator=v.ge(1))  # AEM reference: 5-minute mean
    aem_soc_pct: tuple[float, float] = (0.0, 100.0)  # AEM on while SOC is outside this band
    activation_delay_s: float = attrs.field(default=0.0, validator=v.ge(0))
    deactivation_delay_s: float = attrs.field(default=0.0, validator=v.ge(0))
    deactivation_w_per_s: float = attrs.field(default=0.0, validator=v.ge(0))  # 0: no limit

    def __attrs_post_init__(self) -> None:
        if not self.f1_hz < self.f2_hz <= self.f3_hz < self.f4_hz:
            raise ValueError(f"legacy droop needs f1 < f2 <= f3 < f4, got {self.f1_hz}, {self.f2_hz}, "
                             f"{self.f3_hz}, {self.f4_hz}")

    @property
    def points(self) -> tuple[float, float, float, float]:
        return (self.f1_hz, self.f2_hz, self.f3_hz, self.f4_hz)

    @property
    def plain(self) -> bool:
        """No activation or deactivation logic and no SOC-switched reference."""
        return (self.activation_delay_s == 0 and self.deactivation_delay_s == 0 and self.deactivation_w_per_s == 0
                and self.aem_soc_pct == (0.0, 100.0))


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(x - y) < 1e-9 for x, y in zip(a, b))


def as_products(legacy: LegacyDroop) -> dict[Product, float] | None:
    """Product capacities equal to these settings, or None when they are not a Nordic product."""
    if not legacy.plain:
        return None
    if _same(legacy.points, FCR_N_POINTS) and legacy.p_up_w == legacy.p_down_w:
        return {Product.FCR_N: legacy.p_up_w}
    if _same(legacy.points, FCR_D_POINTS):
        return {Product.FCR_D_UP: legacy.p_up_w, Product.FCR_D_DOWN: legacy.p_down_w}
    return None


class LegacyResponse:
    """The generic legacy droop with its activation, deactivation and moving-average reference."""

    def __init__(self, cfg: LegacyDroop):
        self.cfg = cfg
        self.droop = Droop.four_point(cfg.f1_hz, cfg.f2_hz, cfg.f3_hz, cfg.f4_hz, cfg.p_up_w, cfg.p_down_w)
        self.center_hz = (cfg.f2_hz + cfg.f3_hz) / 2.0
        self.activation = TON(pt_s=cfg.activation_delay_s)
        self.hold = TON(pt_s=cfg.deactivation_delay_s)
        rate = cfg.deactivation_w_per_s if cfg.deactivation_w_per_s > 0 else math.inf
        self.ramp = RampLimiter(rate_up_per_s=math.inf, rate_down_per_s=math.inf, y0=0.0)
        self.rate = rate
        n = max(1, int(round(cfg.average_window_s)))
        self.average = MovingAverage(window_n=n)
        for _ in range(n):
            self.average.step(self.center_hz)
        self.reference_hz = self.center_hz
        self.aem = False
        self.active = False
        self.p_w = 0.0

    def second(self, f_hz: float, soc_pct: float) -> None:
        """1 s step: AEM by SOC, and the moving-average reference (the centre while AEM is off)."""
        lo, hi = self.cfg.aem_soc_pct
        self.aem = not lo <= soc_pct <= hi
        sample = f_hz if self.aem and f_hz == f_hz else self.center_hz
        self.reference_hz = self.average.step(sample)

    def step(self, f_hz: float, dt: float) -> float:
        """Power this scan: the droop once the frequency has been outside the deadband for the
        activation delay; after it returns, the last power held for the deactivation delay, then
        ramped to zero at the deactivation rate."""
        cfg = self.cfg
        outside = f_hz < cfg.f2_hz or f_hz > cfg.f3_hz
        ramp = self.ramp
        if self.activation.step(outside, dt):
            self.active = True
            self.hold.step(False, dt)
            ramp.rate_down_per_s = ramp.rate_up_per_s = math.inf
            target = self.droop.power_w(f_hz - (self.reference_hz - self.center_hz))
        elif self.active and not self.hold.step(not outside, dt):
            target = self.p_w  # hold the last response while the deactivation delay runs
        else:
            self.active = False
            ramp.rate_down_per_s = ramp.rate_up_per_s = self.rate
            target = 0.0
        self.p_w = ramp.step(target, dt)
        return self.p_w
