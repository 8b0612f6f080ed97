"""The cluster service of one node: Raft engine, ZeroMQ transport, discovery and the record of
setpoints, started and stopped with the site.

The cluster programs and the service meet in a `ClusterLink` (programs/cluster/link.py) and
nowhere else: the transport's thread appends what arrives to the link's inbox, the programs
append what they send to its outbox, and `flush` (an after-scan hook, on the scan thread)
hands the outbox to the PUB socket, the recorder and the status the REP socket answers with.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from programs.cluster.link import ClusterLink
from programs.cluster.messages import (
    STATE_COMMANDS,
    Discovered,
    NodeState,
    Record,
    RosterChange,
    Setpoints,
    StateRequest,
    StatusReport,
)
from programs.cluster.view import NO_VIEW, RaftView
from runtime.cluster import roster, security
from runtime.cluster.discovery import Beacon, Discovery
from runtime.cluster.raft import RaftEngine
from runtime.cluster.security import ClusterSecrets
from runtime.cluster.transport import Transport, endpoint
from runtime.config.schema import ClusterConfig, ClusterNodeConfig

log = logging.getLogger(__name__)
COMMIT_WAIT_S = 1.0  # how long a member change's request waits for its commit (the tool waits longer)


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

    def __init__(self, cfg: ClusterConfig, site_id: str, data_dir: Path, config_dir: Path):
        self.cfg = cfg
        self.site_id = site_id
        self.config_dir = config_dir  # the io_map's folder: secret and key paths are relative to it
        self.node_id = cfg.node_id
        self.node_ids = tuple(n.id for n in cfg.nodes)
        self.me = next(n for n in cfg.nodes if n.id == cfg.node_id)
        self.link = ClusterLink(cfg.node_id, self.node_ids, self._read_view, cfg.stale_after_s, cfg.offline_after_s)
        self.secrets = ClusterSecrets()
        self.raft: RaftEngine | None = None
        self.transport: Transport | None = None
        self.discovery: Discovery | None = None
        self.recorder = Recorder(data_dir / cfg.applied_log) if cfg.applied_log else None
        self.status: dict[str, Any] = {"node": self.node_id, "leader": None, "term": 0, "members": []}
        self._started = False
        self._view: RaftView = NO_VIEW
        self.pid = os.getpid()  # records of a restarted node's new process are told apart by it
        self.roster_file = roster.RosterFile(data_dir / "cluster_roster.json")
        self._roster: dict[str, Any] = {}  # as applied here (saved in roster_file); the scan thread's
        self._roster_saving = threading.Lock()
        self._roster_generation = self._roster_written = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Load the secrets (SecurityError, one line, when one is missing or exposed), then start
        the transport, Raft and discovery."""
        cfg, me = self.cfg, self.me
        self.secrets = security.load(cfg, self.config_dir)
        if not self.secrets.secure:
            log.warning("CLUSTER NODE %s RUNS WITHOUT AUTHENTICATION ([cluster] insecure_lab = true): anyone who "
                        "reaches its ports can command it; a lab on a private network only", self.node_id)
        peers = {n.id: endpoint(n.host, n.pub_port) for n in cfg.nodes if n.id != cfg.node_id}
        self.transport = Transport(self.node_id, endpoint(me.host, me.pub_port), endpoint(me.host, me.rep_port),
                                   peers, self._handle, self.link.inbox, self.secrets)
        self.raft = RaftEngine(cfg, self.secrets.password)
        if cfg.discovery:
            key = (self.secrets.public_key or b"").decode()
            beacon = Beacon(self.site_id, me.id, me.host, me.raft_port, me.pub_port, me.rep_port, key)
            self.discovery = Discovery(beacon, cfg.discovery_group, cfg.discovery_port, cfg.discovery_period_s,
                                       self._found, self.secrets.beacon_mac if self.secrets.secure else None)
        if self.recorder is not None:
            self.recorder.start()
        self.transport.start()
        self._apply_roster(self.roster_file.load())  # RosterError naming the file when it is unreadable
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
        if self.raft is not None:
            self.raft.stop()
        if self.transport is not None:
            self.transport.stop()
        if self.recorder is not None:
            self.recorder.stop()

    # --- the scan thread ----------------------------------------------------------------------
    def _read_view(self) -> RaftView:
        """The link's view of Raft (called once per scan); kept for the REP socket's answers.
        Roster changes committed since the last scan are applied first, at the scan boundary."""
        if self.raft is not None:
            self._apply_roster(self.raft.roster_entries())
        self._view = self.raft.view() if self.raft is not None else NO_VIEW
        return self._view

    def _apply_roster(self, entries: dict[str, Any]) -> None:
        """Admit or dismiss the members whose roster entry changed; save the roster."""
        changed = {node: value for node, value in entries.items() if self._roster.get(node, ...) != value}
        if not changed:
            return
        for node, value in changed.items():
            self._roster[node] = value
            if node == self.node_id:
                if value is None:
                    log.warning("cluster: this node (%s) was removed from the cluster: it takes no share; stop it",
                                node)
                continue
            self._admit(node, value) if value is not None else self._dismiss(node)
        if self.raft is not None:
            self.raft.set_voters(n for n in roster.members(self.cfg, self._roster).values() if n.voter)
        self._roster_generation += 1
        threading.Thread(target=self._save_roster, args=(self._roster_generation, dict(self._roster)),
                         name="cluster-roster", daemon=True).start()  # the fsync stays off the scan thread

    def _save_roster(self, generation: int, entries: dict[str, Any]) -> None:
        """Write the roster of `generation`, unless a newer one was written first."""
        with self._roster_saving:
            if generation <= self._roster_written:
                return
            try:
                self.roster_file.save(entries)
            except OSError as exc:  # a full disk: the roster is still in Raft; the next change saves it
                log.error("cluster: the roster could not be saved: %s", exc)
                return
            self._roster_written = generation

    def _admit(self, node: str, value: Any) -> None:
        try:
            joined = roster.parse(node, value, self.secrets.secure)
        except ValueError as exc:
            log.warning("cluster: roster entry ignored: %s", exc)
            return
        if self.transport is not None:
            self.transport.admit(node, endpoint(joined.node.host, joined.node.pub_port), joined.public_key)
        self.link.inbox.append(RosterChange(node, joined=True))
        log.info("cluster: %s joined as a member (%s:%d)", node, joined.node.host, joined.node.pub_port)

    def _dismiss(self, node: str) -> None:
        if self.transport is not None:
            self.transport.dismiss(node, self.transport.server_keys.get(node))
        self.link.inbox.append(RosterChange(node, joined=False))
        log.info("cluster: %s removed from the cluster", node)

    def flush(self, _ctx: Any = None) -> None:
        """After each scan: what the programs sent goes out (the PUB socket stays on this thread)."""
        withheld: set[int] = set()
        for message in self.link.take_outbox():
            if isinstance(message, Setpoints) and not self._still_commanding(message):
                withheld.add(message.seq)
            elif isinstance(message, (NodeState, Setpoints)):
                if self.transport is not None:
                    self.transport.publish(message)
            elif isinstance(message, StatusReport):
                self.status = message.body  # one reference swap; the transport's thread reads it
            elif isinstance(message, Record) and self.recorder is not None:
                kind = "withheld" if message.kind == "sent" and message.fields.get("seq") in withheld else message.kind
                self.recorder.put({"t": time.time(), "node": self.node_id, "pid": self.pid, "kind": kind,
                                   **message.fields})

    def _still_commanding(self, message: Setpoints) -> bool:
        """Whether the lease that let the scan command still holds as its setpoints go out.

        The scan read Raft's view when it began; a process paused in between (SIGSTOP, a VM
        stall) would otherwise send, on resuming, setpoints its lease no longer covers. The
        followers drop them by term anyway; this keeps a deposed leader from sending at all.
        """
        if self.raft is None:
            return False
        view = self.raft.view()
        if view.commanding and view.term == message.term:
            return True
        log.warning("cluster: setpoints %d of term %d withheld: the lease ran out during the scan (%s)",
                    message.seq, message.term, "deposed" if view.term != message.term else "no lease")
        return False

    # --- the transport's thread --------------------------------------------------------------
    def _handle(self, request: dict[str, Any], who: str) -> dict[str, Any]:
        """A request on the REP socket, from a member or a command key (`who`, by name)."""
        cmd = request.get("cmd")
        if cmd == "status":
            t = self.transport
            counters = {"bad_messages": t.bad_messages, "forged_messages": t.forged_messages,
                        "bad_requests": t.bad_requests, "transport_restarts": t.restarts,
                        "refused_connections": t.keys.denied} if t is not None else {}
            return {"ok": True, **self.status, **counters}
        if cmd == "state":
            value = request.get("value")
            if value not in STATE_COMMANDS:
                return {"ok": False, "error": f"state must be one of {', '.join(STATE_COMMANDS)}"}
            view = self._view
            if not view.commanding:
                return {"ok": False, "error": "not the leader", "leader": view.leader}
            self.link.inbox.append(StateRequest(value))
            log.info("cluster: state command %s from %s", value, who)
            return {"ok": True, "queued": value, "term": view.term}
        if cmd in ("add", "remove"):
            return self._change_roster(request, who)
        return {"ok": False, "error": f"unknown command {cmd!r}; known: status, state, add, remove"}

    def _change_roster(self, request: dict[str, Any], who: str) -> dict[str, Any]:
        """`ems cluster add/remove`: the leader proposes the change; the tool then waits for it
        in the status (committed and applied). Only a command key may, not a member."""
        if who not in self.cfg.command_keys and who != "lab":
            return {"ok": False, "error": f"{who} may not change the cluster's members (a command key may)"}
        node = request.get("node")
        if not isinstance(node, str) or not node:
            return {"ok": False, "error": "node must be the member's id"}
        if node == self.node_id and request.get("cmd") == "remove":
            return {"ok": False, "error": f"{node} is the leader: stop it first, then remove it from the next"}
        entries = self.raft.roster_entries() if self.raft is not None else {}  # a copy: this is not the scan thread
        current = roster.members(self.cfg, entries)
        if request.get("cmd") == "remove":
            if node not in current:
                return {"ok": False, "error": f"{node} is not a member; members: {', '.join(sorted(current))}"}
            unit = current[node]
            if unit.voter and sum(n.voter for n in current.values()) <= 1:
                return {"ok": False, "error": f"{node} is the last Raft voter: a cluster needs one"}
            value = None
        else:
            try:
                joined = roster.parse(node, request.get("entry"), self.secrets.secure)
            except ValueError as exc:
                return {"ok": False, "error": str(exc)}
            if bool(request.get("voter")) != joined.node.voter:
                return {"ok": False, "error": f"{node}'s io_map says voter = {str(joined.node.voter).lower()}: add it "
                                              f"{'with' if joined.node.voter else 'without'} --voter"}
            why = roster.conflict(self.cfg, entries, joined.node)
            if why is not None:
                return {"ok": False, "error": why}
            value = roster.entry(joined.node, joined.public_key)
            unit = joined.node
        return self._propose(request, who, node, value, unit)

    def _propose(self, request: dict[str, Any], who: str, node: str, value: dict[str, Any] | None,
                 unit: ClusterNodeConfig) -> dict[str, Any]:
        """Propose the change and wait a little for its commit: a refusal (a voter change while
        another is pending, a lost leadership) is answered; a slow commit the tool waits for."""
        address = f"{unit.host}:{unit.raft_port}" if unit.voter else None
        done = self.raft.propose_roster(node, value, address) if self.raft is not None else None
        if done is None:
            return {"ok": False, "error": "not the leader", "leader": self._view.leader}
        log.info("cluster: %s of %s%s proposed by %s", request.get("cmd"), "voter " if address else "", node, who)
        try:
            done.result(timeout=COMMIT_WAIT_S)
        except FutureTimeout:
            pass
        except RuntimeError as exc:
            return {"ok": False, "error": f"{request.get('cmd')} of {node} not committed: {exc}"}
        return {"ok": True, "proposed": request.get("cmd"), "node": node, "term": self._view.term,
                "voter": unit.voter}

    def _found(self, beacon: Beacon) -> None:
        """A signed beacon of a node the io_map does not list: hear it (and let it hear us)."""
        if beacon.node in self.node_ids or self.transport is None:
            return
        key = beacon.public_key.encode() or None
        if key is not None:
            self.transport.keys.members.add(key)
        self.transport.subscribe(beacon.node, endpoint(beacon.host, beacon.pub_port), key)
        self.link.inbox.append(Discovered(beacon.node))


def attach(programs: list[Any], io_map: Any, engine: Any, virtual: bool) -> list[ClusterService]:
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
    service = ClusterService(cfg, io_map.site.id, Path(io_map.site.data_dir), Path(io_map.path).parent)
    for program in users:
        program.attach_cluster(service.link)
    engine.after_scan.append(service.flush)
    return [service]
