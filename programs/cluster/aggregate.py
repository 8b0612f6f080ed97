"""The cluster as one node sees it: totals over the members' last states, and status rows."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from programs.cluster.membership import Member, MemberState
from programs.cluster.view import RaftView
from programs.enums import SiteState

ELIGIBLE_STATES = (SiteState.RUN, SiteState.IDLE)  # a member in these states may get a share


def agreed_leader(view: RaftView) -> str | None:
    """The leader as far as this node can tell: named by Raft, with a quorum, and reachable
    (pysyncobj names a dead leader until the election ends)."""
    leader = view.leader
    if leader is None or not view.has_quorum:
        return None
    return leader if leader == view.node or view.reachable.get(leader, False) else None


def number(tag: Any) -> float:
    value = tag.value
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def member_row(m: Member) -> dict[str, Any]:
    last = m.last
    row: dict[str, Any] = {"id": m.id, "state": m.state.name.lower(), "reason": m.reason, "source": m.source,
                           "reachable": m.reachable}
    if last is not None:
        row.update(role=last.raft_role, term=last.raft_term, soc_pct=round(last.soc_pct, 2),
                   p_w=round(last.p_w, 1), setpoint_w=round(last.setpoint_w, 1), setpoint_term=last.setpoint_term,
                   setpoint_seq=last.setpoint_seq, site_state=SiteState(last.site_state).name.lower(),
                   fallback=last.fallback, limit_charge_w=round(last.limit_charge_w, 1),
                   limit_discharge_w=round(last.limit_discharge_w, 1))
    return row


@attrs.frozen
class Aggregate:
    """Cluster telemetry from the members' last states."""

    p_w: float
    soc_pct: float
    capacity_wh: float
    limit_charge_w: float
    limit_discharge_w: float
    usable: int
    eligible: int

    @classmethod
    def of(cls, members: Iterable[Member]) -> Aggregate:
        members = list(members)
        powered = [m.last for m in members if m.last is not None and m.state is not MemberState.OFFLINE]
        usable = [m.last for m in members if m.usable and m.last is not None and m.last.valid]  # usable: has a last
        eligible = [s for s in usable if SiteState(s.site_state) in ELIGIBLE_STATES]
        energy = sum(s.capacity_wh for s in usable)
        soc = sum(s.soc_pct * s.capacity_wh for s in usable) / energy if energy > 0 else 0.0
        return cls(p_w=sum(s.p_w for s in powered), soc_pct=soc, capacity_wh=energy,
                   limit_charge_w=sum(s.limit_charge_w for s in eligible),
                   limit_discharge_w=sum(s.limit_discharge_w for s in eligible), usable=len(usable),
                   eligible=len(eligible))

