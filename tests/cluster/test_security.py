"""Nothing of the cluster that listens is open: hostile input on the Raft port, the REP socket
and the state stream, each against a real node (its cluster service on 127.0.0.1).

The payloads are real attacks: the pickle one does create a file on an unprotected pysyncobj
port (the first test shows it, in the insecure lab mode that exists for that reason only).
"""

from __future__ import annotations

import json
import pickle
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from cluster_kit import free_ports
from testkit.waiting import holds_for, wait_until

from programs.cluster.messages import Arrival, NodeState, Setpoints, Share, StateRequest
from programs.cluster.view import Role
from runtime.cluster import security
from runtime.cluster.codec import encode
from runtime.cluster.discovery import Beacon
from runtime.cluster.raft import RaftEngine
from runtime.cluster.service import ClusterService
from runtime.cluster.transport import request
from runtime.config.schema import ClusterConfig, ClusterNodeConfig

pytestmark = pytest.mark.timeout(60)


class CreatesFile:
    """Unpickling this opens (creates) a file: code execution as the controller's user."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.path), "w"))


def pysyncobj_frame(obj: object) -> bytes:
    """A frame as pysyncobj's TCP connection reads it: length, then zlib-compressed pickle."""
    data = zlib.compress(pickle.dumps(obj), 3)
    return struct.pack("i", len(data)) + data


