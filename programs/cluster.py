"""Cluster programs: several battery units (nodes), each with its own controller, acting as one.

Three program kinds, in this order in a node's io_map (docs/cluster.md):

* `cluster` (ClusterNode): the Raft block and the follower. Each scan it reads the node's Raft
  view (role, term, leader, quorum, members' reachability), takes the messages that arrived,
  keeps the membership, applies the current leader's setpoint (fenced by term, see below) or
  ramps to the fallback when setpoints stop, forwards the leader's state commands to the site
  state machine, publishes this node's state and aggregates the cluster (power, SOC, limits).
  It drives the node's own `site_control` in external mode through `ext_p_setpoint_w` and
  `ext_heartbeat`, so the node's safety, limits and dispatch stay exactly those of a single site.
* `cluster_control` (ClusterControl): the site program (the mode manager) for the whole cluster,
  against the site meter, with the cluster's power, SOC and limits as its battery. Every node
  runs it (followers in the shadow, on the same inputs), so a new leader takes over bumplessly.
* `cluster_master` (ClusterMaster): on the commanding leader only, splits the cluster baseline
  across the nodes and publishes the setpoints, stamped with the Raft term and a sequence number.

Fencing: a node applies a setpoint only if its term is at least the highest term seen in any
setpoint, equals its own Raft term, and its sender is the leader its own Raft view names (for
its own share, only while it still holds its lease). One setpoint at most is applied per scan.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import attrs
from attrs import validators as v

from programs.enums import SiteState, StateCommand
from programs.site_control import Params as SiteControlParams
from programs.site_control import SiteControl
from programs.tagdefs import Layout, param, status, text
from runtime.cluster.membership import Member, MemberState, Membership
from runtime.cluster.messages import Message, NodeState, Setpoints, Share
from runtime.cluster.split import Candidate, SplitParams, split_power
from runtime.cluster.view import NO_VIEW, RaftView, Role
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, Quality, TagSpec

log = logging.getLogger(__name__)

GOOD = Quality.GOOD
ID_LENGTH = 16
MEMBERS_LENGTH = 64
ELIGIBLE_STATES = (SiteState.RUN, SiteState.IDLE)
NO_SHARE = Share(0.0, False)
SITE_STATUS = ("grid_power_w", "cluster_grid_setpoint_w", "cluster_baseline_p_w", "cluster_mode_active")


class ClusterLink(Protocol):
    """What the cluster programs need of the cluster service (runtime/cluster/service.py)."""

    node_id: str
    membership: Membership
    status: dict[str, Any]

    def view(self) -> RaftView: ...

    def current_view(self) -> RaftView: ...

    def drain(self) -> list[Message]: ...

    def publish(self, message: Message) -> None: ...

    def record(self, kind: str, **fields: Any) -> None: ...

    def take_commands(self) -> list[str]: ...

    def take_discovered(self) -> list[str]: ...


# ------------------------------------------------------------------------------------------------
# cluster: the Raft block and the follower
# ------------------------------------------------------------------------------------------------


@attrs.frozen
class NodeParams:
    capacity_wh: float = attrs.field(default=10240.0, validator=v.gt(0))  # this unit's energy (SOC weight)
    setpoint_timeout_s: float = attrs.field(default=1.0, validator=v.gt(0))
    fallback_p_w: float = 0.0
    fallback_ramp_w_per_s: float = attrs.field(default=2000.0, validator=v.gt(0))
    modbus_holding_base: int | None = 1900
    modbus_input_base: int | None = 1900


@attrs.define
class Applied:
    """The setpoint this node follows now."""

    p_w: float = 0.0
    term: int = 0
    seq: int = 0
    age_s: float = math.inf
    fallback: bool = True  # until the first setpoint: a node starts on its fallback


class ClusterNode(Program):
    kind = "cluster"
    Params = NodeParams

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
        self.soh = tags["soh_pct"] if "soh_pct" in tags else None
        self.site = {name: tags[name] for name in SITE_STATUS if name in tags}  # shown by `ems cluster status`
        # The highest term seen, kept as system information. Not read back: Raft's log is in memory,
        # so after a restart of the whole cluster the terms start again from 1.
        self.term_info = tags["sys_raft_term"] if "sys_raft_term" in tags else None
        self.out = {spec.name: tags[spec.name] for spec in self.declare() if spec.access.value == "ro"}

    # --- the scan ------------------------------------------------------------------------------
    def execute(self, ctx: ScanContext) -> None:
        link = self.link
        view = link.view() if link is not None else NO_VIEW
        self._log_role(view)
        self.highest_term = max(self.highest_term, view.term)
        best = self._receive(link.drain() if link is not None else [], view, ctx)
        if self.term_info is not None and self.term_info.value != self.highest_term and self.highest_term:
            self.term_info.set(self.highest_term)
        share = self._follow(best, ctx)
        self._commands(best, share)
        if link is None:
            self._publish_tags(view, None)
            return
        for node in link.take_discovered():
            link.membership.add(node, "discovery")
        state = self._node_state(ctx, view)
        link.publish(state)
        link.membership.receive(state, ctx.t_s)
        link.membership.update(ctx.t_s, view.reachable)
        self._publish_tags(view, link.membership)
        link.status = self._status(view, link.membership)

    def _log_role(self, view: RaftView) -> None:
        now = (view.role, view.term, view.leader)
        if now != self._previous:
            before = self._previous
            was = f" (was {before[0].name.lower()}, term {before[1]}, leader {before[2] or 'none'})" if before else ""
            log.info("raft: %s, term %d, leader %s%s", view.role.name.lower(), view.term, view.leader or "none", was)
            if self.link is not None:
                self.link.record("role", role=view.role.name.lower(), term=view.term, leader=view.leader)
            self._previous = now

    def _receive(self, messages: list[Message], view: RaftView, ctx: ScanContext) -> Setpoints | None:
        """Membership from state messages; the newest setpoint that passes the fence, or None."""
        best: Setpoints | None = None
        for message in messages:
            if isinstance(message, NodeState):
                if message.node != self.link_id and self.link is not None:
                    self.link.membership.receive(message, ctx.t_s)
                continue
            if message.term < self.highest_term:
                self.dropped += 1
                if self.link is not None:
                    self.link.record("dropped", term=message.term, seq=message.seq, leader=message.leader,
                                     highest=self.highest_term, scan=ctx.scan)
                continue
            self.highest_term = message.term  # a setpoint proves a leader of that term: older ones are deposed
            if message.leader != view.leader or message.term != view.term or (
                    message.leader == view.node and not view.commanding):
                self.ignored += 1
                continue
            if not message.newer_than(self.applied.term, self.applied.seq):
                continue
            if best is None or message.newer_than(best.term, best.seq):
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
            a.p_w, a.term, a.seq, a.age_s, a.fallback = share.p_w, best.term, best.seq, 0.0, False
            if self.link is not None:
                self.link.record("applied", term=best.term, seq=best.seq, leader=best.leader, p_w=share.p_w,
                                 scan=ctx.scan)
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
        if state is SiteState.ERROR:
            health, errors = "error", "site in error"
        elif not valid or state is SiteState.INIT:
            health, errors = "degraded", "inputs not valid" if not valid else "starting"
        elif self.applied.fallback:
            health, errors = "degraded", "no setpoints: fallback"
        else:
            health, errors = "ok", ""
        a = self.applied
        return NodeState(
            node=self.link_id, t_wall=ctx.wall_s, soc_pct=_num(t["soc_pct"]), soh_pct=float(soh),
            capacity_wh=self.p.capacity_wh * soh / 100.0, p_w=_num(t["inverter_p_w"]),
            limit_charge_w=_num(t["limit_charge_w"]), limit_discharge_w=_num(t["limit_discharge_w"]),
            site_state=int(state), health=health, errors=errors, valid=valid, raft_role=view.role.name.lower(),
            raft_term=view.term, setpoint_w=a.p_w, setpoint_term=a.term, setpoint_seq=a.seq, fallback=a.fallback,
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
        aggregate = Aggregate.of(members.members.values())
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
            "node": self.link_id, "leader": _agreed_leader(view), "raft_leader": view.leader,
            "term": view.term, "role": view.role.name.lower(), "has_quorum": view.has_quorum,
            "commanding": view.commanding, "highest_term": self.highest_term,
            "setpoint": {"p_w": a.p_w, "term": a.term, "seq": a.seq, "age_s": min(a.age_s, 1e9),
                         "fallback": a.fallback},
            "dropped": self.dropped, "ignored": self.ignored,
            "cluster": {"p_w": o["cluster_p_w"].value, "soc_pct": o["cluster_soc_pct"].value,
                        "capacity_wh": o["cluster_capacity_wh"].value,
                        "limit_charge_w": o["cluster_limit_charge_w"].value,
                        "limit_discharge_w": o["cluster_limit_discharge_w"].value},
            "members": [_member_status(m) for m in members.members.values()],
            "site": {name: (tag.value if tag.good else None) for name, tag in self.site.items()},
        }


def _agreed_leader(view: RaftView) -> str | None:
    """The leader as far as this node can tell: named by Raft, with a quorum, and reachable
    (pysyncobj names a dead leader until the election ends)."""
    leader = view.leader
    if leader is None or not view.has_quorum:
        return None
    return leader if leader == view.node or view.reachable.get(leader, False) else None


def _num(tag: Any) -> float:
    value = tag.value
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _member_status(m: Member) -> dict[str, Any]:
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
    def of(cls, members: Any) -> Aggregate:
        members = list(members)
        powered = [m.last for m in members if m.last is not None and m.state is not MemberState.OFFLINE]
        usable = [m.last for m in members if m.usable and m.last.valid]
        eligible = [s for s in usable if SiteState(s.site_state) in ELIGIBLE_STATES]
        energy = sum(s.capacity_wh for s in usable)
        soc = sum(s.soc_pct * s.capacity_wh for s in usable) / energy if energy > 0 else 0.0
        return cls(p_w=sum(s.p_w for s in powered), soc_pct=soc, capacity_wh=energy,
                   limit_charge_w=sum(s.limit_charge_w for s in eligible),
                   limit_discharge_w=sum(s.limit_discharge_w for s in eligible), usable=len(usable),
                   eligible=len(eligible))


# ------------------------------------------------------------------------------------------------
# cluster_control: the site program for the whole cluster
# ------------------------------------------------------------------------------------------------

PREFIX = "cluster_"
# The cluster control's battery is the cluster: these inputs of the site program are mapped.
CLUSTER_INPUTS = {"inverter_p_w": "cluster_p_w", "soc_pct": "cluster_soc_pct", "site_state": "cluster_site_state",
                  "limit_charge_w": "cluster_limit_charge_w", "limit_discharge_w": "cluster_limit_discharge_w"}
SHARED_INPUTS = ("grid_power_w",)  # the site meter: the same for the cluster as for each node


@attrs.frozen
class ControlParams(SiteControlParams):
    """The site program's parameters (see `site_control`), placed elsewhere in the register map."""

    modbus_holding_base: int | None = 2000
    modbus_input_base: int | None = 2000


