"""`cluster`: the Raft block and the follower of one node (see the package docstring).

Each scan it reads the node's Raft view and the messages that arrived (through the link),
keeps the membership, applies the current leader's setpoint (fenced by term) or ramps to the
fallback when setpoints stop, forwards the leader's state commands to the site state
machine, publishes this node's state and aggregates the cluster (power, SOC, limits).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import attrs
from attrs import validators as v

from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, Quality, TagSpec
from programs.cluster.aggregate import Aggregate, agreed_leader, member_row, number
from programs.cluster.link import ClusterLink
from programs.cluster.membership import Membership, MemberState
from programs.cluster.messages import Arrival, Message, NodeState, Setpoints, Share, StatusReport
from programs.cluster.view import NO_VIEW, RaftView, Role
from programs.enums import SiteState, StateCommand
from programs.interlocks import Reaction
from programs.tagdefs import Layout, param, status, text

log = logging.getLogger(__name__)

ID_LENGTH = 16
MEMBERS_LENGTH = 64
NO_SHARE = Share(0.0, False)
SITE_STATUS = ("grid_power_w", "cluster_grid_setpoint_w", "cluster_baseline_p_w", "cluster_mode_active")


@attrs.frozen
class NodeParams:
    capacity_wh: float = attrs.field(default=10240.0, validator=v.gt(0))  # this unit's energy (SOC weight)
    setpoint_timeout_s: float = attrs.field(default=1.0, validator=v.gt(0))
    fallback_p_w: float = 0.0
    fallback_ramp_w_per_s: float = attrs.field(default=2000.0, validator=v.gt(0))
    # the revert_s of this unit's inverter (its [devices.modbus]): published, so that a new
    # leader knows how long a dead unit's inverter keeps its last power
    inverter_revert_s: float = attrs.field(default=10.0, validator=v.gt(0))
    inverter_ramp_w_per_s: float = attrs.field(default=0.0, validator=v.ge(0))  # how it ramps when it reverts
    inverter_response_s: float = attrs.field(default=0.0, validator=v.ge(0))  # its lag behind a new setpoint
    modbus_holding_base: int | None = 1900
    modbus_input_base: int | None = 1900


@attrs.define
class Applied:
    """The setpoint this node follows now."""

    p_w: float = 0.0
    term: int = 0
    seq: int = 0
    leader: str = ""
    age_s: float = math.inf
    fallback: bool = True  # until the first setpoint: a node starts on its fallback


class ClusterNode(Program):
    kind = "cluster"
    params_type = NodeParams

    def __init__(self, name: str, params: NodeParams):
        super().__init__(name)
        self.p = params
        self.link: ClusterLink | None = None
        self.applied = Applied()
        self.highest_term = 0
        self.dropped = 0
        self.ignored = 0
        self.sleeping = False
        self.last_command: tuple[int, int] = (0, 0)
        self.heartbeat = 0
        self._previous: tuple[Role, int, str | None] | None = None

    def attach_cluster(self, link: ClusterLink) -> None:
        self.link = link

    # --- tags ----------------------------------------------------------------------------------
    def declare(self) -> list[TagSpec]:
        h = Layout(self.p.modbus_holding_base, None)
        i = Layout(None, self.p.modbus_input_base)
        f, u32 = DType.FLOAT32, DType.UINT32
        return [
            param(h, "cluster_fallback_p_w", f, self.p.fallback_p_w, "Power this node ramps to without setpoints",
                  "W", -1e6, 1e6),
            param(h, "cluster_setpoint_timeout_s", f, self.p.setpoint_timeout_s,
                  "Setpoints older than this start the fallback", "s", 0.1, 600),
            status(i, "cluster_role", DType.ENUM, "Raft role of this node", enum_cls=Role),
            status(i, "cluster_term", u32, "Raft term of this node"),
            status(i, "cluster_leader", DType.STRING, "Leader named by this node's Raft view", length=ID_LENGTH),
            status(i, "cluster_has_quorum", DType.BOOL, "This node sees a quorum"),
            status(i, "cluster_commanding", DType.BOOL, "Leader with quorum and lease: it sends setpoints"),
            status(i, "cluster_members_online", DType.UINT16, "Members online or degraded"),
            status(i, "cluster_members_total", DType.UINT16, "Members known"),
            status(i, "cluster_members", DType.STRING, "Each member's state", length=MEMBERS_LENGTH),
            status(i, "cluster_p_w", f, "Battery power of the cluster (+ discharge)", "W"),
            status(i, "cluster_soc_pct", f, "Energy-weighted SOC of the cluster", "%"),
            status(i, "cluster_capacity_wh", f, "Energy of the usable nodes", "Wh"),
            status(i, "cluster_limit_charge_w", f, "Charge power the eligible nodes allow", "W"),
            status(i, "cluster_limit_discharge_w", f, "Discharge power the eligible nodes allow", "W"),
            status(i, "cluster_site_state", DType.ENUM, "State the cluster control runs in", enum_cls=SiteState),
            status(i, "cluster_p_setpoint_w", f, "Setpoint this node follows (leader's share or fallback)", "W"),
            status(i, "cluster_setpoint_term", u32, "Raft term of the applied setpoint"),
            status(i, "cluster_setpoint_seq", u32, "Sequence number of the applied setpoint"),
            status(i, "cluster_setpoint_age_s", f, "Time since a setpoint was applied", "s"),
            status(i, "cluster_fallback_active", DType.BOOL, "No setpoints: ramping to the fallback"),
            status(i, "cluster_setpoints_dropped", u32, "Setpoints dropped for a term below the highest seen"),
            status(i, "cluster_setpoints_ignored", u32, "Setpoints from a node this node's Raft view does not "
                                                       "name leader (yet)"),
            status(i, "cluster_highest_term", u32, "Highest term seen in any setpoint or in Raft"),
            status(i, "cluster_sleep", DType.BOOL, "The leader lets this node sleep"),
        ]

    def bind(self, tags: TagLookup) -> None:
        names = ("soc_pct", "inverter_p_w", "limit_charge_w", "limit_discharge_w", "site_state",
                 "ext_p_setpoint_w", "ext_heartbeat", "site_state_cmd", "cluster_fallback_p_w",
                 "cluster_setpoint_timeout_s")
        self.t = {name: tags[name] for name in names}
        self.soh = tags.get("soh_pct")
        self.reaction = tags.get("safety_reaction")  # a unit its own safety stops is in error for the cluster
        self.site = {name: tags[name] for name in SITE_STATUS if name in tags}  # shown by `ems cluster status`
        # The highest term seen, kept as system information. Not read back: Raft's log is in memory,
        # so after a restart of the whole cluster the terms start again from 1.
        self.term_info = tags.get("sys_raft_term")
        self.out = {spec.name: tags[spec.name] for spec in self.declare() if spec.access.value == "ro"}

    # --- the scan ------------------------------------------------------------------------------
    def execute(self, ctx: ScanContext) -> None:
        link = self.link
        messages = link.refresh() if link is not None else []
        view = link.view if link is not None else NO_VIEW
        self._log_role(view)
        self.highest_term = max(self.highest_term, view.term)
        best = self._receive(messages, view, ctx)
        if self.term_info is not None and self.term_info.value != self.highest_term and self.highest_term:
            self.term_info.set(self.highest_term)
        share = self._follow(best, ctx)
        self._commands(best, share)
        if link is None:
            self._publish_tags(view, None)
            return
        state = self._node_state(ctx, view)
        link.send(state)
        link.membership.receive(state, ctx.t_s)
        link.membership.update(ctx.t_s, view.reachable)
        self._publish_tags(view, link.membership)
        link.send(StatusReport(self._status(view, link.membership)))

    def _log_role(self, view: RaftView) -> None:
        now = (view.role, view.term, view.leader)
        if now != self._previous:
            before = self._previous
            was = f" (was {before[0].name.lower()}, term {before[1]}, leader {before[2] or 'none'})" if before else ""
            log.info("raft: %s, term %d, leader %s%s", view.role.name.lower(), view.term, view.leader or "none", was)
            if self.link is not None:
                self.link.record("role", role=view.role.name.lower(), term=view.term, leader=view.leader)
            self._previous = now

    def _receive(self, messages: list[Message | Arrival], view: RaftView, ctx: ScanContext) -> Setpoints | None:
        """Membership from state messages; the newest setpoint that passes the fence, or None.

        Terms and leaders count only as this node's Raft state confirms them: a setpoint is
        applied only from the leader of the node's own Raft term, so one that claims a term
        Raft has not reached (a forged term 10**9, say) fences nothing and is only counted as
        ignored. Sequence numbers count per (leader, term): a new leader starts afresh.
        """
        best: Setpoints | None = None
        for message in messages:
            if isinstance(message, Arrival | NodeState):
                state, arrived_s = (message.state, message.at_s) if isinstance(message, Arrival) else (message, None)
                if state.node != self.link_id and self.link is not None:
                    self.link.membership.receive(state, ctx.t_s, arrived_s)
                continue
            if message.term < self.highest_term:
                self.dropped += 1
                if self.link is not None:
                    self.link.record("dropped", term=message.term, seq=message.seq, leader=message.leader,
                                     highest=self.highest_term, scan=ctx.scan)
                continue
            if message.leader != view.leader or message.term != view.term or (
                    message.leader == view.node and not view.commanding):
                self.ignored += 1
                continue
            a = self.applied
            if (message.leader, message.term) == (a.leader, a.term) and message.seq <= a.seq:
                continue  # late or repeated
            if best is None or message.seq > best.seq:
                best = message
        return best

    @property
    def link_id(self) -> str:
        return self.link.node_id if self.link is not None else ""

    def _follow(self, best: Setpoints | None, ctx: ScanContext) -> Share:
        """Apply the leader's share, or ramp to the fallback once setpoints are late."""
        a = self.applied
        if best is not None:
            share = best.shares.get(self.link_id, NO_SHARE)
            if a.fallback:
                log.info("cluster: setpoints again from %s (term %d); fallback ends", best.leader, best.term)
            a.p_w, a.term, a.seq, a.leader, a.age_s, a.fallback = share.p_w, best.term, best.seq, best.leader, 0.0, False
            if self.link is not None:
                self.link.record("applied", term=best.term, seq=best.seq, leader=best.leader, p_w=share.p_w,
                                 scan=ctx.scan, inverter_w=round(number(self.t["inverter_p_w"]), 1),
                                 state=SiteState(self.t["site_state"].value).name.lower())
        else:
            share = NO_SHARE
            a.age_s += ctx.dt_s
            if a.age_s > self.t["cluster_setpoint_timeout_s"].value:
                if not a.fallback:
                    log.warning("cluster: no setpoint for %.1f s; ramping to the fallback %.0f W", a.age_s,
                                self.t["cluster_fallback_p_w"].value)
                    if self.link is not None:
                        self.link.record("fallback", scan=ctx.scan, p_w=a.p_w)
                a.fallback = True
                target = self.t["cluster_fallback_p_w"].value
                step = self.p.fallback_ramp_w_per_s * ctx.dt_s
                a.p_w = target if abs(target - a.p_w) <= step else a.p_w + math.copysign(step, target - a.p_w)
        self.t["ext_p_setpoint_w"].set(a.p_w)
        self.heartbeat = (self.heartbeat + 1) % 65536
        self.t["ext_heartbeat"].set(self.heartbeat)
        return share

    def _commands(self, best: Setpoints | None, share: Share) -> None:
        """The leader's state command (once per command), else its sleep/wake for this node."""
        if best is not None and best.state_cmd and (best.term, best.state_cmd_id) != self.last_command:
            self.last_command = (best.term, best.state_cmd_id)
            command = StateCommand(best.state_cmd)
            log.info("cluster: state command %s from leader %s", command.name.lower(), best.leader)
            self.t["site_state_cmd"].set(command)
            self.sleeping = command is StateCommand.IDLE
            return
        if best is None:
            return
        if share.sleep and not self.sleeping and self.t["site_state"].value == SiteState.RUN:
            self.sleeping = True
            log.info("cluster: leader %s lets this node sleep", best.leader)
            self.t["site_state_cmd"].set(StateCommand.IDLE)
        elif not share.sleep and self.sleeping:
            self.sleeping = False
            if self.t["site_state"].value == SiteState.IDLE:
                log.info("cluster: leader %s wakes this node", best.leader)
                self.t["site_state_cmd"].set(StateCommand.RUN)

    def _node_state(self, ctx: ScanContext, view: RaftView) -> NodeState:
        t = self.t
        valid = all(t[n].good for n in ("soc_pct", "inverter_p_w", "limit_charge_w", "limit_discharge_w"))
        state = SiteState(t["site_state"].value)
        soh = self.soh.value if self.soh is not None and self.soh.good else 100.0
        stopped = self.reaction is not None and self.reaction.good and self.reaction.value >= Reaction.STOP
        if state is SiteState.ERROR:
            health, errors = "error", "site in error"
        elif stopped:
            health, errors = "error", "stopped by its safety (an inverter or battery fault)"
        elif not valid or state is SiteState.INIT:
            health, errors = "degraded", "inputs not valid" if not valid else "starting"
        elif self.applied.fallback:
            health, errors = "degraded", "no setpoints: fallback"
        else:
            health, errors = "ok", ""
        a = self.applied
        return NodeState(
            node=self.link_id, t_wall=ctx.wall_s, soc_pct=number(t["soc_pct"]), soh_pct=float(soh),
            capacity_wh=self.p.capacity_wh * soh / 100.0, p_w=number(t["inverter_p_w"]),
            limit_charge_w=number(t["limit_charge_w"]), limit_discharge_w=number(t["limit_discharge_w"]),
            site_state=int(state), health=health, errors=errors, valid=valid, raft_role=view.role_name,
            raft_term=view.term, setpoint_w=a.p_w, setpoint_term=a.term, setpoint_seq=a.seq, fallback=a.fallback,
            revert_s=self.p.inverter_revert_s, ramp_w_per_s=self.p.inverter_ramp_w_per_s,
            response_s=self.p.inverter_response_s, p_age_s=_age_s(t["inverter_p_w"], ctx.t_s),
        )

    # --- outputs -------------------------------------------------------------------------------
    def _publish_tags(self, view: RaftView, members: Membership | None) -> None:
        o = self.out
        a = self.applied
        o["cluster_role"].set(view.role)
        o["cluster_term"].set(view.term)
        o["cluster_leader"].set(text(view.leader or "", ID_LENGTH))
        o["cluster_has_quorum"].set(view.has_quorum)
        o["cluster_commanding"].set(view.commanding)
        o["cluster_p_setpoint_w"].set(a.p_w)
        o["cluster_setpoint_term"].set(a.term)
        o["cluster_setpoint_seq"].set(a.seq)
        o["cluster_setpoint_age_s"].set(min(a.age_s, 1e9))
        o["cluster_fallback_active"].set(a.fallback)
        o["cluster_setpoints_dropped"].set(self.dropped)
        o["cluster_setpoints_ignored"].set(self.ignored)
        o["cluster_highest_term"].set(self.highest_term)
        o["cluster_sleep"].set(self.sleeping)
        if members is None:
            o["cluster_site_state"].set(SiteState.INIT)
            return
        aggregate = Aggregate.of(members.members.values(), members.now_s)
        o["cluster_members_online"].set(members.count(MemberState.ONLINE) + members.count(MemberState.DEGRADED))
        o["cluster_members_total"].set(len(members.members))
        o["cluster_members"].set(text(" ".join(f"{m.id}:{m.state.name.lower()}" for m in members.members.values()),
                                      MEMBERS_LENGTH))
        o["cluster_p_w"].set(aggregate.p_w)
        o["cluster_soc_pct"].set(aggregate.soc_pct)
        o["cluster_capacity_wh"].set(aggregate.capacity_wh)
        o["cluster_limit_charge_w"].set(aggregate.limit_charge_w)
        o["cluster_limit_discharge_w"].set(aggregate.limit_discharge_w)
        o["cluster_site_state"].set(SiteState.RUN if aggregate.eligible else SiteState.INIT)
        for name in ("cluster_p_w", "cluster_soc_pct"):  # no usable member: nothing to control with
            if not aggregate.usable:
                o[name].set_quality(Quality.BAD)

    def _status(self, view: RaftView, members: Membership) -> dict[str, Any]:
        """What `ems cluster status` shows (built each scan; handed over by one reference swap)."""
        o = self.out
        a = self.applied
        return {
            "node": self.link_id, "leader": agreed_leader(view), "raft_leader": view.leader,
            "term": view.term, "role": view.role_name, "has_quorum": view.has_quorum,
            "commanding": view.commanding, "highest_term": self.highest_term,
            "setpoint": {"p_w": a.p_w, "term": a.term, "seq": a.seq, "age_s": min(a.age_s, 1e9),
                         "fallback": a.fallback},
            "dropped": self.dropped, "ignored": self.ignored,
            "cluster": {"p_w": o["cluster_p_w"].value, "soc_pct": o["cluster_soc_pct"].value,
                        "capacity_wh": o["cluster_capacity_wh"].value,
                        "limit_charge_w": o["cluster_limit_charge_w"].value,
                        "limit_discharge_w": o["cluster_limit_discharge_w"].value},
            "members": [member_row(m, members.now_s) for m in members.members.values()],
            "site": {name: (tag.value if tag.good else None) for name, tag in self.site.items()},
        }


def _age_s(tag: Any, now_s: float) -> float:
    """How old a tag's value is (its driver's read time; 0 when it has none), at most 60 s."""
    age = now_s - tag.stamp
    return min(age, 60.0) if math.isfinite(age) and age > 0.0 else 0.0