def connect_raw(port: int, data: bytes) -> socket.socket:
    """A TCP connection that sent `data` and stays open (pysyncobj drops what arrives with the
    close in the same read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    sock.sendall(data)
    return sock


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (/proc/net/tcp, as `ss -ltn` shows)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def cluster_config(ports: list[int], node: str = "node1", **kw: object) -> ClusterConfig:
    nodes = tuple(ClusterNodeConfig(id=f"node{i + 1}", raft_port=ports[3 * i], pub_port=ports[3 * i + 1],
                                    rep_port=ports[3 * i + 2]) for i in range(3))
    return ClusterConfig(enabled=True, node_id=node, nodes=nodes, secret_file="keys/raft.secret", keys_dir="keys",
                         **kw)  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ClusterService]:
    """node1 of a three-node cluster, started alone: its sockets listen, nobody else runs."""
    cfg = cluster_config(free_ports(9))
    security.generate(cfg, tmp_path)
    service = ClusterService(cfg, "site", tmp_path / "data", tmp_path)
    service.start()
    yield service
    service.stop()


def keys_of(service: ClusterService, who: str) -> security.ClusterSecrets:
    return security.load(service.cfg, service.config_dir, client=who)


def rep_endpoint(service: ClusterService) -> str:
    return f"tcp://127.0.0.1:{service.me.rep_port}"


def ask(service: ClusterService, body: dict[str, object], who: str = "cli", timeout_s: float = 2.0) -> dict:
    keys = keys_of(service, who)
    return request(rep_endpoint(service), body, timeout_s, keys, keys.member_keys["node1"])


# --- Raft --------------------------------------------------------------------------------------


def test_the_pickle_payload_is_real_on_an_unprotected_raft_port(tmp_path: Path) -> None:
    ports = free_ports(9)
    cfg = ClusterConfig(enabled=True, node_id="node1", insecure_lab=True,
                        nodes=cluster_config(ports).nodes)
    engine = RaftEngine(cfg, password=None)
    engine.start()
    try:
        target = tmp_path / "owned"
        wait_until(lambda: listening_addresses(ports[0]), 5.0, "the Raft port listening")
        with connect_raw(ports[0], pysyncobj_frame(CreatesFile(target))):
            wait_until(target.exists, 5.0, "the payload executed by pysyncobj without a password")
    finally:
        engine.stop()


def test_a_pickled_payload_to_the_raft_port_is_not_executed(node: ClusterService, tmp_path: Path) -> None:
    target = tmp_path / "owned"
    wait_until(lambda: listening_addresses(node.me.raft_port), 5.0, "the Raft port listening")
    with connect_raw(node.me.raft_port, pysyncobj_frame(CreatesFile(target))):
        holds_for(lambda: not target.exists(), 2.0, "no file made by the payload")


def test_raft_listens_on_the_nodes_address_only(node: ClusterService) -> None:
    wait_until(lambda: listening_addresses(node.me.raft_port), 5.0, "the Raft port listening")
    assert listening_addresses(node.me.raft_port) == {"127.0.0.1"}


def test_a_cluster_without_its_secret_file_does_not_start(tmp_path: Path) -> None:
    service = ClusterService(cluster_config(free_ports(9)), "site", tmp_path / "data", tmp_path)
    with pytest.raises(security.SecurityError, match=r"cluster secret file .*raft.secret does not exist"):
        service.start()


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    cfg = cluster_config(free_ports(9))
    security.generate(cfg, tmp_path)
    (tmp_path / "keys" / "raft.secret").chmod(0o644)
    with pytest.raises(security.SecurityError, match=r"readable by others \(mode 0644\): chmod 600"):
        security.load(cfg, tmp_path)


def test_a_cluster_needs_its_secrets_unless_it_is_a_declared_lab() -> None:
    nodes = cluster_config(free_ports(9)).nodes
    with pytest.raises(ValueError, match="needs secret_file and keys_dir"):
        ClusterConfig(enabled=True, node_id="node1", nodes=nodes)
    assert ClusterConfig(enabled=True, node_id="node1", nodes=nodes, insecure_lab=True).insecure_lab


# --- the command channel (REP) -----------------------------------------------------------------


def test_a_state_command_without_a_key_is_not_answered_and_not_queued(node: ClusterService) -> None:
    with pytest.raises(TimeoutError):
        request(rep_endpoint(node), {"cmd": "state", "value": "idle"}, timeout_s=1.0)
    assert not any(isinstance(m, StateRequest) for m in node.link.inbox)


def test_a_state_command_with_a_key_the_cluster_does_not_know_is_refused(node: ClusterService,
                                                                         tmp_path: Path) -> None:
    _, secret = zmq.auth.create_certificates(str(tmp_path), "mallory")
    mallory = security.ClusterSecrets(None, *zmq.auth.load_certificate(secret))
    server_key = keys_of(node, "cli").member_keys["node1"]
    with pytest.raises(TimeoutError):
        request(rep_endpoint(node), {"cmd": "state", "value": "idle"}, 1.0, mallory, server_key)
    wait_until(lambda: node.transport is not None and node.transport.keys.denied >= 1, 2.0, "the refusal counted")
    assert not any(isinstance(m, StateRequest) for m in node.link.inbox)


def test_the_cli_key_is_answered_and_named(node: ClusterService) -> None:
    assert ask(node, {"cmd": "status"})["ok"] is True
    reply = ask(node, {"cmd": "state", "value": "idle"})
    assert reply == {"ok": False, "error": "not the leader", "leader": None}  # alone: no quorum, no leader


def test_a_two_frame_request_gets_an_error_and_the_socket_goes_on(node: ClusterService) -> None:
    keys = keys_of(node, "cli")
    context = zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 2000)
    sock.curve_secretkey, sock.curve_publickey = keys.secret_key, keys.public_key
    sock.curve_serverkey = keys.member_keys["node1"]
    sock.connect(rep_endpoint(node))
    sock.send_multipart([b'{"cmd": "status"}', b"second frame"])
    reply = json.loads(sock.recv())
    sock.close(0)
    assert reply["ok"] is False and "one frame, got 2" in reply["error"]
    assert ask(node, {"cmd": "status"})["bad_requests"] == 1


def test_a_deeply_nested_request_gets_an_error_and_the_socket_goes_on(node: ClusterService) -> None:
    keys = keys_of(node, "cli")
    context = zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 2000)
    sock.curve_secretkey, sock.curve_publickey = keys.secret_key, keys.public_key
    sock.curve_serverkey = keys.member_keys["node1"]
    sock.connect(rep_endpoint(node))
    sock.send(b"[" * 30_000 + b"]" * 30_000)
    reply = json.loads(sock.recv())
    sock.close(0)
    assert reply["ok"] is False and "bad request" in reply["error"]
    assert ask(node, {"cmd": "status"})["ok"] is True


# --- the state stream (PUB/SUB) ----------------------------------------------------------------


def peer_pub(service: ClusterService, peer: str, with_key: bool = True) -> zmq.Socket[bytes]:
    """A PUB on `peer`'s port: with the peer's own key (a member that lies), or without it."""
    cfg_peer = next(n for n in service.cfg.nodes if n.id == peer)
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    if with_key:
        keys = keys_of(service, peer)
        sock.curve_secretkey, sock.curve_publickey, sock.curve_server = keys.secret_key, keys.public_key, True
    sock.bind(f"tcp://127.0.0.1:{cfg_peer.pub_port}")
    return sock


def state_of(node: str) -> NodeState:
    return NodeState(node=node, t_wall=0.0, soc_pct=50.0, soh_pct=100.0, capacity_wh=1024.0, p_w=0.0,
                     limit_charge_w=0.0, limit_discharge_w=0.0, site_state=1, health="ok", errors="", valid=True,
                     raft_role="follower", raft_term=1, setpoint_w=0.0, setpoint_term=0, setpoint_seq=0,
                     fallback=False)


def drained(service: ClusterService) -> list[object]:
    out = []
    while service.link.inbox:
        out.append(service.link.inbox.popleft())
    return out


def test_a_peer_is_heard_with_its_own_key(node: ClusterService) -> None:
    pub = peer_pub(node, "node2")
    try:
        heard: list[object] = []
        wait_until(lambda: pub.send_multipart(encode(state_of("node2"))) or heard.extend(drained(node)) or heard,
                   5.0, "node2's state heard")
        assert all(isinstance(m, Arrival) and m.state.node == "node2" for m in heard)  # stamped on arrival
    finally:
        pub.close(0)


def test_setpoints_in_another_nodes_name_are_dropped_as_forged(node: ClusterService) -> None:
    pub = peer_pub(node, "node2")
    forged = Setpoints(leader="node3", term=7, seq=2**40, t_wall=0.0, shares={"node1": Share(9000.0)})
    try:
        wait_until(lambda: pub.send_multipart(encode(forged)) or (node.transport.forged_messages > 0), 5.0,
                   "the forged setpoints counted")
        assert not any(isinstance(m, Setpoints) for m in drained(node))
    finally:
        pub.close(0)


def test_a_publisher_without_the_peers_key_is_not_heard(node: ClusterService) -> None:
    pub = peer_pub(node, "node2", with_key=False)  # took node2's port while node2 is down
    try:
        def quiet() -> bool:
            pub.send_multipart(encode(state_of("node2")))
            return not drained(node)
        holds_for(quiet, 1.5, "nothing heard from a publisher without node2's key")
    finally:
        pub.close(0)


def test_a_deeply_nested_message_is_dropped_and_the_transport_lives_on(node: ClusterService) -> None:
    pub = peer_pub(node, "node2")
    try:
        wait_until(lambda: pub.send_multipart([b"state", b"[" * 30_000 + b"]" * 30_000])
                   or node.transport.bad_messages > 0, 5.0, "the nested message counted as bad")
        assert ask(node, {"cmd": "status"})["transport_restarts"] == 0
        heard: list[object] = []
        wait_until(lambda: pub.send_multipart(encode(state_of("node2"))) or heard.extend(drained(node)) or heard,
                   5.0, "node2 heard after the bad message")
    finally:
        pub.close(0)


def test_a_failing_transport_thread_is_restarted(node: ClusterService, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = node.transport
    assert transport is not None
    original = transport._answer
    calls = {"n": 0}

    def breaks_once(rep: zmq.Socket[bytes]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the request path")
        original(rep)

    monkeypatch.setattr(transport, "_answer", breaks_once)
    with pytest.raises(TimeoutError):  # the request that broke the thread is not answered
        ask(node, {"cmd": "status"}, timeout_s=0.5)
    status = wait_until(lambda: _status_or_none(node), 10.0, "the restarted transport answering")
    assert status["transport_restarts"] == 1


def _status_or_none(node: ClusterService) -> dict | None:
    try:
        return ask(node, {"cmd": "status"}, timeout_s=0.5)
    except TimeoutError:
        return None


# --- discovery ---------------------------------------------------------------------------------


def test_a_beacon_not_signed_with_the_cluster_secret_is_refused() -> None:
    sign = security.ClusterSecrets("the-cluster-secret-of-at-least-32-chars").beacon_mac
    other = security.ClusterSecrets("another-secret-of-at-least-32-characters").beacon_mac
    beacon = Beacon("site", "x", "127.0.0.1", 1, 2, 3, "key")
    assert Beacon.decode(beacon.encode(sign), sign) == beacon
    assert Beacon.decode(beacon.encode(other), sign) is None
    assert Beacon.decode(beacon.encode(), sign) is None  # unsigned
    forged = json.loads(beacon.encode(sign))
    forged["pub_port"] = 9999  # redirected to the attacker's publisher
    assert Beacon.decode(json.dumps(forged).encode(), sign) is None


def test_the_raft_view_of_a_lone_node_names_no_leader(node: ClusterService) -> None:
    view = node._read_view()
    assert view.role in (Role.FOLLOWER, Role.CANDIDATE) and not view.commanding


def test_ems_cluster_keys_makes_the_secret_and_every_key_pair_private(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    site = tmp_path / "node1.toml"
    site.write_text((root / "io_maps" / "sim_cluster" / "node1.toml").read_text())
    command = [sys.executable, "-m", "ems.cli", "cluster", "keys", "--io-map", str(site)]
    first = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0 and "ems cluster keys: 9 files made" in first.stdout, first.stderr
    keys = tmp_path / "keys"
    assert sorted(p.name for p in keys.iterdir()) == sorted(
        ["raft.secret"] + [f"{n}.{ext}" for n in ("node1", "node2", "node3", "cli") for ext in ("key", "key_secret")])
    for private in ["raft.secret"] + [f"{n}.key_secret" for n in ("node1", "node2", "node3", "cli")]:
        assert (keys / private).stat().st_mode & 0o077 == 0, private
    again = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=30)
    assert "every file exists already" in again.stdout
