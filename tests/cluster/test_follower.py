"""Follower behaviour and fencing of the `cluster` program, scan by scan, on a real cluster link."""

from __future__ import annotations

import logging

import pytest
from node_kit import NODES, Node, ScriptedLink, setpoints

from programs.cluster.messages import Setpoints, Share
from programs.cluster.node import NodeParams
from programs.cluster.view import RaftView, Role
from programs.enums import SiteState, StateCommand


@pytest.fixture
def link() -> ScriptedLink:
    return ScriptedLink("node1")  # a follower in term 3 of leader node2


def test_a_follower_applies_its_share_from_the_leader_its_raft_view_names(link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(3, 1, node1=1500.0, node2=700.0))
    node.scan()
    assert node["ext_p_setpoint_w"] == 1500.0
    assert (node["cluster_setpoint_term"], node["cluster_setpoint_seq"]) == (3, 1)
    assert node["cluster_fallback_active"] is False
    assert link.records()[-1] == {"kind": "applied", "term": 3, "seq": 1, "leader": "node2", "p_w": 1500.0, "scan": 1,
                                  "inverter_w": 0.0, "state": "run"}  # with what the unit did then


def test_a_setpoint_of_a_term_below_the_highest_seen_is_dropped_and_counted(link: ScriptedLink) -> None:
    node = Node(link)
    link.raft = RaftView("node1", Role.FOLLOWER, 4, "node3", True, False)
    link.deliver(setpoints(4, 1, leader="node3", node1=800.0))
    node.scan()
    link.deliver(setpoints(3, 99, leader="node2", node1=4000.0))  # the deposed leader, still talking
    node.scan()
    assert node["ext_p_setpoint_w"] == 800.0
    assert node["cluster_setpoints_dropped"] == 1 and node["cluster_setpoint_term"] == 4


def test_a_setpoint_from_a_node_raft_does_not_name_leader_is_ignored(link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(3, 1, leader="node3", node1=2500.0))
    node.scan()
    assert node["ext_p_setpoint_w"] == 0.0 and node["cluster_setpoints_ignored"] == 1


def test_a_newer_term_than_raft_knows_is_held_back_and_fences_nothing_until_raft_confirms_it(
        link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(4, 1, leader="node3", node1=900.0), setpoints(3, 7, node1=100.0))
    node.scan()
    assert node["cluster_setpoints_ignored"] == 1 and node["cluster_setpoints_dropped"] == 0
    assert node["cluster_highest_term"] == 3 and node["ext_p_setpoint_w"] == 100.0  # Raft's leader still leads
    link.raft = RaftView("node1", Role.FOLLOWER, 4, "node3", True, False, {n: True for n in NODES})
    link.deliver(setpoints(3, 8, node1=100.0), setpoints(4, 2, leader="node3", node1=900.0))
    node.scan()
    assert node["cluster_setpoints_dropped"] == 1 and node["ext_p_setpoint_w"] == 900.0


def test_a_forged_term_of_10_9_changes_nothing(link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(10**9, 1, leader="mallory", node1=5000.0))
    node.scan()
    link.deliver(setpoints(3, 1, node1=1200.0))  # the real leader of the Raft term
    node.scan()
    assert node["cluster_highest_term"] == 3 and node["ext_p_setpoint_w"] == 1200.0
    assert node["cluster_setpoints_ignored"] == 1 and node["cluster_setpoints_dropped"] == 0


def test_a_huge_sequence_number_does_not_block_the_next_leader(link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(3, 2**31, node1=700.0))
    node.scan()
    link.raft = RaftView("node1", Role.FOLLOWER, 4, "node3", True, False, {n: True for n in NODES})
    link.deliver(setpoints(4, 1, leader="node3", node1=300.0))  # a new (leader, term) counts from 1 again
    node.scan()
    assert node["ext_p_setpoint_w"] == 300.0 and node["cluster_setpoint_seq"] == 1


def test_only_the_newest_setpoint_of_a_scan_is_applied(link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(3, 5, node1=500.0), setpoints(3, 7, node1=700.0), setpoints(3, 6, node1=600.0))
    node.scan()
    applied = [r for r in link.records() if r["kind"] == "applied"]
    assert [(r["term"], r["seq"]) for r in applied] == [(3, 7)] and node["ext_p_setpoint_w"] == 700.0
    link.deliver(setpoints(3, 6, node1=600.0))  # late and out of order
    node.scan()
    assert node["ext_p_setpoint_w"] == 700.0


def test_a_node_missing_from_the_split_applies_0_w(link: ScriptedLink) -> None:
    node = Node(link)
    link.deliver(setpoints(3, 1, node1=2000.0))
    node.scan()
    link.deliver(setpoints(3, 2, node2=3000.0))
    node.scan()
    assert node["ext_p_setpoint_w"] == 0.0


