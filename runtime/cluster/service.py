"""The cluster service of one node: Raft engine, ZeroMQ transport, discovery and the record of
setpoints, started and stopped with the site. The cluster programs reach it through
`attach_cluster(link)` (they see the `ClusterLink` surface: view, drain, publish, ...).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from runtime.cluster.discovery import Beacon, Discovery
from runtime.cluster.membership import Membership
from runtime.cluster.messages import Message, Setpoints
from runtime.cluster.raft import RaftEngine
from runtime.cluster.transport import Transport, endpoint
from runtime.cluster.view import NO_VIEW, RaftView
from runtime.config.schema import ClusterConfig

log = logging.getLogger(__name__)

STATE_COMMANDS = ("run", "idle", "maintenance", "reset")


class Recorder:
    """JSON lines of every setpoint sent and applied and every role change, written by a
    thread of its own (the scan only queues a dict). For tests and benchmarks."""

    def __init__(self, path: Path):
        self.path = path
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="cluster-record", daemon=True)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def put(self, record: dict[str, Any]) -> None:
        self._queue.put(record)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(2.0)

    def _write(self) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            while True:
                record = self._queue.get()
                if record is None:
                    return
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                if self._queue.empty():
                    out.flush()


class ClusterService:
    """Everything of the cluster that is not the scan. `start()`, `stop()`; the rest is the link."""

    def __init__(self, cfg: ClusterConfig, site_id: str, data_dir: Path):
        self.cfg = cfg
        self.node_id = cfg.node_id
        self.node_ids = tuple(n.id for n in cfg.nodes)
        me = next(n for n in cfg.nodes if n.id == cfg.node_id)
        self.me = me
        peers = [endpoint(n.host, n.pub_port) for n in cfg.nodes if n.id != cfg.node_id]
        self.raft = RaftEngine(cfg)
        self.transport = Transport(endpoint(me.host, me.pub_port), endpoint(me.host, me.rep_port), peers,
                                   self._handle)
        self.discovery = None
        if cfg.discovery:
            beacon = Beacon(site_id, me.id, me.host, me.raft_port, me.pub_port, me.rep_port)
            self.discovery = Discovery(beacon, cfg.discovery_group, cfg.discovery_port, cfg.discovery_period_s,
                                       self._found)
        self.recorder = Recorder(data_dir / cfg.applied_log) if cfg.applied_log else None
        self.membership = Membership(cfg.node_id, self.node_ids, cfg.stale_after_s, cfg.offline_after_s)
        self.status: dict[str, Any] = {"node": self.node_id, "leader": None, "term": 0, "members": []}
        self.commands: collections.deque[str] = collections.deque(maxlen=16)
        self.discovered: collections.deque[str] = collections.deque()
        self._started = False
        self._view: RaftView = NO_VIEW
        self.pid = os.getpid()  # records of a restarted node's new process are told apart by it

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.recorder is not None:
            self.recorder.start()
        self.transport.start()
        self.raft.start()
        if self.discovery is not None:
            self.discovery.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.discovery is not None:
            self.discovery.stop()
        self.raft.stop()
        self.transport.stop()
        if self.recorder is not None:
            self.recorder.stop()

    # --- the link the programs use (scan thread) --------------------------------------------
    def view(self) -> RaftView:
        self._view = self.raft.view()
        return self._view

    def current_view(self) -> RaftView:
        """The view read by this scan's `view()` (one pysyncobj status read per scan)."""
        return self._view

    def drain(self) -> list[Message]:
        return self.transport.drain()

    def publish(self, message: Message) -> None:
        self.transport.publish(message)
        if isinstance(message, Setpoints):  # the leader's own share takes the followers' path
            self.transport.inbox.append(message)

    def record(self, kind: str, **fields: Any) -> None:
        if self.recorder is not None:
            self.recorder.put({"t": time.time(), "node": self.node_id, "pid": self.pid, "kind": kind, **fields})

    def take_commands(self) -> list[str]:
        out = []
        while self.commands:
            out.append(self.commands.popleft())
        return out

    def take_discovered(self) -> list[str]:
        out = []
        while self.discovered:
            out.append(self.discovered.popleft())
        return out

    # --- the transport's thread --------------------------------------------------------------
    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, **self.status, "bad_messages": self.transport.bad_messages}
        if cmd == "state":
            value = request.get("value")
            if value not in STATE_COMMANDS:
                return {"ok": False, "error": f"state must be one of {', '.join(STATE_COMMANDS)}"}
            view = self._view
            if not view.commanding:
                return {"ok": False, "error": "not the leader", "leader": view.leader}
            self.commands.append(value)
            return {"ok": True, "queued": value, "term": view.term}
        return {"ok": False, "error": f"unknown command {cmd!r}; known: status, state"}

    def _found(self, beacon: Beacon) -> None:
        if beacon.node in self.node_ids:
            return
        self.transport.subscribe(endpoint(beacon.host, beacon.pub_port))
        self.discovered.append(beacon.node)


def attach(programs: list[Any], io_map: Any, virtual: bool) -> list[ClusterService]:
    """The cluster service of a site whose programs include cluster programs, attached to them.

    None on the virtual clock (Raft runs in real time): the cluster programs then run detached,
    on their fallback. Raises ValueError when cluster programs lack an enabled [cluster].
    """
    users = [p for p in programs if hasattr(p, "attach_cluster")]
    if not users:
        return []
    cfg = io_map.cluster
    if not cfg.enabled:
        raise ValueError("the cluster programs need [cluster] enabled = true and this node's node_id")
    if virtual:
        return []
    service = ClusterService(cfg, io_map.site.id, Path(io_map.site.data_dir))
    for program in users:
        program.attach_cluster(service)
    return [service]
