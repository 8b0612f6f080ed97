"""`ems cluster status` as people read it: a node that says nothing now is unreachable, not the
leader its last state named, and the table says how old that state is."""

from __future__ import annotations

from ems.cluster_status import render

STATUS = {
    "node": "node2", "leader": "node3", "term": 7, "role": "follower", "has_quorum": True, "commanding": False,
    "members": [
        {"id": "node1", "state": "offline", "reason": "silent for 4.2 s", "source": "io_map", "reachable": False,
         "age_s": 4.2, "role": "leader", "term": 6, "site_state": "run", "soc_pct": 61.0, "p_w": 2000.0,
         "setpoint_w": 2000.0, "setpoint_term": 6, "setpoint_seq": 812, "fallback": False},
        {"id": "node2", "state": "online", "reason": "ok", "source": "self", "reachable": True, "age_s": 0.0,
         "role": "follower", "term": 7, "site_state": "run", "soc_pct": 60.0, "p_w": 2950.0, "setpoint_w": 3000.0,
         "setpoint_term": 7, "setpoint_seq": 40, "fallback": False},
        {"id": "node3", "state": "online", "reason": "ok", "source": "io_map", "reachable": True, "age_s": 0.1,
         "role": "leader", "term": 7, "site_state": "run", "soc_pct": 59.0, "p_w": 3010.0, "setpoint_w": 3000.0,
         "setpoint_term": 7, "setpoint_seq": 40, "fallback": False},
    ],
}


def row(table: str, node: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(node + " "))


def test_a_silent_member_shows_as_unreachable_with_the_age_of_its_last_state() -> None:
    line = row(render(STATUS), "node1")
    assert "unreachable" in line and "leader" not in line
    assert "4.2 s ago" in line


def test_members_that_answer_keep_their_role() -> None:
    table = render(STATUS)
    assert "leader" in row(table, "node3") and "0.1 s ago" in row(table, "node3")
    assert "follower" in row(table, "node2")
