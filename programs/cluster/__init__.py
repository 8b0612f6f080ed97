"""Cluster programs: several battery units (nodes), each with its own controller, acting as one.

Three program kinds, in this order in a node's io_map (docs/cluster.md):

* `cluster` (ClusterNode): the Raft block and the follower. Each scan it reads the node's Raft
  view (role, term, leader, quorum, members' reachability), takes the messages that arrived,
  keeps the membership, applies the current leader's setpoint (fenced by term, see below) or
  ramps to the fallback when setpoints stop, forwards the leader's state commands to the site
  state machine, publishes this node's state and aggregates the cluster (power, SOC, limits).
  It drives the node's own `site_control` in external mode through `ext_p_setpoint_w` and
  `ext_heartbeat`, so the node's safety, limits and dispatch stay exactly those of a single site.
* `cluster_control` (ClusterControl): the site program (the mode manager) for the whole cluster,
  against the site meter, with the cluster's power, SOC and limits as its battery. Every node
  runs it (followers in the shadow, on the same inputs), so a new leader takes over bumplessly.
* `cluster_master` (ClusterMaster): on the commanding leader only, splits the cluster baseline
  across the nodes and publishes the setpoints, stamped with the Raft term and a sequence number.

Fencing: a node applies a setpoint only if its term is at least the highest term seen in any
setpoint, equals its own Raft term, and its sender is the leader its own Raft view names (for
its own share, only while it still holds its lease). One setpoint at most is applied per scan.

Modules: `node` (ClusterNode), `control` (ClusterControl), `master` (ClusterMaster),
`aggregate` (the cluster from its members' states), `link` (the inbox/outbox to the cluster
service), `messages`, `membership` and `view` (the vocabulary). The power split is a pure
block: blocks/power_split.py.
"""
