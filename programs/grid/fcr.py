"""One FCR product at work: its droop block, its LER energy management and its output range."""

from __future__ import annotations

from typing import Any

from programs.grid.ler import LerManager
from programs.grid.products import ProductSpec
from programs.grid.reserve import Reserve, fcr_reserve


class FcrService:
    """Power of one product from the (filtered) frequency: droop + AEM offset, within +-C.

    The droop block gives the reference's exact static characteristic; the AEM offset is zero
    while AEM's reference rests at the band edge. The output stays in the product's own range
    (FCR-D up never charges, FCR-D down never discharges, FCR-N within +-C), then is scaled by
    the share of the reserved headroom that is really there.
    """

    def __init__(self, spec: ProductSpec, capacity_w: float, ler: bool):
        self.spec = spec
        self.capacity_w = capacity_w
        self.droop = spec.droop(capacity_w)
        self.lo_w = spec.p_range[0] * capacity_w
        self.hi_w = spec.p_range[1] * capacity_w
        self.ler = LerManager(spec, capacity_w) if ler else None
        self.reserve: Reserve = fcr_reserve(spec, capacity_w, ler)
        self.p_w = 0.0
        self.p_tag: Any = None  # the program's tags for this product's power and maintained capacity
        self.maintained_tag: Any = None

    def power(self, f_hz: float, up_share: float, down_share: float) -> float:
        p = self.droop.power_w(f_hz)
        if self.ler is not None:
            p += self.ler.offset_w
        p = self.lo_w if p < self.lo_w else (self.hi_w if p > self.hi_w else p)
        p *= up_share if p > 0.0 else down_share
        self.p_w = p
        return p

    @property
    def unavailable(self) -> bool:
        """AEM is on: the product reports itself unavailable."""
        return self.ler is not None and self.ler.aem
