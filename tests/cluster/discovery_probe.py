"""Run inside a private network namespace (test_discovery_netns.py): discovery end to end.

Node "a" runs the cluster service with discovery on (the io_map lists a and b); a node "x" that
no io_map lists announces itself with a beacon and publishes its state; a node of another
cluster announces itself too. Prints what "a" found, as JSON, on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zmq
from testkit.waiting import wait_until

from programs.cluster.messages import Discovered, NodeState
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
    service = ClusterService(ClusterConfig(enabled=True, node_id="a", nodes=nodes, discovery=True,
                                           discovery_period_s=0.2), "site", Path("/tmp"))
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:17031")
    x = Discovery(Beacon("site", "x", "127.0.0.1", 17003, 17031, 17041), GROUP, PORT, 0.2, lambda b: None)
    stranger = Discovery(Beacon("other-site", "y", "127.0.0.1", 17004, 17032, 17042), GROUP, PORT, 0.2,
                         lambda b: None)
    found: list[str] = []
    states: list[str] = []
    service.start()
    x.start()
    stranger.start()

    def heard_x() -> bool:
        """x publishes its state (every 0.1 s, the polling period); has "a" found x and heard it?"""
        pub.send_multipart(encode(X_STATE))
        arrived = []
        while service.link.inbox:
            arrived.append(service.link.inbox.popleft())
        found.extend(m.node for m in arrived if isinstance(m, Discovered))
        states.extend(m.node for m in arrived if isinstance(m, NodeState))
        return bool(found and states)

    try:
        wait_until(heard_x, 20.0, '"a" discovers x and receives its state', poll_s=0.1)
    finally:
        x.stop()
        stranger.stop()
        service.stop()
        pub.close(0)
    print(json.dumps({"found": found, "states": sorted(set(states)), "a_saw": sorted(service.discovery.seen)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
