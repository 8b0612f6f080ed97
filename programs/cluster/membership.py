"""Who is in the cluster and how each member is doing, as seen from one node.

Members come from the io_map (and from discovery, when enabled). Each scan a member is
classified from the age of its last state message and what that message says:

  offline   never heard, or silent for `offline_after_s`
  stale     silent for `stale_after_s` (its last values are still shown, not trusted for a split)
  error     its site is in Error
  degraded  its inputs are not valid, it runs on its fallback, or Raft cannot reach it
  online    fresh and healthy

Every change is logged once.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable

import attrs

from programs.cluster.messages import NodeState
from programs.enums import SiteState

log = logging.getLogger(__name__)

# How far the clocks of two nodes may drift apart (1000 ppm: far beyond a quartz's), and how much
# later than the fastest delivery a message may arrive before its sender's clock counts as stepped.
CLOCK_DRIFT = 1e-3
CLOCK_STEP_S = 0.5


class MemberState(enum.IntEnum):
    """Order is part of the register map (append only)."""

    OFFLINE = 0
    ONLINE = 1
    STALE = 2
    DEGRADED = 3
    ERROR = 4


@attrs.define
class Member:
    id: str
    source: str  # "io_map", "discovery", "roster" (added at run time) or "self"
    state: MemberState = MemberState.OFFLINE
    last: NodeState | None = None
    received_s: float = -math.inf  # scan time of the last state message
    sent_s: float = -math.inf  # when it sent that message, on this node's clock (Membership.receive)
    offset_s: float | None = None  # this node's clock minus its wall clock, plus the fastest delivery
    reachable: bool = False  # Raft holds a connection to it (always True for this node)
    reason: str = "never heard"

    @property
    def measured_s(self) -> float:
        """When the power in its last state was measured, on this node's clock."""
        return self.sent_s - (self.last.p_age_s if self.last is not None else 0.0)

    @property
    def usable(self) -> bool:
        """Fresh enough that its values may drive a decision."""
        return self.state in (MemberState.ONLINE, MemberState.DEGRADED) and self.last is not None


class Membership:
    """The members of one node's cluster and their states."""

    def __init__(self, self_id: str, ids: Iterable[str], stale_after_s: float, offline_after_s: float):
        if not stale_after_s < offline_after_s:
            raise ValueError("stale_after_s must be below offline_after_s")
        self.self_id = self_id
        self.stale_after_s = stale_after_s
        self.offline_after_s = offline_after_s
        self.members: dict[str, Member] = {}
        self.now_s = -math.inf  # scan time of the last update
        for node in ids:
            self.add(node, "self" if node == self_id else "io_map")

    def add(self, node: str, source: str) -> Member:
        member = self.members.get(node)
        if member is None:
            member = self.members[node] = Member(node, source, reachable=source == "self")
            if source in ("discovery", "roster"):
                log.info("member %s joined (%s)", node, "discovered" if source == "discovery" else "added")
        return member

    def remove(self, node: str) -> None:
        """A member removed from the cluster (`ems cluster remove`): it leaves the table."""
        if node != self.self_id and self.members.pop(node, None) is not None:
            log.info("member %s left (removed from the cluster)", node)

    def receive(self, state: NodeState, now_s: float, arrived_s: float | None = None) -> None:
        """A state message arrived (from a known member; unknown senders are ignored), read by
        the scan at `now_s`; `arrived_s`: when the transport received it, if it said."""
        member = self.members.get(state.node)
        if member is not None:
            member.sent_s = _sent_s(member, state, now_s, now_s if arrived_s is None else arrived_s)
            member.last = state
            member.received_s = now_s

    def update(self, now_s: float, reachable: dict[str, bool]) -> list[tuple[str, MemberState, MemberState]]:
        """Classify every member; log and return the changes (id, before, after).

        `reachable` names the Raft voters this node holds a connection to. Members that do not
        vote are not in it (pysyncobj knows its read-only peers only by number): one of them
        counts as reachable while its own state says it hears a Raft leader (a term above 0).
        A discovered node is in no node's Raft: never reachable, never given a share.
        """
        changes = []
        self.now_s = now_s
        for member in self.members.values():
            if member.source != "self":
                hears_raft = member.source != "discovery" and member.last is not None and member.last.raft_term > 0
                member.reachable = reachable.get(member.id, hears_raft)
            state, reason = self.classify(member, now_s)
            if state is not member.state:
                changes.append((member.id, member.state, state))
                log.info("member %s: %s -> %s (%s)", member.id, member.state.name.lower(), state.name.lower(), reason)
            member.state, member.reason = state, reason
        return changes

    def classify(self, member: Member, now_s: float) -> tuple[MemberState, str]:
        last = member.last
        age = now_s - member.received_s
        if last is None:
            return MemberState.OFFLINE, "never heard"
        if age > self.offline_after_s:
            return MemberState.OFFLINE, f"silent for {age:.1f} s"
        if age > self.stale_after_s:
            return MemberState.STALE, f"silent for {age:.1f} s"
        if last.site_state == SiteState.ERROR or last.health == "error":
            return MemberState.ERROR, last.errors or "site in error"
        if last.health == "degraded":
            return MemberState.DEGRADED, last.errors or "degraded"
        if not member.reachable:
            return MemberState.DEGRADED, "no Raft connection"
        return MemberState.ONLINE, "ok"

    def usable(self) -> list[Member]:
        return [m for m in self.members.values() if m.usable]

    def count(self, state: MemberState) -> int:
        return sum(1 for m in self.members.values() if m.state is state)


def _sent_s(member: Member, state: NodeState, now_s: float, arrived_s: float) -> float:
    """When `state` left its sender, on this node's clock: its wall-clock stamp plus the smallest
    (arrival - sender's wall clock) seen, which is the clocks' offset plus the fastest delivery.

    `arrived_s` is when the transport received the message (the scan that read it, `now_s`,
    comes up to a scan later: timed by it, the offset would take in the phase between the two
    nodes' scans, up to a scan period); the stamp is when the sender's scan published it, a
    fixed step before its inverter's next write. A new leader times a dead unit's revert from
    this (programs/cluster/aggregate.py). The offset follows a drift of CLOCK_DRIFT; a stamp that
    goes back, or a message later than CLOCK_STEP_S beyond the fastest, starts it afresh (a
    clock stepped).
    """
    sample = arrived_s - state.t_wall
    offset = member.offset_s
    last = member.last
    if offset is not None and member.received_s > -math.inf:
        offset += CLOCK_DRIFT * (now_s - member.received_s)
    if offset is None or last is None or state.t_wall <= last.t_wall or sample > offset + CLOCK_STEP_S:
        offset = sample
    member.offset_s = min(offset, sample)
    return state.t_wall + member.offset_s
