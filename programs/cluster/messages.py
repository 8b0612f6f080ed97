"""What cluster nodes say to each other, and what the cluster programs exchange with the service.

Between nodes: every node publishes its `NodeState` each scan; the leader publishes `Setpoints`
each scan, stamped with its Raft term and a sequence number, so that a follower can tell the
current leader's orders from a deposed one's (fencing). Their wire format (JSON in ZeroMQ
frames) is the service's business: runtime/cluster/codec.py.

Between the programs and the cluster service (programs/cluster/link.py): a `StateRequest`
(a state command for the whole cluster, from `ems cluster` or a peer) and a `Discovered` node
arrive in the inbox; the programs send node states, setpoints, their `StatusReport` (what
`ems cluster status` shows) and `Record`s (the applied-setpoint log) through the outbox.
Records are validated here, at the edge; nothing in this module does IO.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from attrs import validators as v


def _finite(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


_NUMBER = [v.instance_of((int, float)), _finite]
_COUNT = [v.instance_of(int), v.ge(0)]
_TEXT = v.instance_of(str)


@attrs.frozen
class NodeState:
    """One node's view of its battery unit, published every scan."""

    node: str = attrs.field(validator=_TEXT)
    t_wall: float = attrs.field(validator=_NUMBER)
    soc_pct: float = attrs.field(validator=_NUMBER)
    soh_pct: float = attrs.field(validator=_NUMBER)
    capacity_wh: float = attrs.field(validator=_NUMBER)
    p_w: float = attrs.field(validator=_NUMBER)  # measured inverter power, + discharge
    limit_charge_w: float = attrs.field(validator=_NUMBER)  # available charge power now (>= 0)
    limit_discharge_w: float = attrs.field(validator=_NUMBER)  # available discharge power now (>= 0)
    site_state: int = attrs.field(validator=_COUNT)  # programs.enums.SiteState
    health: str = attrs.field(validator=v.in_(("ok", "degraded", "error")))
    errors: str = attrs.field(validator=_TEXT)
    valid: bool = attrs.field(validator=v.instance_of(bool))  # SOC, power and limits are GOOD
    raft_role: str = attrs.field(validator=_TEXT)
    raft_term: int = attrs.field(validator=_COUNT)
    setpoint_w: float = attrs.field(validator=_NUMBER)  # what this node applies now
    setpoint_term: int = attrs.field(validator=_COUNT)
    setpoint_seq: int = attrs.field(validator=_COUNT)
    fallback: bool = attrs.field(validator=v.instance_of(bool))
    # this unit's inverter drops to 0 W by itself this long after its controller went silent
    # (the driver's revert_s): what a new leader counts on for a unit that died
    revert_s: float = attrs.field(default=10.0, validator=[*_NUMBER, v.gt(0)])
    ramp_w_per_s: float = attrs.field(default=0.0, validator=[*_NUMBER, v.ge(0)])  # its inverter's own ramp
    response_s: float = attrs.field(default=0.0, validator=[*_NUMBER, v.ge(0)])  # and its lag behind a command
    p_age_s: float = attrs.field(default=0.0, validator=[*_NUMBER, v.ge(0)])  # how old p_w was when sent


@attrs.frozen
class Share:
    """One node's part of the site power: W (+ discharge), and whether it may sleep."""

    p_w: float = attrs.field(validator=_NUMBER)
    sleep: bool = attrs.field(default=False, validator=v.instance_of(bool))


@attrs.frozen
class Setpoints:
    """The leader's orders for one scan, for every node."""

    leader: str = attrs.field(validator=_TEXT)
    term: int = attrs.field(validator=[v.instance_of(int), v.ge(1)])
    seq: int = attrs.field(validator=[v.instance_of(int), v.ge(1)])
    t_wall: float = attrs.field(validator=_NUMBER)
    shares: dict[str, Share] = attrs.field(validator=v.deep_mapping(_TEXT, v.instance_of(Share)))
    state_cmd: int = attrs.field(default=0, validator=_COUNT)  # programs.enums.StateCommand, 0 = none
    state_cmd_id: int = attrs.field(default=0, validator=_COUNT)  # new command when this changes

    def newer_than(self, term: int, seq: int) -> bool:
        return (self.term, self.seq) > (term, seq)


Message = NodeState | Setpoints


STATE_COMMANDS = ("run", "idle", "maintenance", "reset")


@attrs.frozen
class StateRequest:
    """Inbox: a state command for every node of the cluster (acted on by the commanding leader)."""

    value: str = attrs.field(validator=v.in_(STATE_COMMANDS))


@attrs.frozen
class Arrival:
    """Inbox: a peer's state and when the transport received it (this node's monotonic clock,
    the scans' own). A new leader times a dead unit's revert from when its states arrived, not
    from the scans that read them: those lag an arrival by up to a scan, by the phase between
    the two nodes' scans."""

    state: NodeState
    at_s: float


@attrs.frozen
class Discovered:
    """Inbox: a node found by discovery, not in the io_map (the service already subscribed to it)."""

    node: str = attrs.field(validator=_TEXT)


@attrs.frozen
class RosterChange:
    """Inbox: a member added (`joined`) or removed at run time, committed through Raft
    (`ems cluster add/remove`); the service has already admitted or dismissed its key."""

    node: str = attrs.field(validator=_TEXT)
    joined: bool


@attrs.frozen
class StatusReport:
    """Outbox: what `ems cluster status` shows, built once per scan (handed over whole)."""

    body: dict[str, Any]


@attrs.frozen
class Record:
    """Outbox: one line of the applied-setpoint log (sent, applied, dropped, role, fallback)."""

    kind: str
    fields: dict[str, Any] = attrs.Factory(dict)


Incoming = Message | Arrival | StateRequest | Discovered | RosterChange
Outgoing = Message | StatusReport | Record
