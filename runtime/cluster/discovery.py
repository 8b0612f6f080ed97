"""Discovery of cluster nodes on the local network: UDP multicast beacons (behind a flag).

Every `period_s` a node sends one beacon to `group:port` with its cluster (the site id), its
node id and its ports; it listens on the same group and reports each node it has not seen
before. TTL 1: beacons never pass a router. Discovered nodes join the transport (their state
is received and shown); Raft voters stay the io_map's nodes (docs/cluster.md). Tests run this
only inside a private network namespace, so multicast never leaves the machine.

Beacons are signed: an HMAC-SHA256 over the beacon, keyed by the cluster secret
(runtime/cluster/security.py), and they carry the node's public CURVE key, so a node that
does not hold the secret is never subscribed to. Discovery is off unless `[cluster] discovery`.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import struct
import threading
from collections.abc import Callable

import attrs

log = logging.getLogger(__name__)

Signer = Callable[[bytes], str]  # HMAC of a beacon's body


@attrs.frozen
class Beacon:
    cluster: str
    node: str
    host: str
    raft_port: int
    pub_port: int
    rep_port: int
    public_key: str = ""  # Z85 CURVE key ("" in an insecure lab)

    def _body(self) -> bytes:
        return json.dumps({"ems_cluster": 1, **attrs.asdict(self)}, separators=(",", ":"), sort_keys=True).encode()

    def encode(self, sign: Signer | None = None) -> bytes:
        body = {"ems_cluster": 1, **attrs.asdict(self)}
        if sign is not None:
            body["mac"] = sign(self._body())
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, sign: Signer | None = None) -> Beacon | None:
        """The beacon, or None for anything else: malformed, another protocol, or (with `sign`)
        not signed with this cluster's secret."""
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.pop("ems_cluster", None) != 1:
                return None
            mac = body.pop("mac", "")
            beacon = cls(**body)
        except (ValueError, TypeError, RecursionError):
            return None
        if sign is not None and not (isinstance(mac, str) and hmac.compare_digest(mac, sign(beacon._body()))):
            return None
        if not all(isinstance(p, int) for p in (beacon.raft_port, beacon.pub_port, beacon.rep_port)):
            return None
        return beacon


class Discovery:
    """Sends this node's beacon and reports the other nodes of the same cluster."""

    def __init__(self, beacon: Beacon, group: str, port: int, period_s: float,
                 on_found: Callable[[Beacon], None], sign: Signer | None = None):
        self.beacon = beacon
        self.sign = sign
        self.refused = 0
        self.group = group
        self.port = port
        self.period_s = period_s
        self.on_found = on_found
        self.seen: dict[str, Beacon] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._recv: socket.socket | None = None
        self._send: socket.socket | None = None

    def start(self) -> None:
        recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        recv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            recv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        recv.bind(("", self.port))
        membership = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton("0.0.0.0"))
        recv.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        recv.settimeout(0.2)
        send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self._recv, self._send = recv, send
        for target, name in ((self._announce, "cluster-beacon"), (self._listen, "cluster-discovery")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("discovery: beacons on %s:%d every %.1f s", self.group, self.port, self.period_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1.0)
        for sock in (self._recv, self._send):
            if sock is not None:
                sock.close()

    def _announce(self) -> None:
        data = self.beacon.encode(self.sign)
        while not self._stop.is_set():
            try:
                assert self._send is not None
                self._send.sendto(data, (self.group, self.port))
            except OSError as exc:
                log.warning("discovery: beacon not sent: %s", exc)
            self._stop.wait(self.period_s)

    def _listen(self) -> None:
        assert self._recv is not None
        while not self._stop.is_set():
            try:
                data, _addr = self._recv.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            beacon = Beacon.decode(data, self.sign)
            if beacon is None:
                self.refused += 1
                continue
            if beacon.cluster != self.beacon.cluster or beacon.node == self.beacon.node:
                continue
            if self.seen.get(beacon.node) != beacon:
                self.seen[beacon.node] = beacon
                log.info("discovery: node %s at %s (raft %d, pub %d, rep %d)", beacon.node, beacon.host,
                         beacon.raft_port, beacon.pub_port, beacon.rep_port)
                self.on_found(beacon)
