"""One node's cluster programs in-process, on hand-made tags and a fake cluster link, scan by scan."""

from __future__ import annotations

from typing import Any

from programs.cluster import ClusterMaster, ClusterNode, MasterParams, NodeParams
from programs.enums import SiteState, StateCommand
from runtime.cluster.membership import Membership
from runtime.cluster.messages import Message, NodeState, Setpoints, Share
from runtime.cluster.view import RaftView, Role
from runtime.image import ProcessImage
from plc.program import ScanContext
from plc.tags import Access, Area, DType, TagSpec

NODES = ("node1", "node2", "node3")


def memory(name: str, dtype: DType = DType.FLOAT32, initial: Any = 0.0, **kw: Any) -> TagSpec:
    return TagSpec(name=name, dtype=dtype, area=Area.MEMORY, access=Access.RW, initial=initial, **kw)


SITE_TAGS = [
    memory("soc_pct", initial=50.0), memory("soh_pct", initial=100.0), memory("inverter_p_w"),
    memory("limit_charge_w", initial=5000.0), memory("limit_discharge_w", initial=5000.0),
    memory("site_state", DType.ENUM, int(SiteState.RUN), enum_labels=tuple(s.name.lower() for s in SiteState)),
    memory("site_state_cmd", DType.ENUM, 0, enum_labels=tuple(s.name.lower() for s in StateCommand)),
    memory("ext_p_setpoint_w"), memory("ext_heartbeat", DType.UINT16, 0), memory("grid_power_w"),
    memory("cluster_baseline_p_w"), memory("cluster_grid_setpoint_w"), memory("cluster_soc_min_pct", initial=5.0),
    memory("cluster_soc_max_pct", initial=95.0),
]


class FakeLink:
    """What the cluster service offers the programs, with the Raft view set by the test."""

    def __init__(self, node_id: str = "node1"):
        self.node_id = node_id
        self.membership = Membership(node_id, NODES, stale_after_s=0.5, offline_after_s=1.5)
        self.status: dict[str, Any] = {}
        self.raft = RaftView(node_id, Role.FOLLOWER, 3, "node2", True, False, {n: True for n in NODES})
        self.inbox: list[Message] = []
        self.published: list[Message] = []
        self.records: list[dict[str, Any]] = []
        self.commands: list[str] = []

    def leader(self, term: int, lease: bool = True) -> None:
        self.raft = RaftView(self.node_id, Role.LEADER, term, self.node_id, True, lease, {n: True for n in NODES})

    def view(self) -> RaftView:
        return self.raft

    def current_view(self) -> RaftView:
        return self.raft

    def drain(self) -> list[Message]:
        out, self.inbox = self.inbox, []
        return out

    def publish(self, message: Message) -> None:
        self.published.append(message)
        if isinstance(message, Setpoints):
            self.inbox.append(message)

    def record(self, kind: str, **fields: Any) -> None:
        self.records.append({"kind": kind, **fields})

    def take_commands(self) -> list[str]:
        out, self.commands = self.commands, []
        return out

    def take_discovered(self) -> list[str]:
        return []

    def sent(self) -> list[Setpoints]:
        return [m for m in self.published if isinstance(m, Setpoints)]


def setpoints(term: int, seq: int, leader: str = "node2", **shares: float) -> Setpoints:
    return Setpoints(leader=leader, term=term, seq=seq, t_wall=0.0,
                     shares={node: Share(p) for node, p in (shares or {"node1": 1000.0}).items()})


def peer_state(node: str, soc: float, site_state: SiteState = SiteState.RUN) -> NodeState:
    return NodeState(node=node, t_wall=0.0, soc_pct=soc, soh_pct=100.0, capacity_wh=1024.0, p_w=0.0,
                     limit_charge_w=5000.0, limit_discharge_w=5000.0, site_state=int(site_state), health="ok",
                     errors="", valid=True, raft_role="follower", raft_term=3, setpoint_w=0.0, setpoint_term=3,
                     setpoint_seq=1, fallback=False)


class Node:
    """The `cluster` (and optionally `cluster_master`) program of one node, scanned at 0.1 s."""

    def __init__(self, link: FakeLink, node: NodeParams = NodeParams(), master: MasterParams | None = None):
        self.link = link
        self.program = ClusterNode("cluster", node)
        self.master = ClusterMaster("cluster_master", master) if master is not None else None
        programs = [self.program] + ([self.master] if self.master else [])
        self.image = ProcessImage(SITE_TAGS + [spec for p in programs for spec in p.declare()])
        for program in programs:
            program.bind(self.image)
            program.attach_cluster(link)  # type: ignore[arg-type]
        self.ctx = ScanContext(period_s=0.1)

    def scan(self, n: int = 1) -> None:
        for _ in range(n):
            self.ctx.scan += 1
            self.ctx.t_s += 0.1
            self.ctx.dt_s = 0.1
            self.image.begin_scan(self.ctx.t_s)
            self.program.execute(self.ctx)
            if self.master is not None:
                self.master.execute(self.ctx)

    def __getitem__(self, name: str) -> Any:
        return self.image[name].value

    def set(self, name: str, value: Any) -> None:
        self.image[name].set(value)
