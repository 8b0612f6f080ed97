"""`cluster_master`: on the commanding leader only, splits the cluster baseline across the nodes
and publishes the setpoints, stamped with the Raft term and a sequence number."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import attrs
from attrs import validators as v

from blocks.power_split import Candidate, SplitParams, split_power
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, TagSpec
from programs.cluster.aggregate import ELIGIBLE_STATES, number, outside_p_w
from programs.cluster.follow import FollowWatch
from programs.cluster.link import ClusterLink
from programs.cluster.membership import Member
from programs.cluster.messages import NodeState, Setpoints, Share
from programs.cluster.view import NO_VIEW, RaftView, Role
from programs.enums import SiteState, StateCommand
from programs.tagdefs import Layout, status

log = logging.getLogger(__name__)
PICKUP_MARGIN_S = 0.01  # a scan's run here and a message's delivery both ways (pickup_wait_s)


@attrs.frozen
class MasterParams:
    soc_weight_exponent: float = attrs.field(default=2.0, validator=v.ge(0))
    node_min_p_w: float = attrs.field(default=500.0, validator=v.ge(0))
    sleep_delay_s: float = attrs.field(default=30.0, validator=v.ge(0))
    state_cmd_repeat_s: float = attrs.field(default=3.0, validator=v.gt(0))
    # a unit in Run whose power stays off its setpoint by more than this for follow_after_s
    # is out of the split (programs/cluster/follow.py), and tried again after follow_retry_s
    follow_tolerance_w: float = attrs.field(default=300.0, validator=v.gt(0))
    follow_tolerance_pct: float = attrs.field(default=10.0, validator=v.ge(0))
    follow_after_s: float = attrs.field(default=5.0, validator=v.gt(0))
    follow_retry_s: float = attrs.field(default=300.0, validator=v.gt(0))
    # a dead unit's inverter command (its revert ramp) is taken over this long, plus the wait
    # for the survivors' scans (`pickup_wait_s`), ahead, over the period a share is held
    # (`held_outside_w`): a survivor's way from writing its new share to its inverter's command
    # (the Modbus write). Both inverters lag their commands alike: the survivors' power then
    # rises as the dead inverter's falls
    takeover_lead_s: float = attrs.field(default=0.03, validator=v.ge(0))
    # a unit is given at most its measured power plus its inverter's ramp over this long: a
    # unit woken from sleep, or one far below its share, ramps up while the others carry the
    # rest (instead of their share dropping at once to what it cannot deliver yet)
    share_reach_s: float = attrs.field(default=0.5, validator=v.gt(0))
    modbus_input_base: int | None = 1980


class ClusterMaster(Program):
    kind = "cluster_master"
    params_type = MasterParams

    def __init__(self, name: str, params: MasterParams):
        super().__init__(name)
        self.p = params
        self.link: ClusterLink | None = None
        self.commanding_term = 0
        self.seq = 0
        self.awake: set[str] = set()
        self.unneeded_since: dict[str, float] = {}
        self.command: tuple[int, int, float] = (0, 0, -math.inf)  # (StateCommand, id, sent since)
        self.held = False  # an idle command to the cluster: every node sleeps until a run command
        self.outside_w = 0.0  # this scan's: the outside units' mean command over the held period, lead_s ahead
        self.lead_s = 0.0  # this scan's: takeover_lead_s plus the survivors' pickup wait
        self.follow = FollowWatch(params.follow_tolerance_w, params.follow_tolerance_pct, params.follow_after_s,
                                  params.follow_retry_s)

    def attach_cluster(self, link: ClusterLink) -> None:
        self.link = link

    def declare(self) -> list[TagSpec]:
        i = Layout(None, self.p.modbus_input_base)
        return [
            status(i, "cluster_master_active", DType.BOOL, "This node splits the cluster power now"),
            status(i, "cluster_setpoint_seq_sent", DType.UINT32, "Sequence number of the last setpoints sent"),
            status(i, "cluster_nodes_awake", DType.UINT16, "Nodes the split runs"),
            status(i, "cluster_unallocated_w", DType.FLOAT32, "Power no node could take", "W"),
            status(i, "cluster_units_excluded", DType.UINT16, "Units out of the split: they do not follow their setpoint"),
            status(i, "cluster_unit_alarm", DType.BOOL, "A unit does not follow its setpoint (error E601)"),
        ]

    def bind(self, tags: TagLookup) -> None:
        self.baseline = tags["cluster_baseline_p_w"]
        self.grid = tags["grid_power_w"]
        self.cluster_p = tags["cluster_p_w"]
        self.grid_target = tags["cluster_grid_setpoint_w"]
        self.soc_min = tags["cluster_soc_min_pct"]
        self.soc_max = tags["cluster_soc_max_pct"]
        self.out = {spec.name: tags[spec.name] for spec in self.declare()}

    def execute(self, ctx: ScanContext) -> None:
        link = self.link
        view = link.view if link is not None else NO_VIEW
        if link is None or not view.commanding:
            if self.commanding_term:
                log.warning("cluster: stopped commanding (term %d): %s", self.commanding_term, _why_not(view))
                self.commanding_term = 0
            self._idle(link)
            return
        if view.term != self.commanding_term:
            log.info("cluster: commanding as leader of term %d", view.term)
            self.commanding_term, self.seq = view.term, 0
        command, command_id = self._command(link, ctx)
        shares = self._split(link, ctx)
        self.seq += 1
        message = Setpoints(leader=link.node_id, term=view.term, seq=self.seq, t_wall=ctx.wall_s, shares=shares,
                            state_cmd=command, state_cmd_id=command_id)
        link.send(message)
        link.record("sent", term=view.term, seq=self.seq, scan=ctx.scan, baseline_w=round(self.baseline.value, 1),
                    grid_w=round(self.grid.value, 1) if self.grid.good else None, target_w=self.grid_target.value,
                    shares={k: round(s.p_w, 1) for k, s in shares.items()}, outside_w=round(self.outside_w, 1),
                    cluster_w=round(number(self.cluster_p), 1),
                    lead_s=round(self.lead_s, 3))
        self.out["cluster_master_active"].set(True)
        self.out["cluster_setpoint_seq_sent"].set(self.seq)

    def _candidate(self, node: str, last: NodeState) -> Candidate:
        """A member as the split sees it, with what its inverter can reach within share_reach_s."""
        step = last.ramp_w_per_s * self.p.share_reach_s if last.ramp_w_per_s > 0.0 else math.inf
        return Candidate(node, last.soc_pct, last.limit_charge_w, last.limit_discharge_w,
                         last.site_state == SiteState.RUN, reach_discharge_w=max(last.p_w, 0.0) + step,
                         reach_charge_w=max(-last.p_w, 0.0) + step)

    def _idle(self, link: ClusterLink | None) -> None:
        self.out["cluster_master_active"].set(False)
        self.out["cluster_nodes_awake"].set(0)
        self.out["cluster_unallocated_w"].set(0.0)
        self.out["cluster_units_excluded"].set(0)
        self.out["cluster_unit_alarm"].set(False)
        if link is not None:
            link.take_commands()  # commands reach only a commanding leader

    def _split(self, link: ClusterLink, ctx: ScanContext) -> dict[str, Share]:
        self.outside_w = self.lead_s = 0.0
        usable = link.membership.usable()
        self.follow.forget(link.membership.members)
        excluded = self.follow.update(usable, ctx.t_s)
        self.out["cluster_units_excluded"].set(len(excluded))
        self.out["cluster_unit_alarm"].set(bool(excluded))
        members = [m for m in usable if m.reachable and m.last is not None and m.last.valid and m.id not in excluded
                   and SiteState(m.last.site_state) in ELIGIBLE_STATES]  # Raft-unreachable: it cannot follow
        candidates = [self._candidate(m.id, m.last) for m in members if m.last is not None]
        params = SplitParams(soc_min_pct=self.soc_min.value, soc_max_pct=self.soc_max.value,
                             soc_weight_exponent=self.p.soc_weight_exponent, node_min_p_w=self.p.node_min_p_w)
        p_w = self.baseline.value if self.baseline.good and not self.held else 0.0
        if p_w:  # what the units outside the split deliver anyway (a dead one until it reverts) is not split
            chosen = {c.id for c in candidates}
            self.lead_s = self.p.takeover_lead_s + pickup_wait_s(members, ctx.t_s, ctx.period_s)
            self.outside_w = held_outside_w(link.membership.members.values(), chosen, ctx.t_s + self.lead_s,
                                            ctx.period_s)
            p_w -= self.outside_w
        split = split_power(p_w, candidates, self.awake, params)
        wanted = set(split.awake)
        ids = {c.id for c in candidates}
        self.unneeded_since = {node: t for node, t in self.unneeded_since.items() if node in ids}
        for c in candidates:
            if c.id in wanted:
                self.unneeded_since.pop(c.id, None)
            else:
                self.unneeded_since.setdefault(c.id, ctx.t_s)
        delay = 0.0 if self.held else self.p.sleep_delay_s  # a node first seen is kept awake that long too
        self.awake = wanted | {c.id for c in candidates if ctx.t_s - self.unneeded_since.get(c.id, ctx.t_s) < delay}
        self.out["cluster_nodes_awake"].set(len(self.awake))
        self.out["cluster_unallocated_w"].set(split.unallocated_w)
        return {c.id: Share(split.shares.get(c.id, 0.0), c.id not in self.awake) for c in candidates}

    def _command(self, link: ClusterLink, ctx: ScanContext) -> tuple[int, int]:
        """A state command from the request channel, repeated for a while (nodes apply it once)."""
        for name in link.take_commands():
            requested = StateCommand[name.upper()]
            self.command = (int(requested), self.command[1] + 1, ctx.t_s)
            self.held = requested is StateCommand.IDLE or (self.held and requested is not StateCommand.RUN)
            log.info("cluster: state command %s to every node", name)
        command, command_id, since = self.command
        if command and ctx.t_s - since <= self.p.state_cmd_repeat_s:
            return command, command_id
        return 0, command_id


def held_outside_w(members: Iterable[Member], inside: set[str], from_s: float, period_s: float) -> float:
    """The outside units' inverter commands (a dead unit's revert ramp) over the scan period a
    share is held for, from `from_s`: their mean (trapezoid over five points; the commands are
    piecewise linear), not their value at its start. A share held while the dead command falls
    by a period's ramp is then half of it above and half below, not all of it on one side: at
    4 Hz and 2500 W/s a difference of 625 W at the end of each period, +-312 W instead."""
    members = list(members)
    points = [outside_p_w(members, inside, from_s + k * period_s / 4.0, commanded=True) for k in range(5)]
    return (points[0] + 2.0 * (points[1] + points[2] + points[3]) + points[4]) / 8.0


def pickup_wait_s(members: list[Member], now_s: float, period_s: float) -> float:
    """How long after this scan the survivors write the shares it sends: each applies them in
    its first scan after they arrive and writes them at that scan's end, which is when its own
    states arrive here (`Member.sent_s`, a whole number of scan periods apart). Weighted by each
    one's setpoint, as the power taken over is split; this node's own share waits a scan.
    PICKUP_MARGIN_S covers this scan's run and the delivery both ways.

    The phase between two nodes' scans is anywhere in a period and stays for hours: one lead
    for every pair would be up to a period early or late, a dead unit's ramp times a period
    off the site meter's target (250 W at 2500 W/s and 0.1 s)."""
    weighted = total = 0.0
    for m in members:
        if m.sent_s == -math.inf or m.last is None:
            continue
        wait = PICKUP_MARGIN_S + (m.sent_s - now_s - PICKUP_MARGIN_S) % period_s
        weight = abs(m.last.setpoint_w) + 1.0
        weighted += weight * wait
        total += weight
    return weighted / total if total else period_s / 2.0


def _why_not(view: RaftView) -> str:
    if view.role is not Role.LEADER:
        return f"now {view.role.name.lower()} (leader {view.leader or 'none'}, term {view.term})"
    if not view.has_quorum:
        return "no quorum"
    return "lease lapsed"


