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


def member_row(m: Member, now_s: float) -> dict[str, Any]:
    """One member as `ems cluster status` shows it; `age_s`: since its last state arrived."""
    last = m.last
    row: dict[str, Any] = {"id": m.id, "state": m.state.name.lower(), "reason": m.reason, "source": m.source,
                           "reachable": m.reachable,
                           "age_s": round(max(0.0, now_s - m.received_s), 1) if last is not None else None}
    if last is not None:
        row.update(role=last.raft_role, term=last.raft_term, soc_pct=round(last.soc_pct, 2),
                   p_w=round(last.p_w, 1), setpoint_w=round(last.setpoint_w, 1), setpoint_term=last.setpoint_term,
                   setpoint_seq=last.setpoint_seq, site_state=SiteState(last.site_state).name.lower(),
                   fallback=last.fallback, limit_charge_w=round(last.limit_charge_w, 1),
                   limit_discharge_w=round(last.limit_discharge_w, 1))
    return row


def modeled_p_w(member: Member, now_s: float, commanded: bool = False) -> float:
    """What a member's battery delivers at `now_s`, as far as this node can tell: its last
    reported power while it reports. Once silent, its inverter keeps that power until its revert
    timer runs out (`revert_s` after its controller's last write, a fixed step after its last
    report was sent: `Member.sent_s`), then ramps its command to 0 W at its `ramp_w_per_s`
    (0: at once), its power following the command through a first-order lag of `response_s`.
    `commanded`: the command itself, what the survivors' own commands must make up for (their
    inverters lag the same way)."""
    last = member.last
    if last is None:
        return 0.0
    if member.state not in (MemberState.STALE, MemberState.OFFLINE):
        return last.p_w
    since_s = now_s - member.sent_s - last.revert_s
    if since_s <= 0.0:
        return last.p_w
    return math.copysign(reverting_w(abs(last.p_w), last.ramp_w_per_s, 0.0 if commanded else last.response_s,
                                     since_s), last.p_w)


def reverting_w(p0_w: float, ramp_w_per_s: float, tau_s: float, since_s: float) -> float:
    """|power| `since_s` after an inverter at `p0_w` began to ramp its command to 0 W at
    `ramp_w_per_s` (0: a step), its power lagging the command by a first-order lag `tau_s`: the
    ramp through the lag, then the lag's decay once the command is at 0."""
    ramp_s = p0_w / ramp_w_per_s if ramp_w_per_s > 0.0 else 0.0
    if tau_s <= 0.0:
        return max(0.0, p0_w - ramp_w_per_s * since_s) if ramp_s > 0.0 else 0.0
    if since_s <= ramp_s:
        return p0_w - ramp_w_per_s * (since_s - tau_s * (1.0 - math.exp(-since_s / tau_s)))
    at_end = reverting_w(p0_w, ramp_w_per_s, tau_s, ramp_s) if ramp_s > 0.0 else p0_w  # the ramp's last point
    return at_end * math.exp(-(since_s - ramp_s) / tau_s)


def outside_p_w(members: Iterable[Member], inside: set[str], now_s: float, commanded: bool = False) -> float:
    """The modelled power of the members not in `inside`: what they deliver without a share
    (a dead unit until its inverter has reverted); `commanded`: their inverters' commands."""
    return sum(modeled_p_w(m, now_s, commanded) for m in members if m.id not in inside)


def reported_as_of(members: Iterable[Member], now_s: float) -> float:
    """The moment the members' reported powers describe: the mean of when the reporting ones
    measured the power in their last state. A silent unit's modelled power is summed as of then,
    not now: the cluster's power then adds up powers of one moment, as the site meter's feedback
    needs (a dead unit modelled as of now while the survivors that take over its power report
    theirs a scan late would read, for a while, as the cluster delivering less than it does)."""
    silent = (MemberState.STALE, MemberState.OFFLINE)
    measured = [m.measured_s for m in members if m.last is not None and m.state not in silent]
    return min(now_s, sum(measured) / len(measured)) if measured else now_s


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
    def of(cls, members: Iterable[Member], now_s: float) -> Aggregate:
        """The totals. The limits are the eligible members' plus what the others deliver by
        themselves (a dead unit's inverter until it reverts): the cluster's power counts that,
        so its cap must too, or a unit's death would cut the survivors' shares by its power."""
        members = list(members)
        usable = [m.last for m in members if m.usable and m.last is not None and m.last.valid]  # usable: has a last
        eligible = [s for s in usable if SiteState(s.site_state) in ELIGIBLE_STATES]
        energy = sum(s.capacity_wh for s in usable)
        soc = sum(s.soc_pct * s.capacity_wh for s in usable) / energy if energy > 0 else 0.0
        outside = outside_p_w(members, {s.node for s in eligible}, now_s)
        as_of = reported_as_of(members, now_s)
        return cls(p_w=sum(modeled_p_w(m, as_of) for m in members), soc_pct=soc, capacity_wh=energy,
                   limit_charge_w=sum(s.limit_charge_w for s in eligible) + max(-outside, 0.0),
                   limit_discharge_w=sum(s.limit_discharge_w for s in eligible) + max(outside, 0.0),
                   usable=len(usable), eligible=len(eligible))

