"""The Raft engine (pysyncobj) of one node, and the leader lease that gates actuation.

pysyncobj runs in its own thread; `view()` reads its state without blocking (30 to 60 us),
so the scan can call it every scan. Two pysyncobj habits make its role flag unfit to gate
actuation on its own (see ../shared/reference/local_peers.md): it reports the last known
leader until an election ends, and an isolated old leader believes it leads until its
`leaderFallbackTimeout`. So a node *commands* only while

  * pysyncobj says it is the leader, has a quorum, and names itself leader, and
  * it holds a lease: an entry it proposed in its current term was committed by a quorum,
    and that proposal is younger than `lease_s`.

A follower that acknowledged the entry restarts its election timer, and no election can end
before `raft_min_timeout_s` after that, so with `lease_s < raft_min_timeout_s` the lease of a
paused, partitioned or deposed leader runs out before (or as) the next leader's starts. The
lease is renewed every `lease_renew_s` by a thread of its own (a no-op committed through the
log). A leader that was SIGSTOPped and resumes finds its lease expired and commands nothing
until a new commit succeeds, which it cannot once the others have moved to a higher term.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.batteries import ReplDict
from pysyncobj.monotonic import monotonic as monotonicTime
from pysyncobj.syncobj import _RAFT_STATE

from programs.cluster.view import RaftView, Role
from runtime.config.schema import ClusterConfig, ClusterNodeConfig

log = logging.getLogger(__name__)
_FOLLOWER, _CANDIDATE, _LEADER = _RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE, _RAFT_STATE.LEADER
_FAILURES = {value: name.lower().replace("_", " ") for name, value in vars(FAIL_REASON).items() if name.isupper()}


class _LeaseLog(SyncObj):
    """The replicated state machine (nothing but lease entries, no-ops), with a pre-vote.

    pysyncobj stands for election as soon as its timer runs out, with a new term: a node that
    resumes after a pause, or comes back from a partition, forces an election and unseats a
    healthy leader. Here a node whose timer ran out first asks the others whether they would
    vote for it (Raft's pre-vote, Ongaro's thesis 9.6): a node that has heard a leader within
    the minimum election timeout (or is the leader) says no. Only with a majority of yeses
    does the real election start; otherwise the node stays a follower of the term it has, and
    the leader's next heartbeat reaches it. No term is spent on a round that cannot win.
    pysyncobj has no hook for this: the override reaches its (name-mangled) election timer,
    state and log, checked against pysyncobj 0.3.x in tests/cluster/test_raft_engine.py.
    """

    _SyncObj__raftElectionDeadline: float  # pysyncobj's election timer (monotonic time)

    def __init__(self, address: str | None, peers: list[str], conf: SyncObjConf, roster: ReplDict):
        self._heard_leader_at = -math.inf  # when an append_entries of a current leader last came
        self._prevote_term = 0  # the term a pre-vote round asks for; 0: none running
        self._prevotes: set[str] = set()
        self._prevote_won = False
        self.elections = 0  # real elections this node stood in (for tests and logs)
        self.prevotes_refused = 0
        super().__init__(address, peers, conf=conf, consumers=[roster])

    @replicated
    def lease(self, term: int, n: int) -> int:
        return n

    # --- the pre-vote ------------------------------------------------------------------------
    def _onTick(self, timeToWait: float = 0.0) -> None:
        state = self._SyncObj__raftState
        if state in (_FOLLOWER, _CANDIDATE) and self._SyncObj__selfNode is not None:
            now = monotonicTime()
            if self._SyncObj__raftElectionDeadline < now and not self._prevote_won:
                self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
                self._ask_prevotes()
        term = self._SyncObj__raftCurrentTerm
        super()._onTick(timeToWait)
        if self._prevote_won and self._SyncObj__raftCurrentTerm > term:
            self._prevote_won = False  # the election it earned has started
            self.elections += 1
            log.info("raft: standing for election in term %d (pre-vote granted)", self._SyncObj__raftCurrentTerm)

    def _ask_prevotes(self) -> None:
        self._prevote_term = self._SyncObj__raftCurrentTerm + 1
        self._prevotes = {"self"}
        question = {"type": "pre_vote", "term": self._prevote_term, "last_log_index": self._SyncObj__getCurrentLogIndex(),
                    "last_log_term": self._SyncObj__getCurrentLogTerm()}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, question)
        self._count_prevote()

    def _count_prevote(self) -> None:
        if len(self._prevotes) > (len(self._SyncObj__otherNodes) + 1) / 2:
            self._prevote_term = 0
            self._prevote_won = True
            self._SyncObj__raftElectionDeadline = 0  # the next tick stands for election

    def _would_vote(self, message: dict[str, Any]) -> bool:
        if self._SyncObj__raftState == _LEADER:
            return False
        quiet = monotonicTime() - self._heard_leader_at > self._SyncObj__conf.raftMinTimeout
        log_term, log_index = self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex()
        up_to_date = (message["last_log_term"], message["last_log_index"]) >= (log_term, log_index)
        return quiet and up_to_date and message["term"] > self._SyncObj__raftCurrentTerm

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "pre_vote":
            self._SyncObj__transport.send(node, {"type": "pre_vote_response", "term": message["term"],
                                                 "granted": self._would_vote(message)})
            return
        if kind == "pre_vote_response":
            if message["term"] == self._prevote_term:
                if message["granted"]:
                    self._prevotes.add(str(node.id))
                    self._count_prevote()
                else:
                    self.prevotes_refused += 1
            return
        if kind == "append_entries" and message["term"] >= self._SyncObj__raftCurrentTerm:
            self._heard_leader_at = monotonicTime()
        super()._SyncObj__onMessageReceived(node, message)


def sync_conf(cfg: ClusterConfig, password: str | None = None) -> SyncObjConf:
    """pysyncobj's settings. With a password its frames are encrypted and authenticated
    (Fernet): without one it unpickles whatever reaches its port (runtime/cluster/security.py).
    A member that does not vote listens on no Raft port at all (it only connects out)."""
    me = next(n for n in cfg.nodes if n.id == cfg.node_id)
    return SyncObjConf(
        password=password,
        bindAddress=f"{me.host}:{me.raft_port}" if me.voter else None,  # the node's address only, never 0.0.0.0
        raftMinTimeout=cfg.raft_min_timeout_s,
        raftMaxTimeout=cfg.raft_max_timeout_s,
        appendEntriesPeriod=cfg.append_entries_period_s,
        connectionTimeout=cfg.connection_timeout_s,
        connectionRetryTime=cfg.connection_retry_s,
        leaderFallbackTimeout=cfg.leader_fallback_timeout_s,
        autoTickPeriod=min(0.01, cfg.append_entries_period_s / 2),
        useFork=False,  # never fork a multi-threaded controller for log compaction
        logCompactionMinEntries=2000,
        logCompactionMinTime=30,
        commandsWaitLeader=False,
        dynamicMembershipChange=True,  # `ems cluster add --voter` / `remove`: voters join and leave at run time
    )


def startup_grace_s(cfg: ClusterConfig) -> float:
    """How long a starting node waits before its first election: long enough to hear a leader."""
    return cfg.connection_retry_s + cfg.raft_max_timeout_s + 2 * cfg.append_entries_period_s


class RaftEngine:
    """pysyncobj for the nodes of `cfg`, plus the lease thread. `start()`, `view()`, `stop()`.

    Only the voters are pysyncobj's nodes. A node that does not vote runs pysyncobj read-only
    (no address of its own): it connects to every voter, the leader replicates its log and
    heartbeats to it, and so it knows the term and the leader as the voters do, which is all
    its fencing needs; it never stands for election and never counts toward a quorum.
    """

    def __init__(self, cfg: ClusterConfig, password: str | None = None):
        self.cfg = cfg
        self.password = password
        self.node_id = cfg.node_id
        me = next(n for n in cfg.nodes if n.id == cfg.node_id)
        self.voter = me.voter
        self._address = f"{me.host}:{me.raft_port}" if me.voter else None  # None: read-only
        self._peers: dict[str, str] = {}  # Raft address -> node id, the other voters
        self._ids: dict[str, str] = {}  # and every voter
        self.set_voters(cfg.voters)
        self._obj: _LeaseLog | None = None
        # Members added and removed at run time (`ems cluster add/remove`): node id -> its
        # [[cluster.nodes]] entry and public key, or None once removed. Replicated through the
        # log and in pysyncobj's snapshots, so a node that (re)joins learns it from the leader.
        self.roster = ReplDict()
        self._lock = threading.Lock()
        self._lease_term = 0
        self._lease_issued = -1e18
        self._issued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="raft-lease", daemon=True)

    def start(self) -> None:
        conf = sync_conf(self.cfg, self.password)
        # A node that (re)starts first listens for a while before it may stand for election: an
        # existing leader reaches it within a connection retry, so it joins as a follower instead
        # of disrupting the cluster with a higher term (pysyncobj has no pre-vote). Only the first
        # election deadline is computed from these; the tuned timeouts apply from then on.
        cfg = self.cfg
        grace = startup_grace_s(cfg)
        conf.raftMinTimeout, conf.raftMaxTimeout = grace, grace + cfg.raft_max_timeout_s - cfg.raft_min_timeout_s
        conf.connectionTimeout = max(cfg.connection_timeout_s, conf.raftMaxTimeout)  # pysyncobj checks this
        self._obj = _LeaseLog(self._address, list(self._peers), conf=conf, roster=self.roster)
        conf.raftMinTimeout, conf.raftMaxTimeout = cfg.raft_min_timeout_s, cfg.raft_max_timeout_s
        conf.connectionTimeout = cfg.connection_timeout_s
        self._thread.start()
        log.info("raft: node %s on %s, voters %s", self.node_id, self._address or "no port (a member, not a voter)",
                 ", ".join(f"{node}@{addr}" for addr, node in self._peers.items()) or "none")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        if self._obj is not None:
            self._obj.destroy()
            self._obj = None

    # --- the view the scan reads -------------------------------------------------------------
    def view(self) -> RaftView:
        obj = self._obj
        if obj is None:
            return RaftView(self.node_id, Role.FOLLOWER, 0, None, False, False, {}, self.voter)
        status = obj.getStatus()
        term = status["raft_term"]
        leader = status["leader"]
        leader_id = self._ids.get(leader.address) if leader is not None else None
        with self._lock:
            lease_ok = self._lease_term == term and time.monotonic() - self._lease_issued < self.cfg.lease_s
        reachable = {node: status.get(f"partner_node_status_server_{addr}", 0) == 2
                     for addr, node in self._peers.items()}
        return RaftView(self.node_id, Role(status["state"]), term, leader_id, bool(status["has_quorum"]),
                        lease_ok, reachable, self.voter)

    # --- the roster --------------------------------------------------------------------------
    def set_voters(self, voters: Iterable[ClusterNodeConfig]) -> None:
        """The voters as the roster now has them (the io_map's and those added at run time):
        whom `view()` names as leader and reports reachable, and, before `start()`, the
        partners pysyncobj starts with. Once running, pysyncobj's own membership follows its
        log; this only keeps the names. The maps are swapped whole: `view()` reads them on
        other threads."""
        addresses = {n.id: f"{n.host}:{n.raft_port}" for n in voters}
        self._peers = {addr: node for node, addr in addresses.items() if node != self.node_id}
        self._ids = {addr: node for node, addr in addresses.items()}

    def roster_entries(self) -> dict[str, Any]:
        """The roster as applied here so far (a copy; any thread)."""
        return dict(self.roster.rawData()) if self._obj is not None else {}

    def propose_roster(self, node: str, entry: dict[str, Any] | None,
                       voter_address: str | None = None) -> Future[None] | None:
        """Propose a roster change through the log; only the commanding leader may (None
        otherwise). The change is applied on every node once a quorum has it; the future
        says when (or why not). A voter joining or leaving (`voter_address`, its Raft
        host:port) is first pysyncobj's membership change (after which it counts toward the
        quorum, or no longer does), and only once that is committed its roster entry."""
        obj = self._obj
        if obj is None or not self.view().commanding:
            return None
        done: Future[None] = Future()
        if voter_address is None:
            self.roster.set(node, entry, callback=partial(self._on_roster_commit, node, done))
        elif entry is not None:
            obj.addNodeToCluster(voter_address, callback=partial(self._on_voters_commit, node, entry, done))
        else:
            obj.removeNodeFromCluster(voter_address, callback=partial(self._on_voters_commit, node, entry, done))
        return done

    def _on_voters_commit(self, node: str, entry: dict[str, Any] | None, done: Future[None], _result: Any,
                          error: Any) -> None:
        if error != FAIL_REASON.SUCCESS:
            why = ("another membership change is not committed yet" if error == FAIL_REASON.REQUEST_DENIED
                   else f"pysyncobj: {_FAILURES.get(error, error)}")
            log.warning("raft: %s of voter %s not committed (%s)", "addition" if entry else "removal", node, why)
            done.set_exception(RuntimeError(why))
            return
        log.info("raft: voter %s %s the cluster's membership", node, "joined" if entry else "left")
        self.roster.set(node, entry, callback=partial(self._on_roster_commit, node, done))

    @staticmethod
    def _on_roster_commit(node: str, done: Future[None], _result: Any, error: Any) -> None:
        if error != FAIL_REASON.SUCCESS:
            log.warning("raft: the roster change of %s was not committed (%s)", node, error)
            done.set_exception(RuntimeError(f"the roster change was not committed ({_FAILURES.get(error, error)})"))
        else:
            done.set_result(None)

    # --- the lease ---------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        period = self.cfg.lease_renew_s
        while not self._stop.wait(period):
            obj = self._obj
            if obj is None:
                continue
            try:
                if obj._isLeader():
                    term = obj.raftCurrentTerm
                    self._issued += 1
                    obj.lease(term, self._issued, callback=partial(self._on_commit, term, time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - never let the lease thread die; the lease just lapses
                log.warning("raft: lease renewal failed: %s", exc)

    def _on_commit(self, term: int, issued: float, result: Any, error: Any) -> None:
        """Called by pysyncobj's thread when the entry is committed (or fails)."""
        if error != FAIL_REASON.SUCCESS:
            return
        with self._lock:
            if term > self._lease_term or (term == self._lease_term and issued > self._lease_issued):
                self._lease_term, self._lease_issued = term, issued
