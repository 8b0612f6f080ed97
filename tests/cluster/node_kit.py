"""One node's cluster programs in-process (tests/testkit/harness.py), on hand-made tags and a real
cluster link whose Raft view the test sets, scan by scan."""

from __future__ import annotations

from typing import Any

from testkit.harness import Harness, memory

from plc.tags import DType
from programs.cluster.link import ClusterLink
from programs.cluster.master import ClusterMaster, MasterParams
from programs.cluster.messages import Message, NodeState, Outgoing, Record, Setpoints, Share, StateRequest, StatusReport
from programs.cluster.node import ClusterNode, NodeParams
from programs.cluster.view import RaftView, Role
from programs.enums import SiteState, StateCommand

NODES = ("node1", "node2", "node3")

SITE_TAGS = [
    memory("soc_pct", initial=50.0), memory("soh_pct", initial=100.0), memory("inverter_p_w"),
    memory("limit_charge_w", initial=5000.0), memory("limit_discharge_w", initial=5000.0),
    memory("site_state", DType.ENUM, int(SiteState.RUN), enum_labels=tuple(s.name.lower() for s in SiteState)),
    memory("site_state_cmd", DType.ENUM, 0, enum_labels=tuple(s.name.lower() for s in StateCommand)),
    memory("ext_p_setpoint_w"), memory("ext_heartbeat", DType.UINT16, 0), memory("grid_power_w"),
    memory("cluster_baseline_p_w"), memory("cluster_grid_setpoint_w"), memory("cluster_soc_min_pct", initial=5.0),
    memory("cluster_soc_max_pct", initial=95.0),
]


class ScriptedLink(ClusterLink):
    """The real link, with the Raft view set by the test and the outbox kept for it to read
    (the service would hand it to the transport after each scan)."""

    def __init__(self, node_id: str = "node1"):
        super().__init__(node_id, NODES, lambda: self.raft, stale_after_s=0.5, offline_after_s=1.5)
        self.raft = RaftView(node_id, Role.FOLLOWER, 3, "node2", True, False, {n: True for n in NODES})
        self.sent_messages: list[Outgoing] = []

    def leader(self, term: int, lease: bool = True) -> None:
        self.raft = RaftView(self.node_id, Role.LEADER, term, self.node_id, True, lease, {n: True for n in NODES})

    def deliver(self, *messages: Message) -> None:
        """Messages arriving from peers (as the transport's thread appends them)."""
        self.inbox.extend(messages)

    def command(self, value: str) -> None:
        """A state request, as `ems cluster` sends it to the leader's REP socket."""
        self.inbox.append(StateRequest(value))

    def flush(self) -> None:
        self.sent_messages += self.take_outbox()

    def published(self) -> list[Message]:
        self.flush()
        return [m for m in self.sent_messages if isinstance(m, (NodeState, Setpoints))]

    def sent(self) -> list[Setpoints]:
        return [m for m in self.published() if isinstance(m, Setpoints)]

    def records(self) -> list[dict[str, Any]]:
        self.flush()
        return [{"kind": m.kind, **m.fields} for m in self.sent_messages if isinstance(m, Record)]

    def status(self) -> dict[str, Any]:
        self.flush()
        reports = [m for m in self.sent_messages if isinstance(m, StatusReport)]
        return reports[-1].body if reports else {}


def setpoints(term: int, seq: int, leader: str = "node2", **shares: float) -> Setpoints:
    return Setpoints(leader=leader, term=term, seq=seq, t_wall=0.0,
                     shares={node: Share(p) for node, p in (shares or {"node1": 1000.0}).items()})


def peer_state(node: str, soc: float, site_state: SiteState = SiteState.RUN) -> NodeState:
    return NodeState(node=node, t_wall=0.0, soc_pct=soc, soh_pct=100.0, capacity_wh=1024.0, p_w=0.0,
                     limit_charge_w=5000.0, limit_discharge_w=5000.0, site_state=int(site_state), health="ok",
                     errors="", valid=True, raft_role="follower", raft_term=3, setpoint_w=0.0, setpoint_term=3,
                     setpoint_seq=1, fallback=False)


class Node(Harness):
    """The `cluster` (and optionally `cluster_master`) program of one node, scanned at 0.1 s."""

    def __init__(self, link: ScriptedLink, node: NodeParams = NodeParams(), master: MasterParams | None = None):
        self.link = link
        self.program = ClusterNode("cluster", node)
        self.master = ClusterMaster("cluster_master", master) if master is not None else None
        super().__init__([self.program] + ([self.master] if self.master else []), SITE_TAGS, period_s=0.1)
        for program in self.programs:
            program.attach_cluster(link)  # type: ignore[attr-defined]
