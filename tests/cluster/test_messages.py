"""Messages between nodes: they survive the wire, and anything malformed is refused at the edge."""

from __future__ import annotations

import json

import pytest

from programs.cluster.messages import NodeState, Setpoints, Share
from runtime.cluster.codec import MessageError, decode, encode

SETPOINTS = Setpoints(leader="node2", term=7, seq=41, t_wall=1.7e9,
                      shares={"node1": Share(3669.3), "node3": Share(0.0, True)}, state_cmd=3, state_cmd_id=2)
STATE = NodeState(node="node1", t_wall=1.7e9, soc_pct=68.8, soh_pct=99.0, capacity_wh=1024.0, p_w=3670.0,
                  limit_charge_w=5000.0, limit_discharge_w=5000.0, site_state=1, health="ok", errors="", valid=True,
                  raft_role="follower", raft_term=7, setpoint_w=3669.3, setpoint_term=7, setpoint_seq=40,
                  fallback=False)


@pytest.mark.parametrize("message", [SETPOINTS, STATE], ids=["setpoints", "state"])
def test_a_message_decodes_to_what_was_encoded(message) -> None:  # type: ignore[no-untyped-def]
    assert decode(encode(message)) == message


def test_setpoints_order_by_term_then_sequence() -> None:
    assert SETPOINTS.newer_than(6, 1000) and SETPOINTS.newer_than(7, 40)
    assert not SETPOINTS.newer_than(7, 41) and not SETPOINTS.newer_than(8, 1)


@pytest.mark.parametrize("frames", [
    [b"setp"],
    [b"nope", b"{}"],
    [b"setp", b"not json"],
    [b"setp", b"[1, 2]"],
    [b"setp", json.dumps({"leader": "a", "term": 0, "seq": 1, "t_wall": 0, "shares": {}}).encode()],
    [b"setp", json.dumps({"leader": "a", "term": 1, "seq": 1, "t_wall": 0, "shares": {"b": ["x", False]}}).encode()],
    [b"state", json.dumps({"node": "a"}).encode()],
], ids=["one frame", "unknown topic", "not json", "not an object", "term 0", "power not a number", "missing keys"])
def test_a_malformed_message_is_refused(frames: list[bytes]) -> None:
    with pytest.raises(MessageError):
        decode(frames)


def test_a_setpoint_that_is_not_a_finite_number_is_refused() -> None:
    body = json.loads(encode(SETPOINTS)[1])
    body["shares"]["node1"][0] = float("nan")
    with pytest.raises(MessageError):
        decode([b"setp", json.dumps(body).encode()])
