"""The cluster service: several battery units acting as one (docs/cluster.md).

The cluster programs and their vocabulary (messages, membership, Raft view) are in
programs/cluster/, the power split in blocks/power_split.py. This package is the service
side, started with the site: `raft` (the Raft engine and its leader lease), `transport`
(ZeroMQ PUB/SUB and REQ/REP) with `codec` (the messages' wire format), `discovery` (UDP
multicast beacons, behind a flag), `service` (wires them for one node and meets the programs
in their link), `config` (checks of the [cluster] section). `ems cluster status` is a tool:
ems/cluster_status.py. This package's `__init__` imports nothing, so importing it opens no socket.
"""
