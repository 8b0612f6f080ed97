"""The cluster programs' side of the cluster service: an inbox, an outbox and the Raft view.

The service (runtime/cluster/service.py) owns the sockets and the Raft engine, in threads of
its own. It and the programs meet only here:

* `inbox`: what arrived (peers' node states and setpoints, state requests, discovered nodes),
  appended by the transport's thread, taken by the `cluster` program at the start of a scan;
* `outbox`: what the programs send (this node's state, the leader's setpoints, the status
  report, records), appended during the scan and handed to the transport by the service
  right after it (`ClusterService.flush`, on the scan thread);
* `read_view`: the Raft state, read without blocking, once per scan.

The scan-side state that the three cluster programs share (the membership, this scan's view
and the state requests taken from the inbox) lives here too; only the scan thread touches it,
the service never reads it. `collections.deque` appends and pops are atomic, so the two
queues need no lock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

from programs.cluster.membership import Membership
from programs.cluster.messages import (
    Arrival,
    Discovered,
    Incoming,
    Message,
    Outgoing,
    Record,
    RosterChange,
    Setpoints,
    StateRequest,
)
from programs.cluster.view import NO_VIEW, RaftView

INBOX_SIZE = 10_000  # a scan's worth of messages from many nodes, with room for a slow scan
OUTBOX_SIZE = 1_000  # drained after every scan


class ClusterLink:
    """One node's link between its cluster programs and its cluster service."""

    def __init__(self, node_id: str, node_ids: Iterable[str], read_view: Callable[[], RaftView],
                 stale_after_s: float, offline_after_s: float):
        self.node_id = node_id
        self.inbox: collections.deque[Incoming] = collections.deque(maxlen=INBOX_SIZE)
        self.outbox: collections.deque[Outgoing] = collections.deque(maxlen=OUTBOX_SIZE)
        self._read_view = read_view
        self.view: RaftView = NO_VIEW  # this scan's, read by `refresh`
        self.membership = Membership(node_id, node_ids, stale_after_s, offline_after_s)
        self.commands: list[str] = []  # state requests of this scan, for the cluster master

    # --- scan side ------------------------------------------------------------------------------
    def refresh(self) -> list[Message | Arrival]:
        """Start of a scan: read the Raft view and empty the inbox. Returns the node states and
        setpoints (peers' states as their `Arrival`); state requests go to `commands`, discovered
        nodes into the membership."""
        self.view = self._read_view()
        self.commands = []
        messages: list[Message | Arrival] = []
        inbox = self.inbox
        while inbox:
            item = inbox.popleft()
            if isinstance(item, StateRequest):
                self.commands.append(item.value)
            elif isinstance(item, Discovered):
                self.membership.add(item.node, "discovery")
            elif isinstance(item, RosterChange):
                if item.joined:
                    self.membership.add(item.node, "roster")
                else:
                    self.membership.remove(item.node)
            else:
                messages.append(item)
        return messages

    def send(self, message: Outgoing) -> None:
        self.outbox.append(message)
        if isinstance(message, Setpoints):  # the leader's own share takes the followers' path
            self.inbox.append(message)

    def record(self, kind: str, **fields: Any) -> None:
        self.outbox.append(Record(kind, fields))

    def take_commands(self) -> list[str]:
        commands, self.commands = self.commands, []
        return commands

    # --- service side -----------------------------------------------------------------------------
    def take_outbox(self) -> list[Outgoing]:
        out = []
        outbox = self.outbox
        while outbox:
            out.append(outbox.popleft())
        return out