def test_without_setpoints_the_node_ramps_to_its_fallback_and_says_so(link: ScriptedLink,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    node = Node(link, NodeParams(setpoint_timeout_s=1.0, fallback_p_w=0.0, fallback_ramp_w_per_s=2000.0))
    link.deliver(setpoints(3, 1, node1=3000.0))
    node.scan()
    node.scan(10)  # 1.0 s without a setpoint: still following the last one
    assert node["ext_p_setpoint_w"] == 3000.0 and node["cluster_fallback_active"] is False
    node.scan()
    assert node["cluster_fallback_active"] is True and node["ext_p_setpoint_w"] == pytest.approx(2800.0)
    assert "ramping to the fallback 0 W" in caplog.text
    node.scan(14)
    assert node["ext_p_setpoint_w"] == 0.0
    heartbeat = node["ext_heartbeat"]
    node.scan()
    assert node["ext_heartbeat"] == heartbeat + 1  # the site control keeps following the ramp


def test_the_fallback_power_is_configurable(link: ScriptedLink) -> None:
    node = Node(link, NodeParams(fallback_p_w=-1000.0, fallback_ramp_w_per_s=10000.0))
    node.scan(15)
    assert node["ext_p_setpoint_w"] == -1000.0


def test_the_leader_applies_its_own_share_only_while_it_holds_its_lease(link: ScriptedLink) -> None:
    node = Node(link)
    link.leader(term=5, lease=True)
    link.deliver(setpoints(5, 1, leader="node1", node1=1200.0))
    node.scan()
    assert node["ext_p_setpoint_w"] == 1200.0
    link.leader(term=5, lease=False)  # paused, partitioned: its lease has run out
    link.deliver(setpoints(5, 2, leader="node1", node1=4800.0))
    node.scan()
    assert node["ext_p_setpoint_w"] == 1200.0 and node["cluster_setpoints_ignored"] == 1


def test_a_state_command_of_the_leader_reaches_the_state_machine_once(link: ScriptedLink) -> None:
    node = Node(link)
    command = Setpoints(leader="node2", term=3, seq=1, t_wall=0.0, shares={"node1": Share(0.0)},
                        state_cmd=int(StateCommand.MAINTENANCE), state_cmd_id=1)
    link.deliver(command)
    node.scan()
    assert node["site_state_cmd"] == StateCommand.MAINTENANCE
    node.set(site_state_cmd=int(StateCommand.NONE))  # consumed by the site state machine
    link.deliver(Setpoints(leader="node2", term=3, seq=2, t_wall=0.0, shares={"node1": Share(0.0)},
                                state_cmd=int(StateCommand.MAINTENANCE), state_cmd_id=1))  # repeated
    node.scan()
    assert node["site_state_cmd"] == StateCommand.NONE


def test_the_leader_lets_a_node_sleep_and_wakes_it(link: ScriptedLink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    node = Node(link)
    link.deliver(Setpoints(leader="node2", term=3, seq=1, t_wall=0.0, shares={"node1": Share(0.0, True)}))
    node.scan()
    assert node["site_state_cmd"] == StateCommand.IDLE and node["cluster_sleep"] is True
    node.set(site_state_cmd=int(StateCommand.NONE))
    node.set(site_state=int(SiteState.IDLE))
    link.deliver(Setpoints(leader="node2", term=3, seq=2, t_wall=0.0, shares={"node1": Share(900.0, False)}))
    node.scan()
    assert node["site_state_cmd"] == StateCommand.RUN and node["cluster_sleep"] is False
    assert "lets this node sleep" in caplog.text and "wakes this node" in caplog.text


def test_role_changes_are_logged_and_recorded(link: ScriptedLink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="programs.cluster")
    node = Node(link)
    node.scan()
    link.leader(term=4)
    node.scan(2)
    roles = [r for r in link.records() if r["kind"] == "role"]
    assert [(r["role"], r["term"], r["leader"]) for r in roles] == [("follower", 3, "node2"), ("leader", 4, "node1")]
    assert "raft: leader, term 4, leader node1 (was follower, term 3, leader node2)" in caplog.text


def test_the_status_names_a_leader_only_with_a_quorum_and_a_connection_to_it(link: ScriptedLink) -> None:
    node = Node(link)
    node.scan()
    assert link.status()["leader"] == "node2"
    link.raft = RaftView("node1", Role.FOLLOWER, 3, "node2", True, False, {"node2": False, "node3": True})
    node.scan()
    assert link.status()["leader"] is None and link.status()["raft_leader"] == "node2"  # dead, until the election ends
    link.raft = RaftView("node1", Role.LEADER, 3, "node1", False, True, {"node2": False, "node3": False})
    node.scan()
    assert link.status()["leader"] is None  # alone: no quorum
