"""ZeroMQ between the nodes of a cluster.

* PUB/SUB: every node binds a PUB socket and subscribes to every peer's. Node states and the
  leader's setpoints are republished every scan, so a subscriber that joins late (ZeroMQ's
  slow joiner) or a node that restarts catches up within a scan; nothing is sent only once.
* REQ/REP: every node answers requests on its REP socket (status, cluster commands); the
  `ems cluster status` command and other nodes use it.

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
from collections.abc import Callable
from typing import Any

import zmq

from programs.cluster.messages import Incoming, Message
from runtime.cluster.codec import MessageError, decode, encode

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
POLL_MS = 20


def endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


class Transport:
    """One node's sockets. `start()`, then `publish` (scan thread); what arrives goes to `inbox`."""

    def __init__(self, pub: str, rep: str, peers: list[str], handler: Handler,
                 inbox: collections.deque[Incoming]):
        self.pub_endpoint = pub
        self.rep_endpoint = rep
        self.peers = list(peers)
        self.handler = handler
        self.inbox = inbox  # the cluster link's: received messages go straight to the programs
        self.bad_messages = 0
        self.dropped_sends = 0
        self._connect: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._context = zmq.Context()
        self._pub: zmq.Socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cluster-transport", daemon=True)
        self._ready = threading.Event()
        self._error: Exception | None = None

    def start(self) -> None:
        pub = self._context.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 200)
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
        self._context.term()

    # --- scan side ---------------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        pub = self._pub
        if pub is None:
            return
        try:
            pub.send_multipart(encode(message), zmq.NOBLOCK)
        except zmq.Again:
            self.dropped_sends += 1

    def subscribe(self, pub_endpoint: str) -> None:
        """Also listen to this PUB endpoint (a discovered node); any thread."""
        self._connect.put(pub_endpoint)

    # --- the transport's thread --------------------------------------------------------------
    def _serve(self) -> None:
        try:
            sub = self._context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            for peer in self.peers:
                sub.connect(peer)
            rep = self._context.socket(zmq.REP)
            rep.setsockopt(zmq.LINGER, 0)
            rep.bind(self.rep_endpoint)
        except zmq.ZMQError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(rep, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                while not self._connect.empty():
                    sub.connect(self._connect.get())
                events = dict(poller.poll(POLL_MS))
                if sub in events:
                    self._receive(sub)
                if rep in events:
                    self._answer(rep)
        finally:
            sub.close(0)
            rep.close(0)

    def _receive(self, sub: zmq.Socket) -> None:
        for _ in range(1000):
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.inbox.append(decode(frames))
            except MessageError as exc:
                self.bad_messages += 1
                if self.bad_messages in (1, 10, 100) or self.bad_messages % 1000 == 0:
                    log.warning("cluster: %d bad messages dropped; latest: %s", self.bad_messages, exc)

    def _answer(self, rep: zmq.Socket) -> None:
        raw = rep.recv()
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply = self.handler(request)
        except Exception as exc:  # noqa: BLE001 - a bad request gets an error reply, never kills the thread
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        rep.send(json.dumps(reply, separators=(",", ":")).encode())


def request(endpoint_: str, body: dict[str, Any], timeout_s: float = 1.0) -> dict[str, Any]:
    """One request/reply round trip; raises TimeoutError when nobody answers in time."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
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
