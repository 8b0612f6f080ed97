"""Run inside a private network namespace (test_discovery_netns.py): discovery end to end.

Node "a" runs the cluster service with discovery on (the io_map lists a and b); a node "x" that
no io_map lists, but that holds the cluster's secret, announces itself with a signed beacon and
publishes its state over CURVE; a node of another cluster announces itself too, and an impostor
that knows the site id but not the secret. Prints what "a" found, as JSON, on stdout.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zmq
from testkit.waiting import wait_until

from programs.cluster.messages import Arrival, Discovered, NodeState
from runtime.cluster import security
from runtime.cluster.codec import encode
from runtime.cluster.discovery import Beacon, Discovery
from runtime.cluster.service import ClusterService
from runtime.config.schema import ClusterConfig, ClusterNodeConfig

GROUP, PORT = "239.255.71.71", 15199
X_STATE = NodeState(node="x", t_wall=0.0, soc_pct=42.0, soh_pct=100.0, capacity_wh=1024.0, p_w=0.0,
                    limit_charge_w=0.0, limit_discharge_w=0.0, site_state=1, health="ok", errors="", valid=True,
                    raft_role="follower", raft_term=0, setpoint_w=0.0, setpoint_term=0, setpoint_seq=0, fallback=False)


def main() -> int:
    nodes = (ClusterNodeConfig(id="a", raft_port=17001, pub_port=17011, rep_port=17021),
             ClusterNodeConfig(id="b", raft_port=17002, pub_port=17012, rep_port=17022))
    base = Path(tempfile.mkdtemp(prefix="ems-discovery-"))
    cfg = ClusterConfig(enabled=True, node_id="a", nodes=nodes, discovery=True, discovery_period_s=0.2,
                        secret_file="keys/raft.secret", keys_dir="keys", command_keys=("x",))
    security.generate(cfg, base)  # x's key pair is made as a command key: it holds the cluster's secret
    service = ClusterService(cfg, "site", base / "data", base)
    x_keys = security.load(cfg, base, client="x")
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.curve_secretkey, pub.curve_publickey, pub.curve_server = x_keys.secret_key, x_keys.public_key, True
    pub.bind("tcp://127.0.0.1:17031")
    x = Discovery(Beacon("site", "x", "127.0.0.1", 17003, 17031, 17041, (x_keys.public_key or b"").decode()),
                  GROUP, PORT, 0.2, lambda b: None, security.load(cfg, base).beacon_mac)
    stranger = Discovery(Beacon("other-site", "y", "127.0.0.1", 17004, 17032, 17042), GROUP, PORT, 0.2,
                         lambda b: None)
    impostor = Discovery(Beacon("site", "z", "127.0.0.1", 17005, 17033, 17043), GROUP, PORT, 0.2,
                         lambda b: None, lambda body: "0" * 64)  # knows the site id, not the secret
    found: list[str] = []
    states: list[str] = []
    service.start()
    for d in (x, stranger, impostor):
        d.start()

    def x_found_and_heard() -> bool:
        pub.send_multipart(encode(X_STATE))
        arrived = []
        while service.link.inbox:
            arrived.append(service.link.inbox.popleft())
        found.extend(m.node for m in arrived if isinstance(m, Discovered))
        states.extend(m.state.node for m in arrived if isinstance(m, Arrival))
        return bool(found and states)

    try:
        wait_until(x_found_and_heard, 20.0, "node x discovered and its state heard", poll_s=0.1)
        wait_until(lambda: service.discovery is not None and service.discovery.refused >= 2, 5.0,
                   "the impostor's beacons refused", poll_s=0.1)
    finally:
        for d in (x, stranger, impostor):
            d.stop()
        service.stop()
        pub.close(0)
    assert service.discovery is not None
    print(json.dumps({"found": found, "states": sorted(set(states)), "a_saw": sorted(service.discovery.seen),
                      "refused": service.discovery.refused}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