class _ClusterTags:
    """The tag lookup the wrapped site program sees: its own tags carry the `cluster_` prefix,
    its battery inputs are the cluster's, the site meter is shared; any other input it looks
    for is the cluster's (`cluster_<name>`), so a node-level value never leaks in."""

    def __init__(self, tags: TagLookup, own: set[str]):
        self.tags = tags
        self.own = own

    def name(self, name: str) -> str:
        if name in SHARED_INPUTS:
            return name
        return CLUSTER_INPUTS.get(name, PREFIX + name)

    def __getitem__(self, name: str) -> Any:
        return self.tags[self.name(name)]

    def __contains__(self, name: str) -> bool:
        return self.name(name) in self.tags


class ClusterControl(Program):
    """Runs `SiteControl` on cluster-level tags; writes `cluster_baseline_p_w` on every node."""

    kind = "cluster_control"
    Params = ControlParams

    def __init__(self, name: str, params: ControlParams):
        super().__init__(name)
        self.p = params
        self.inner = SiteControl(name, params)
        self.link: ClusterLink | None = None
        self.commanding = False

    def attach_cluster(self, link: ClusterLink) -> None:
        self.link = link

    def declare(self) -> list[TagSpec]:
        specs = self.inner.declare()
        self.own = {spec.name for spec in specs}
        return [attrs.evolve(spec, name=PREFIX + spec.name, description=f"Cluster: {spec.description}")
                for spec in specs]

    def bind(self, tags: TagLookup) -> None:
        if not hasattr(self, "own"):
            self.own = {spec.name for spec in self.inner.declare()}
        self.inner.bind(_ClusterTags(tags, self.own))

    def replace_schedule(self, schedule: Any) -> None:
        self.inner.replace_schedule(schedule)

    def execute(self, ctx: ScanContext) -> None:
        if self.link is not None:
            self._takeover(self.link)
        self.inner.execute(ctx)

    def _takeover(self, link: ClusterLink) -> None:
        """On becoming the commanding leader, the baseline continues from what the nodes it will
        command (usable, reachable) apply now, so that their setpoints do not jump; the shadow run
        keeps the filters and trims warm. The feedback then corrects for a unit that was lost."""
        commanding = link.current_view().commanding
        if commanding and not self.commanding:
            applied = [m.last.setpoint_w for m in link.membership.usable() if m.reachable and m.last is not None]
            if applied:
                self.inner.ramp.reset(sum(applied))
                log.info("cluster control: taking over from the %.0f W the nodes apply", sum(applied))
        self.commanding = commanding


