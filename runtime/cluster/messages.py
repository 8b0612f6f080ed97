"""What cluster nodes say to each other: node state, setpoints, commands.

Every node publishes its `NodeState` each scan; the leader publishes `Setpoints` each scan,
stamped with its Raft term and a sequence number, so that a follower can tell the current
leader's orders from a deposed one's (fencing). Messages travel as JSON in two ZeroMQ frames
(topic, body) and are checked here, at the edge: a malformed message raises `MessageError`.
IO-free: programs import this module.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
from attrs import validators as v

STATE_TOPIC = b"state"
SETPOINT_TOPIC = b"setp"


class MessageError(ValueError):
    """A message that does not decode into a valid record."""


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


def encode(message: Message) -> list[bytes]:
    """Two frames: the topic and the JSON body."""
    if isinstance(message, NodeState):
        return [STATE_TOPIC, json.dumps(attrs.asdict(message), separators=(",", ":")).encode()]
    body = attrs.asdict(message, recurse=False)
    body["shares"] = {node: [share.p_w, share.sleep] for node, share in message.shares.items()}
    return [SETPOINT_TOPIC, json.dumps(body, separators=(",", ":")).encode()]


def decode(frames: list[bytes]) -> Message:
    """The record in two frames; raises MessageError for anything malformed."""
    if len(frames) != 2:
        raise MessageError(f"expected 2 frames, got {len(frames)}")
    topic, body = frames
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise MessageError("body is not a JSON object")
        if topic == STATE_TOPIC:
            return NodeState(**data)
        if topic == SETPOINT_TOPIC:
            shares = {str(node): Share(float(p), bool(sleep)) for node, (p, sleep) in data.pop("shares").items()}
            return Setpoints(shares=shares, **data)
    except MessageError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MessageError(f"bad {topic.decode(errors='replace')} message: {exc}") from None
    raise MessageError(f"unknown topic {topic!r}")
