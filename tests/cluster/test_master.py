"""The leader's `cluster_master`: it commands only through the gate, stamps term and sequence,
splits the cluster baseline over the usable nodes and carries state commands to every node."""

from __future__ import annotations

import pytest
from node_kit import Node, ScriptedLink, peer_state

from programs.cluster.master import MasterParams
from programs.cluster.view import RaftView, Role
from programs.enums import SiteState, StateCommand


def leader_node(baseline_w: float = 6000.0, **params: float) -> tuple[Node, ScriptedLink]:
    link = ScriptedLink("node1")
    link.leader(term=5)
    node = Node(link, master=MasterParams(**params))
    node.set(cluster_baseline_p_w=baseline_w)
    node.set(soc_pct=70.0)
    return node, link


def with_peers(node: Node, link: ScriptedLink, *states) -> None:  # type: ignore[no-untyped-def]
    for state in states:
        link.deliver(state)


def test_the_master_sends_nothing_without_its_lease_or_quorum() -> None:
    node, link = leader_node()
    link.raft = RaftView("node1", Role.LEADER, 5, "node1", True, lease_ok=False)
    node.scan(3)
    link.raft = RaftView("node1", Role.LEADER, 5, "node1", has_quorum=False, lease_ok=True)
    node.scan(3)
    assert link.sent() == [] and node["cluster_master_active"] is False


def test_setpoints_carry_the_term_and_a_sequence_that_restarts_with_each_term() -> None:
    node, link = leader_node()
    node.scan(3)
    link.leader(term=7)
    node.scan(2)
    assert [(m.term, m.seq) for m in link.sent()] == [(5, 1), (5, 2), (5, 3), (7, 1), (7, 2)]


def test_the_baseline_is_split_over_the_usable_nodes_the_fullest_discharging_most() -> None:
    node, link = leader_node(6000.0)
    with_peers(node, link, peer_state("node2", 50.0), peer_state("node3", 30.0))
    node.scan(2)
    shares = link.sent()[-1].shares
    assert sum(s.p_w for s in shares.values()) == pytest.approx(6000.0)
    assert shares["node1"].p_w > shares["node2"].p_w > shares["node3"].p_w > 0.0


def test_nodes_in_maintenance_or_silent_get_no_share() -> None:
    node, link = leader_node(3000.0)
    with_peers(node, link, peer_state("node2", 50.0, SiteState.MAINTENANCE))
    node.scan(2)
    assert set(link.sent()[-1].shares) == {"node1"} and link.sent()[-1].shares["node1"].p_w == 3000.0


def test_with_little_power_the_unneeded_nodes_sleep_after_the_delay() -> None:
    node, link = leader_node(400.0, sleep_delay_s=1.0)
    for _ in range(15):
        with_peers(node, link, peer_state("node2", 50.0), peer_state("node3", 30.0))
        node.scan()
    shares = link.sent()[-1].shares
    assert shares["node1"].p_w == pytest.approx(400.0) and not shares["node1"].sleep
    assert shares["node2"].sleep and shares["node3"].sleep


def test_a_state_command_goes_to_every_node_for_a_while() -> None:
    node, link = leader_node(state_cmd_repeat_s=0.5)
    link.command("maintenance")
    node.scan()
    first = link.sent()[-1]
    assert (first.state_cmd, first.state_cmd_id) == (StateCommand.MAINTENANCE, 1)
    node.scan(6)
    assert link.sent()[-1].state_cmd == 0 and link.sent()[-1].state_cmd_id == 1


def test_an_idle_command_lets_every_node_sleep_until_a_run_command() -> None:
    node, link = leader_node(6000.0)
    with_peers(node, link, peer_state("node2", 50.0))
    link.command("idle")
    node.scan(2)
    assert all(s.sleep and s.p_w == 0.0 for s in link.sent()[-1].shares.values())
    link.command("run")
    with_peers(node, link, peer_state("node2", 50.0))
    node.scan()
    assert sum(s.p_w for s in link.sent()[-1].shares.values()) == pytest.approx(6000.0)


def test_a_node_raft_cannot_reach_gets_no_share() -> None:
    node, link = leader_node(4000.0)
    link.raft = RaftView("node1", Role.LEADER, 5, "node1", True, True, {"node2": False, "node3": True})
    with_peers(node, link, peer_state("node2", 50.0), peer_state("node3", 50.0))
    node.scan(2)
    assert set(link.sent()[-1].shares) == {"node1", "node3"}