# ------------------------------------------------------------------------------------------------
# cluster_master: the leader's power split
# ------------------------------------------------------------------------------------------------


@attrs.frozen
class MasterParams:
    soc_weight_exponent: float = attrs.field(default=2.0, validator=v.ge(0))
    node_min_p_w: float = attrs.field(default=500.0, validator=v.ge(0))
    sleep_delay_s: float = attrs.field(default=30.0, validator=v.ge(0))
    state_cmd_repeat_s: float = attrs.field(default=3.0, validator=v.gt(0))
    modbus_input_base: int | None = 1980


class ClusterMaster(Program):
    kind = "cluster_master"
    Params = MasterParams

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

    def attach_cluster(self, link: ClusterLink) -> None:
        self.link = link

    def declare(self) -> list[TagSpec]:
        i = Layout(None, self.p.modbus_input_base)
        return [
            status(i, "cluster_master_active", DType.BOOL, "This node splits the cluster power now"),
            status(i, "cluster_setpoint_seq_sent", DType.UINT32, "Sequence number of the last setpoints sent"),
            status(i, "cluster_nodes_awake", DType.UINT16, "Nodes the split runs"),
            status(i, "cluster_unallocated_w", DType.FLOAT32, "Power no node could take", "W"),
        ]

    def bind(self, tags: TagLookup) -> None:
        self.baseline = tags["cluster_baseline_p_w"]
        self.grid = tags["grid_power_w"]
        self.grid_target = tags["cluster_grid_setpoint_w"]
        self.soc_min = tags["cluster_soc_min_pct"]
        self.soc_max = tags["cluster_soc_max_pct"]
        self.out = {spec.name: tags[spec.name] for spec in self.declare()}

    def execute(self, ctx: ScanContext) -> None:
        link = self.link
        view = link.current_view() if link is not None else NO_VIEW
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
        link.publish(message)
        link.record("sent", term=view.term, seq=self.seq, scan=ctx.scan, baseline_w=round(self.baseline.value, 1),
                    grid_w=round(self.grid.value, 1) if self.grid.good else None, target_w=self.grid_target.value,
                    shares={k: round(s.p_w, 1) for k, s in shares.items()})
        self.out["cluster_master_active"].set(True)
        self.out["cluster_setpoint_seq_sent"].set(self.seq)

    def _idle(self, link: ClusterLink | None) -> None:
        self.out["cluster_master_active"].set(False)
        self.out["cluster_nodes_awake"].set(0)
        self.out["cluster_unallocated_w"].set(0.0)
        if link is not None:
            link.take_commands()  # commands reach only a commanding leader

    def _split(self, link: ClusterLink, ctx: ScanContext) -> dict[str, Share]:
        members = [m for m in link.membership.usable() if m.reachable and m.last is not None and m.last.valid
                   and SiteState(m.last.site_state) in ELIGIBLE_STATES]  # Raft-unreachable: it cannot follow
        candidates = [Candidate(m.id, m.last.soc_pct, m.last.limit_charge_w, m.last.limit_discharge_w,
                                m.last.site_state == SiteState.RUN) for m in members if m.last is not None]
        params = SplitParams(soc_min_pct=self.soc_min.value, soc_max_pct=self.soc_max.value,
                             soc_weight_exponent=self.p.soc_weight_exponent, node_min_p_w=self.p.node_min_p_w)
        p_w = self.baseline.value if self.baseline.good and not self.held else 0.0
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
            command = StateCommand[name.upper()]
            self.command = (int(command), self.command[1] + 1, ctx.t_s)
            self.held = command is StateCommand.IDLE or (self.held and command is not StateCommand.RUN)
            log.info("cluster: state command %s to every node", name)
        command, command_id, since = self.command
        if command and ctx.t_s - since <= self.p.state_cmd_repeat_s:
            return command, command_id
        return 0, command_id


def _why_not(view: RaftView) -> str:
    if view.role is not Role.LEADER:
        return f"now {view.role.name.lower()} (leader {view.leader or 'none'}, term {view.term})"
    if not view.has_quorum:
        return "no quorum"
    return "lease lapsed"

