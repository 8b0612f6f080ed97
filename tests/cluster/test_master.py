"""The leader's `cluster_master`: it commands only through the gate, stamps term and sequence,
splits the cluster baseline over the usable nodes and carries state commands to every node."""

from __future__ import annotations

import attrs
import pytest
from node_kit import Node, ScriptedLink, peer_state

from plc.tags import Access, Area, DType, TagSpec
from programs.cluster.master import MasterParams, pickup_wait_s
from programs.cluster.membership import Member
from programs.cluster.view import RaftView, Role
from programs.enums import SiteState, StateCommand
from programs.interlocks import Reaction


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


def scan_with(node: Node, link: ScriptedLink, seconds: float, *states) -> None:  # type: ignore[no-untyped-def]
    """Scan for `seconds`, the peers reporting each scan and this unit's inverter following its setpoint."""
    for _ in range(round(seconds / 0.1)):
        link.deliver(*states)
        node.scan(inverter_p_w=node["cluster_p_setpoint_w"])


def test_a_unit_whose_power_does_not_follow_is_out_of_the_split_after_5_s() -> None:
    node, link = leader_node(6000.0)
    stuck = attrs.evolve(peer_state("node2", 70.0), p_w=0.0, setpoint_w=2000.0)  # its inverter delivers nothing
    fine = attrs.evolve(peer_state("node3", 70.0), p_w=2000.0, setpoint_w=2000.0)
    scan_with(node, link, 4.5, stuck, fine)
    assert link.sent()[-1].shares["node2"].p_w > 0.0 and node["cluster_unit_alarm"] is False
    scan_with(node, link, 1.0, stuck, fine)
    shares = link.sent()[-1].shares
    assert "node2" not in shares
    assert sum(s.p_w for s in shares.values()) == pytest.approx(6000.0)  # its share went to the others
    assert node["cluster_unit_alarm"] is True and node["cluster_units_excluded"] == 1


def test_a_unit_within_10_pct_of_its_setpoint_stays_in_the_split() -> None:
    node, link = leader_node(6000.0)
    close = attrs.evolve(peer_state("node2", 70.0), p_w=3700.0, setpoint_w=4000.0)  # 300 W < 10 % of 4000 W
    scan_with(node, link, 30.0, close)
    assert "node2" in link.sent()[-1].shares and node["cluster_units_excluded"] == 0


def test_an_excluded_unit_is_given_a_share_again_after_the_retry_time() -> None:
    node, link = leader_node(6000.0, follow_retry_s=20.0)
    stuck = attrs.evolve(peer_state("node2", 70.0), p_w=0.0, setpoint_w=2000.0)
    scan_with(node, link, 6.0, stuck)
    assert "node2" not in link.sent()[-1].shares
    repaired = attrs.evolve(peer_state("node2", 70.0), p_w=0.0, setpoint_w=0.0)  # it follows its 0 W now
    scan_with(node, link, 20.0, repaired)
    assert link.sent()[-1].shares["node2"].p_w > 0.0 and node["cluster_unit_alarm"] is False


def test_a_unit_stopped_by_its_own_safety_reports_itself_in_error() -> None:
    from programs.cluster.messages import NodeState

    node, link = leader_node(6000.0)
    node.image.add(TagSpec(name="safety_reaction", dtype=DType.ENUM, area=Area.MEMORY, access=Access.RW,
                           initial=int(Reaction.STOP), enum_labels=tuple(r.name.lower() for r in Reaction)))
    node.program.bind(node.image)
    node.scan(2)
    own = [m for m in link.outbox if isinstance(m, NodeState)][-1]
    assert own.health == "error" and "safety" in own.errors


