"""ZeroMQ between the nodes of a cluster, authenticated with CURVE.

* PUB/SUB: every node binds a PUB socket; it holds one SUB socket per peer, connected to that
  peer's PUB with the peer's public key. So every message is known to come from the peer it
  names: a node state from another node, or setpoints naming another leader, are forged and
  dropped. Node states and setpoints are republished every scan, so a subscriber that joins
  late (ZeroMQ's slow joiner) or a restarted node catches up within a scan.
* REQ/REP: every node answers requests on its REP socket (status, cluster commands) from the
  members and the command keys only (`ems cluster status`, `ems cluster state`).

Every receive path survives any input: frames above `MAX_MESSAGE_BYTES` are refused by libzmq,
a multipart request gets an error reply, a body that is not a valid message (bad JSON, nested
too deep, wrong types) is counted and dropped. The transport's thread is supervised: should it
fail anyway, it logs why, backs off and starts again with new sockets.

Socket ownership follows ZeroMQ's rule of one thread per socket: the scan thread owns the PUB
socket (sends never block: a full queue drops); the transport's own thread owns the SUB and
REP sockets and hands received messages to the scan through the cluster link's inbox.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.auth.thread

from programs.cluster.messages import Arrival, Incoming, Message, NodeState
from runtime.cluster.codec import MessageError, decode, encode
from runtime.cluster.security import ClusterSecrets

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], str], dict[str, Any]]  # (request, who asks) -> reply
POLL_MS = 20
MAX_MESSAGE_BYTES = 65_536  # a node state is about 500 bytes, the setpoints of 16 nodes about 1 kB
RESTART_BACKOFF_S = (0.1, 2.0)
MEMBERS, COMMANDS = "members", "commands"  # ZAP domains: who may subscribe, who may ask


def endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


class _Keys:
    """The ZAP allow-lists (pyzmq calls `callback` from the authenticator's thread)."""

    def __init__(self, secrets: ClusterSecrets):
        self.members = {key for key in secrets.member_keys.values()}
        self.commands = set(secrets.command_keys)
        self.denied = 0

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in (self.members if domain == MEMBERS else self.commands)
        if not allowed:
            self.denied += 1
            if self.denied in (1, 10, 100) or self.denied % 1000 == 0:
                log.warning("cluster: %d connections refused (unknown CURVE key, latest on %s)", self.denied, domain)
        return allowed


class Transport:
    """One node's sockets. `start()`, then `publish` (scan thread); what arrives goes to `inbox`."""

    def __init__(self, node_id: str, pub: str, rep: str, peers: dict[str, str], handler: Handler,
                 inbox: collections.deque[Incoming], secrets: ClusterSecrets,
                 clock: Callable[[], float] = time.monotonic):
        self.node_id = node_id
        self.clock = clock  # the scans' monotonic clock: a state's arrival is stamped on it
        self.pub_endpoint = pub
        self.rep_endpoint = rep
        self.peers = dict(peers)  # node id -> PUB endpoint
        self.handler = handler
        self.inbox = inbox  # the cluster link's: received messages go straight to the programs
        self.secrets = secrets
        self.keys = _Keys(secrets)
        self.names = dict(secrets.command_keys)  # public key -> who, for the request handler
        self.server_keys = dict(secrets.member_keys)  # node id -> its PUB socket's public key
        self.bad_messages = 0
        self.forged_messages = 0
        self.bad_requests = 0
        self.dropped_sends = 0
        self.published = 0  # messages handed to the PUB socket
        self.restarts = 0
        self._connect: queue.SimpleQueue[tuple[str, str | None, bytes | None]] = queue.SimpleQueue()  # None: drop
        self._context = zmq.Context()
        self._auth: zmq.auth.thread.ThreadAuthenticator | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="cluster-transport", daemon=True)
        self._ready = threading.Event()
        self._error: Exception | None = None

    def start(self) -> None:
        if self.secrets.secure:
            self._auth = zmq.auth.thread.ThreadAuthenticator(self._context, log=logging.getLogger(f"{__name__}.zap"))
            self._auth.start()
            self._auth.configure_curve_callback(MEMBERS, credentials_provider=self.keys)
            self._auth.configure_curve_callback(COMMANDS, credentials_provider=self.keys)
        pub = self._context.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 200)
        self._serve_as(pub, MEMBERS)
        pub.bind(self.pub_endpoint)
        self._pub = pub
        self._thread.start()
        self._ready.wait(5.0)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        if self._pub is not None:
            self._pub.close(0)
            self._pub = None
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    # --- scan side ---------------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        pub = self._pub
        if pub is None:
            return
        try:
            pub.send_multipart(encode(message), zmq.NOBLOCK)
            self.published += 1
        except zmq.Again:
            self.dropped_sends += 1

    def subscribe(self, node: str, pub_endpoint: str, public_key: bytes | None) -> None:
        """Also listen to this node (a discovered one, with its public key); any thread."""
        self._connect.put((node, pub_endpoint, public_key))

    def admit(self, node: str, pub_endpoint: str, public_key: bytes | None) -> None:
        """A member added at run time: allow its key (to subscribe and to ask) and listen to it."""
        if public_key is not None:
            self.keys.members.add(public_key)
            self.keys.commands.add(public_key)
            self.names[public_key] = node
            self.server_keys[node] = public_key
        self.subscribe(node, pub_endpoint, public_key)

    def dismiss(self, node: str, public_key: bytes | None) -> None:
        """A member removed at run time: refuse its key from now on and stop listening to it."""
        if public_key is not None:
            self.keys.members.discard(public_key)
            self.keys.commands.discard(public_key)
            self.names.pop(public_key, None)
            self.server_keys.pop(node, None)
        self._connect.put((node, None, None))

    # --- the transport's thread --------------------------------------------------------------
    def _serve_as(self, sock: zmq.Socket[bytes], domain: str) -> None:
        """Make `sock` a CURVE server for `domain`'s keys (nothing in an insecure lab)."""
        if self.secrets.secure:
            sock.zap_domain = domain.encode()
            sock.curve_secretkey = self.secrets.secret_key
            sock.curve_publickey = self.secrets.public_key
            sock.curve_server = True

    def _subscriber(self, node: str, pub_endpoint: str, server_key: bytes | None) -> zmq.Socket[bytes]:
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if self.secrets.secure:
            if server_key is None:
                raise ValueError(f"no public key for node {node!r}")
            sub.curve_secretkey = self.secrets.secret_key
            sub.curve_publickey = self.secrets.public_key
            sub.curve_serverkey = server_key
        sub.connect(pub_endpoint)
        return sub

    def _supervise(self) -> None:
        """Run the receive loop; should it fail, log it, wait and run it again with new sockets."""
        backoff = RESTART_BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                self._serve()
                return
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any bug or input
                if not self._ready.is_set():  # the sockets could not be set up at all: start() says so
                    self._error = exc
                    self._ready.set()
                    return
                self.restarts += 1
                log.error("cluster: transport failed (%s: %s); restart %d in %.1f s", type(exc).__name__, exc,
                          self.restarts, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_S[1])

    def _serve(self) -> None:
        subs: dict[zmq.Socket[bytes], str] = {}
        rep = self._context.socket(zmq.REP)
        try:
            rep.setsockopt(zmq.LINGER, 0)
            rep.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            self._serve_as(rep, COMMANDS)
            rep.bind(self.rep_endpoint)
            for node, address in self.peers.items():
                subs[self._subscriber(node, address, self.server_keys.get(node))] = node
            self._ready.set()
            poller = zmq.Poller()
            poller.register(rep, zmq.POLLIN)
            for sub in subs:
                poller.register(sub, zmq.POLLIN)
            while not self._stop.is_set():
                while not self._connect.empty():
                    node, to, key = self._connect.get()
                    if to is None:
                        self._unsubscribe(node, subs, poller)
                    elif node not in self.peers:
                        self.peers[node] = to
                        sub = self._subscriber(node, to, key)
                        subs[sub] = node
                        poller.register(sub, zmq.POLLIN)
                for sock, _ in poller.poll(POLL_MS):
                    if sock is rep:
                        self._answer(rep)
                    else:
                        self._receive(sock, subs[sock])
        finally:
            for sub in subs:
                sub.close(0)
            rep.close(0)

    def _unsubscribe(self, node: str, subs: dict[zmq.Socket[bytes], str], poller: zmq.Poller) -> None:
        self.peers.pop(node, None)
        for sub in [s for s, n in subs.items() if n == node]:
            poller.unregister(sub)
            sub.close(0)
            del subs[sub]

    def _receive(self, sub: zmq.Socket[bytes], peer: str) -> None:
        for _ in range(1000):
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = decode(frames)
            except MessageError as exc:
                self.bad_messages += 1
                if self.bad_messages in (1, 10, 100) or self.bad_messages % 1000 == 0:
                    log.warning("cluster: %d bad messages dropped; latest from %s: %s", self.bad_messages, peer, exc)
                continue
            sender = message.node if isinstance(message, NodeState) else message.leader
            if sender != peer:
                self.forged_messages += 1
                if self.forged_messages in (1, 10, 100) or self.forged_messages % 1000 == 0:
                    log.warning("cluster: %d forged messages dropped; latest from %s in the name of %r",
                                self.forged_messages, peer, sender)
                continue
            self.inbox.append(Arrival(message, self.clock()) if isinstance(message, NodeState) else message)

    def _answer(self, rep: zmq.Socket[bytes]) -> None:
        frames = rep.recv_multipart(copy=False)
        who = self._who(frames[0])
        try:
            if len(frames) != 1:
                raise ValueError(f"a request is one frame, got {len(frames)}")
            request = json.loads(frames[0].bytes)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply = self.handler(request, who)
        except (ValueError, RecursionError) as exc:
            self.bad_requests += 1
            reply = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:
            self.bad_requests += 1
            log.exception("cluster: request from %s failed", who)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        rep.send(json.dumps(reply, separators=(",", ":")).encode())

    def _who(self, frame: zmq.Frame) -> str:
        """The member or command key that sent the request (its name), or "lab" without CURVE."""
        if not self.secrets.secure:
            return "lab"
        try:
            user = frame.get("User-Id")  # the Z85 public key the authenticator allowed
        except zmq.ZMQError:
            return "unknown"
        return self.names.get(str(user).encode(), "unknown")


def request(endpoint_: str, body: dict[str, Any], timeout_s: float = 1.0, secrets: ClusterSecrets | None = None,
            server_key: bytes | None = None) -> dict[str, Any]:
    """One request/reply round trip (CURVE when `secrets` has keys); TimeoutError when nobody
    answers in time, which is also what a server that refuses the key looks like."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
    if secrets is not None and secrets.secure:
        sock.curve_secretkey = secrets.secret_key
        sock.curve_publickey = secrets.public_key
        sock.curve_serverkey = server_key
    try:
        sock.connect(endpoint_)
        sock.send(json.dumps(body).encode())
        reply = json.loads(sock.recv())
    except zmq.Again:
        raise TimeoutError(f"no answer from {endpoint_} within {timeout_s} s") from None
    finally:
        sock.close(0)
    if not isinstance(reply, dict):
        raise ValueError(f"{endpoint_} answered {reply!r}")
    return reply
