"""Several battery units acting as one: Raft (pysyncobj), ZeroMQ transport, membership, discovery.

Layout (docs/cluster.md explains the design):
  * IO-free, imported by `programs/cluster.py`: `messages` (what nodes say to each other),
    `membership` (who is online, stale, offline, degraded, in error), `split` (the power split).
  * The service side, started with the site: `raft` (the Raft engine and its leader lease),
    `transport` (ZeroMQ PUB/SUB and REQ/REP), `discovery` (UDP multicast beacons, behind a flag),
    `service` (wires them for one node), `status` (`ems cluster status`), `command` (its parser).
This package's `__init__` imports nothing, so importing the IO-free modules opens no socket.
"""