def test_a_dead_units_power_is_counted_until_its_inverter_reverts_and_not_split_to_the_others() -> None:
    node, link = leader_node(6000.0)
    dying = attrs.evolve(peer_state("node2", 70.0), p_w=2000.0, setpoint_w=2000.0, revert_s=5.0)
    alive = attrs.evolve(peer_state("node3", 70.0), p_w=2000.0, setpoint_w=2000.0)
    scan_with(node, link, 2.0, dying, alive)
    assert sum(s.p_w for s in link.sent()[-1].shares.values()) == pytest.approx(6000.0)
    scan_with(node, link, 2.0, alive)  # node2 is silent: offline after 1.5 s, its inverter still at 2000 W
    shares = link.sent()[-1].shares
    assert "node2" not in shares
    assert sum(s.p_w for s in shares.values()) == pytest.approx(4000.0)  # its 2000 W are still delivered
    assert node["cluster_p_w"] == pytest.approx(2000.0 + 2000.0 + node["inverter_p_w"])
    scan_with(node, link, 3.5, alive)  # 5 s after its last report its inverter reverted to 0 W
    assert sum(s.p_w for s in link.sent()[-1].shares.values()) == pytest.approx(6000.0)
    assert node["cluster_p_w"] == pytest.approx(2000.0 + node["inverter_p_w"])


def test_the_survivors_take_over_a_dead_units_ramp_down_ahead_by_the_takeover_lead_and_their_scan() -> None:
    node, link = leader_node(5000.0, takeover_lead_s=0.3)  # this unit alone can take 5000 W
    dying = attrs.evolve(peer_state("node2", 70.0), p_w=2000.0, setpoint_w=2000.0, revert_s=5.0, ramp_w_per_s=1000.0)
    scan_with(node, link, 1.0, dying)
    scan_with(node, link, 5.0)  # silent since t = 1.0 s: reverts at 6.0 s, ramping 1000 W/s
    # 0.3 s plus the scan this node's own share waits: from 0.4 s ahead, over the 0.1 s it is held: 450 W
    assert sum(s.p_w for s in link.sent()[-1].shares.values()) == pytest.approx(3000.0 + 450.0, abs=1.0)
    assert node["cluster_p_w"] == pytest.approx(2000.0 + node["inverter_p_w"], abs=1.0)  # not reverting yet
    scan_with(node, link, 1.0)  # 1 s into the ramp: 1000 W left, the split already counts on 550 W
    assert sum(s.p_w for s in link.sent()[-1].shares.values()) == pytest.approx(5000.0 - 550.0, abs=1.0)
    assert node["cluster_p_w"] == pytest.approx(1000.0 + node["inverter_p_w"], abs=1.0)


def survivor(node: str, sent_s: float, setpoint_w: float) -> Member:
    return Member(node, "io_map", last=attrs.evolve(peer_state(node, 50.0), setpoint_w=setpoint_w), sent_s=sent_s)


def test_a_survivor_picks_up_a_share_when_its_next_scan_ends() -> None:
    # its states arrive 30 ms after each of this node's scans began (10.0 s): it writes a share
    # sent now 30 ms from now; one whose scans end 5 ms after ours began is too late for this
    # one (the message is still on its way): a period and 5 ms
    assert pickup_wait_s([survivor("b", 9.93, 1000.0)], 10.0, 0.1) == pytest.approx(0.03)
    assert pickup_wait_s([survivor("b", 10.005, 1000.0)], 10.0, 0.1) == pytest.approx(0.105)


def test_the_pickup_wait_is_weighted_by_the_survivors_setpoints() -> None:
    members = [survivor("b", 9.93, 3000.0), survivor("c", 9.97, 1000.0)]  # 30 ms and 70 ms
    assert pickup_wait_s(members, 10.0, 0.1) == pytest.approx((3001 * 0.03 + 1001 * 0.07) / 4002)


def test_a_unit_at_0_w_is_given_what_its_inverter_reaches_in_share_reach_s_and_the_others_the_rest() -> None:
    node, link = leader_node(6000.0, share_reach_s=0.5)
    # node2 delivers 4500 W; node3, just woken, delivers nothing yet; both ramp 2500 W/s
    with_peers(node, link, attrs.evolve(peer_state("node2", 50.0), p_w=4500.0, ramp_w_per_s=2500.0),
               attrs.evolve(peer_state("node3", 90.0), p_w=0.0, ramp_w_per_s=2500.0))
    node.scan(2)
    shares = link.sent()[-1].shares
    assert shares["node3"].p_w == pytest.approx(1250.0)  # 0 W + 2500 W/s x 0.5 s, though it is the fullest
    assert sum(s.p_w for s in shares.values()) == pytest.approx(6000.0)
