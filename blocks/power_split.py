"""The power split: how the leader shares the site's battery power across the nodes.

* Which nodes run: only nodes that can move power in the wanted direction (a full node
  cannot charge: it is "limited" and skipped). As many as share the power with each running
  node carrying at least `node_min_p_w` (never fewer than the power needs); the others may
  sleep. Nodes already running come first (no churn), then the fullest when discharging, the
  emptiest when charging. The SOC weighting gives the last of them less than the average: a
  node it would leave below `node_min_p_w` sleeps too, and its part goes to the others.
* How much each runs: in proportion to its headroom (its available power in that direction),
  weighted by its energy fraction to the power `soc_weight_exponent`, so that the fullest
  node discharges most and the emptiest charges most and the SOCs converge. A node never gets
  more than its headroom, nor more than its inverter can reach soon (`reach_*_w`: a node just
  woken, or far below its share, ramps up while the others keep carrying the rest); what it
  cannot take goes to the others (water filling).

Pure functions of their arguments (the cluster master calls `split_power` each scan).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs
from attrs import validators as v

MIN_FRACTION = 0.01  # a node at its SOC limit still weighs a little (its limits taper it anyway)


@attrs.frozen
class Candidate:
    """A node the leader may give power to, from its last state message."""

    id: str
    soc_pct: float
    limit_charge_w: float
    limit_discharge_w: float
    running: bool  # in Run (False: asleep, in Idle; it is woken before it gets power)
    # what its inverter can reach soon in each direction (its power now plus its ramp): a share
    # beyond it goes to the others for now; it does not weigh in the split (the headroom does)
    reach_discharge_w: float = math.inf
    reach_charge_w: float = math.inf

    def headroom(self, discharging: bool) -> float:
        return max(self.limit_discharge_w if discharging else self.limit_charge_w, 0.0)

    def cap(self, discharging: bool) -> float:
        """The most it may be given now: its headroom, or less while its inverter ramps."""
        return max(min(self.headroom(discharging), self.reach_discharge_w if discharging else self.reach_charge_w),
                   0.0)


@attrs.frozen
class SplitParams:
    soc_min_pct: float = attrs.field(default=5.0, validator=[v.ge(0), v.le(100)])
    soc_max_pct: float = attrs.field(default=95.0, validator=[v.ge(0), v.le(100)])
    soc_weight_exponent: float = attrs.field(default=2.0, validator=v.ge(0))
    node_min_p_w: float = attrs.field(default=500.0, validator=v.ge(0))


@attrs.frozen
class Split:
    shares: dict[str, float]  # W per node, + discharge; 0 for nodes that get nothing
    awake: tuple[str, ...]  # nodes that should run (in preference order)
    unallocated_w: float  # what no node could take (headroom exhausted)


def energy_fraction(soc_pct: float, discharging: bool, params: SplitParams) -> float:
    """How much of its usable range a node still has to give in this direction, 0..1."""
    span = params.soc_max_pct - params.soc_min_pct
    if span <= 0:
        return 1.0
    room = (soc_pct - params.soc_min_pct) if discharging else (params.soc_max_pct - soc_pct)
    return min(max(room / span, MIN_FRACTION), 1.0)


def choose_awake(p_w: float, candidates: Iterable[Candidate], awake_before: Iterable[str],
                 params: SplitParams) -> list[Candidate]:
    """The nodes that should run for `p_w`, in preference order (see the module docstring)."""
    magnitude = abs(p_w)
    if magnitude < 1.0:
        return []
    discharging = p_w > 0
    before = set(awake_before)
    usable = [c for c in candidates if c.headroom(discharging) > 0]
    usable.sort(key=lambda c: (c.id not in before, -energy_fraction(c.soc_pct, discharging, params), c.id))
    total, n_power = 0.0, len(usable)
    for i, candidate in enumerate(usable):
        total += candidate.headroom(discharging)
        if total >= magnitude:
            n_power = i + 1
            break
    n_share = max(1, math.floor(magnitude / params.node_min_p_w)) if params.node_min_p_w > 0 else len(usable)
    return usable[:min(len(usable), max(n_power, n_share))]


def allocate(p_w: float, nodes: Iterable[Candidate], params: SplitParams) -> tuple[dict[str, float], float]:
    """Share `p_w` over `nodes` by weighted headroom, capped at each headroom; returns the
    shares and what is left over."""
    discharging = p_w > 0
    sign = 1.0 if discharging else -1.0
    open_nodes = {c.id: c for c in nodes if c.cap(discharging) > 0}
    shares = {c.id: 0.0 for c in nodes}
    remaining = abs(p_w)
    while remaining > 1e-6 and open_nodes:
        weights = {i: c.headroom(discharging) * energy_fraction(c.soc_pct, discharging, params)
                   ** params.soc_weight_exponent for i, c in open_nodes.items()}
        total = sum(weights.values())
        offer = {i: remaining * w / total for i, w in weights.items()}
        capped = [i for i, amount in offer.items() if amount >= open_nodes[i].cap(discharging)]
        if not capped:
            for i, amount in offer.items():
                shares[i] += sign * amount
            remaining = 0.0
            break
        for i in capped:
            cap = open_nodes.pop(i).cap(discharging)
            shares[i] += sign * cap
            remaining -= cap
    return shares, max(remaining, 0.0)


def split_power(p_w: float, candidates: Iterable[Candidate], awake_before: Iterable[str],
                params: SplitParams) -> Split:
    """The whole split: which nodes run, and each node's share (asleep nodes being woken get
    0 W until they report Run; their part goes to the running ones)."""
    candidates = list(candidates)
    awake = choose_awake(p_w, candidates, awake_before, params)
    while True:
        running = [c for c in awake if c.running]
        shares, left = allocate(p_w, running, params) if running else ({}, abs(p_w))
        if not _below_minimum(shares, running, params) or not _can_spare_last(p_w, awake):
            break
        awake = awake[:-1]  # the least preferred sleeps; the rest share its part
    return Split(shares={c.id: shares.get(c.id, 0.0) for c in candidates}, awake=tuple(c.id for c in awake),
                 unallocated_w=left)


def _below_minimum(shares: dict[str, float], running: list[Candidate], params: SplitParams) -> bool:
    """Some running node would carry less than node_min_p_w."""
    return len(running) > 1 and any(abs(shares[c.id]) < params.node_min_p_w - 1e-6 for c in running)


def _can_spare_last(p_w: float, awake: list[Candidate]) -> bool:
    """The awake nodes but the last still have the headroom for `p_w`."""
    discharging = p_w > 0
    return len(awake) > 1 and sum(c.headroom(discharging) for c in awake[:-1]) >= abs(p_w)
