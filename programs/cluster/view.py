"""A node's Raft state as the scan sees it: role, term, leader, quorum, lease, reachable peers."""

from __future__ import annotations

import enum

import attrs


class Role(enum.IntEnum):
    """pysyncobj's states, same numbers; the order is part of the register map."""

    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


@attrs.frozen
class RaftView:
    """One node's Raft state at one instant."""

    node: str
    role: Role
    term: int
    leader: str | None  # as pysyncobj names it: possibly a dead node until an election ends
    has_quorum: bool
    lease_ok: bool  # a commit proposed in this term, younger than lease_s
    reachable: dict[str, bool] = attrs.Factory(dict)  # voter id -> pysyncobj holds a connection to it
    voter: bool = True  # False: a member that follows Raft read-only and never votes

    @property
    def role_name(self) -> str:
        """The role as the status shows it: "member" for a node that does not vote."""
        return self.role.name.lower() if self.voter else "member"

    @property
    def commanding(self) -> bool:
        """The gate: this node may send setpoints now (docs/cluster.md, "Gating")."""
        return self.role is Role.LEADER and self.leader == self.node and self.has_quorum and self.lease_ok


NO_VIEW = RaftView(node="", role=Role.FOLLOWER, term=0, leader=None, has_quorum=False, lease_ok=False)
