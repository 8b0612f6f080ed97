"""The wire format of the cluster's messages: JSON in two ZeroMQ frames (topic, body).

The records are the cluster program's (programs/cluster/messages.py); this module turns them
into frames and back, and checks everything that arrives: a malformed message raises
`MessageError`.
"""

from __future__ import annotations

import json

import attrs

from programs.cluster.messages import Message, NodeState, Setpoints, Share

STATE_TOPIC = b"state"
SETPOINT_TOPIC = b"setp"


class MessageError(ValueError):
    """A message that does not decode into a valid record."""


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
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise MessageError(f"bad {topic.decode(errors='replace')} message: {exc}") from None
    raise MessageError(f"unknown topic {topic!r}")
