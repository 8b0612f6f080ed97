"""Headroom the sold capacity needs (the reservation table), what is maintained, and endurance.

Power reservation per product, in C: FCR-N +-1.34 (C plus NEM's 0.34 C), FCR-D up +1 / -0.2,
FCR-D down +0.2 / -1; without LER energy management the NEM share is not needed (+-1, +1/0,
0/-1). FFR reserves C up and its recovery power down. Energy reservation: FCR-N 1 h x C each
way, FCR-D 1/3 h x C in its direction, FFR its support time.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from programs.grid.products import ProductSpec

ENDLESS_MIN = 9999.0  # endurance when nothing drains the battery in that direction


@attrs.frozen
class Reserve:
    """Headroom in W and energy in Wh, each way (+ = discharge side)."""

    up_w: float = 0.0
    down_w: float = 0.0
    up_wh: float = 0.0
    down_wh: float = 0.0


def fcr_reserve(spec: ProductSpec, capacity_w: float, ler: bool) -> Reserve:
    up, down = (spec.power_up, spec.power_down) if ler else (max(spec.p_range[1], 0.0), max(-spec.p_range[0], 0.0))
    return Reserve(up * capacity_w, down * capacity_w, spec.energy_up_h * capacity_w,
                   spec.energy_down_h * capacity_w)


def ffr_reserve(capacity_w: float, support_s: float, recovery_pct: float) -> Reserve:
    return Reserve(capacity_w, capacity_w * recovery_pct / 100.0, capacity_w * support_s / 3600.0, 0.0)


def total(reserves: Iterable[Reserve]) -> Reserve:
    up = down = up_wh = down_wh = 0.0
    for r in reserves:
        up += r.up_w
        down += r.down_w
        up_wh += r.up_wh
        down_wh += r.down_wh
    return Reserve(up, down, up_wh, down_wh)


def share(headroom_w: float, needed_w: float) -> float:
    """The fraction (0..1) of the needed headroom that is there."""
    if needed_w <= 0.0:
        return 1.0
    r = headroom_w / needed_w
    return 0.0 if r <= 0.0 else (1.0 if r >= 1.0 else r)


def endurance_min(energy_wh: float, setpoint_w: float, capacity_w: float, inflow_w: float = 0.0) -> float:
    """Minutes the energy lasts at full activation: energy / (setpoint + capacity - inflow) x 60.

    `setpoint_w` is the baseline in the direction considered (+ drains), `inflow_w` what refills
    the battery in that direction without the inverter (none on an AC-coupled site).
    """
    drain = setpoint_w + capacity_w - inflow_w
    if drain <= 0.0:
        return ENDLESS_MIN
    minutes = max(energy_wh, 0.0) / drain * 60.0
    return minutes if minutes < ENDLESS_MIN else ENDLESS_MIN
