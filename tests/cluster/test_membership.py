"""Membership: online, stale, offline, degraded, error from message age and content; changes logged."""

from __future__ import annotations

import logging
import math

import attrs
import pytest

from programs.cluster.aggregate import Aggregate, modeled_p_w
from programs.cluster.membership import Member, Membership, MemberState
from programs.cluster.messages import NodeState

STATE = NodeState(node="b", t_wall=0.0, soc_pct=50.0, soh_pct=100.0, capacity_wh=1024.0, p_w=0.0,
                  limit_charge_w=5000.0, limit_discharge_w=5000.0, site_state=1, health="ok", errors="", valid=True,
                  raft_role="follower", raft_term=3, setpoint_w=0.0, setpoint_term=3, setpoint_seq=9, fallback=False)


@pytest.fixture
def members() -> Membership:
    return Membership("a", ["a", "b", "c"], stale_after_s=0.5, offline_after_s=1.5)


def test_a_member_never_heard_is_offline(members: Membership) -> None:
    members.update(10.0, {"b": True, "c": True})
    assert members.members["c"].state is MemberState.OFFLINE


def test_a_fresh_healthy_reachable_member_is_online(members: Membership) -> None:
    members.receive(STATE, 10.0)
    members.update(10.2, {"b": True})
    assert members.members["b"].state is MemberState.ONLINE


def test_silence_makes_a_member_stale_then_offline(members: Membership) -> None:
    members.receive(STATE, 10.0)
    members.update(10.6, {"b": True})
    assert members.members["b"].state is MemberState.STALE
    members.update(11.6, {"b": True})
    assert members.members["b"].state is MemberState.OFFLINE


def test_a_member_whose_site_is_in_error_is_in_error(members: Membership) -> None:
    members.receive(attrs.evolve(STATE, site_state=4, health="error", errors="site in error"), 10.0)
    members.update(10.1, {"b": True})
    assert members.members["b"].state is MemberState.ERROR


def test_a_member_without_valid_inputs_or_without_raft_is_degraded(members: Membership) -> None:
    members.receive(attrs.evolve(STATE, health="degraded", errors="inputs not valid"), 10.0)
    members.update(10.1, {"b": True})
    assert members.members["b"].state is MemberState.DEGRADED
    members.receive(STATE, 10.2)
    members.update(10.3, {"b": False})
    assert (members.members["b"].state, members.members["b"].reason) == (MemberState.DEGRADED, "no Raft connection")


def test_every_change_is_logged_once(members: Membership, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="programs.cluster.membership")
    members.receive(STATE, 10.0)
    changes = members.update(10.1, {"b": True}) + members.update(10.2, {"b": True}) + members.update(12.0, {"b": True})
    assert [(node, after) for node, _, after in changes] == [("b", MemberState.ONLINE), ("b", MemberState.OFFLINE)]
    assert [r.getMessage() for r in caplog.records] == ["member b: offline -> online (ok)",
                                                        "member b: online -> offline (silent for 2.0 s)"]


def test_a_discovered_node_becomes_a_member(members: Membership) -> None:
    members.add("d", "discovery")
    members.receive(attrs.evolve(STATE, node="d"), 10.0)
    members.update(10.1, {})
    assert members.members["d"].source == "discovery" and members.members["d"].state is MemberState.DEGRADED


def test_the_cluster_limits_count_what_a_silent_unit_still_delivers(members: Membership) -> None:
    """A dead unit's inverter keeps its 1000 W until its revert timer runs out: the cluster's
    power counts it, so its discharge limit must too (the survivors' 5000 W plus those 1000 W),
    else the site control would cut the survivors by the dead unit's power."""
    members.receive(attrs.evolve(STATE, node="a", p_w=4000.0), 10.0)
    members.receive(attrs.evolve(STATE, node="b", p_w=1000.0, revert_s=5.0), 10.0)
    members.receive(attrs.evolve(STATE, node="a", p_w=4000.0), 11.0)
    members.update(11.0, {"b": True, "c": True})  # b silent for 1 s: stale; c never heard
    totals = Aggregate.of(members.members.values(), 11.0)
    assert (totals.p_w, totals.limit_discharge_w, totals.limit_charge_w) == (5000.0, 6000.0, 5000.0)
    members.receive(attrs.evolve(STATE, node="a", p_w=4000.0), 20.0)
    after_revert = Aggregate.of(members.members.values(), 20.0)  # b's inverter at 0 W by then
    assert (after_revert.p_w, after_revert.limit_discharge_w) == (4000.0, 5000.0)


def dead_unit(members: Membership, p_w: float, ramp_w_per_s: float, response_s: float) -> Member:
    """b's last state at 10.0 s, its inverter reverting 5 s later; offline by 20 s."""
    members.receive(attrs.evolve(STATE, p_w=p_w, revert_s=5.0, ramp_w_per_s=ramp_w_per_s, response_s=response_s),
                    10.0)
    members.update(20.0, {"b": True})
    return members.members["b"]


def test_a_dead_units_command_ramps_to_0_w_after_its_revert_timer(members: Membership) -> None:
    b = dead_unit(members, 2000.0, 2500.0, 0.2)
    assert modeled_p_w(b, 15.0, commanded=True) == pytest.approx(2000.0)
    assert modeled_p_w(b, 15.4, commanded=True) == pytest.approx(1000.0)
    assert modeled_p_w(b, 15.8, commanded=True) == 0.0


def test_a_dead_units_power_follows_its_command_through_the_inverters_lag(members: Membership) -> None:
    b = dead_unit(members, 2000.0, 2500.0, 0.2)
    # 0.2 s into the ramp: 500 W less commanded, 2500 x (0.2 - 0.2 (1 - e^-1)) = 184 W less delivered
    assert modeled_p_w(b, 15.2) == pytest.approx(2000.0 - 2500.0 * 0.2 * math.exp(-1.0))
    # the command at 0 W after 0.8 s; the power then 2500 x 0.2 (1 - e^-4) = 491 W, decaying by e^-t/0.2
    at_end = 2500.0 * 0.2 * (1.0 - math.exp(-4.0))
    assert modeled_p_w(b, 15.8) == pytest.approx(at_end)
    assert modeled_p_w(b, 16.2) == pytest.approx(at_end * math.exp(-2.0))


def test_a_dead_unit_without_a_ramp_decays_from_its_power_at_its_revert(members: Membership) -> None:
    b = dead_unit(members, -3000.0, 0.0, 0.5)  # charging; the command drops to 0 W at once
    assert modeled_p_w(b, 15.5) == pytest.approx(-3000.0 * math.exp(-1.0))
    assert modeled_p_w(b, 15.5, commanded=True) == 0.0


def test_a_state_read_a_scan_late_is_timed_by_its_stamp_and_the_fastest_delivery(members: Membership) -> None:
    # b's wall clock is 1000 s ahead; its states take 2 ms at best and are read by a scan up to 0.1 s late
    for sent, read in ((1.0, 1.002), (1.1, 1.19), (1.2, 1.21), (1.3, 1.302)):
        members.receive(attrs.evolve(STATE, t_wall=1000.0 + sent), read)
    assert members.members["b"].sent_s == pytest.approx(1.302, abs=1e-3)
    members.receive(attrs.evolve(STATE, t_wall=1001.4), 1.49)  # read 88 ms late: sent at 1.402
    assert members.members["b"].sent_s == pytest.approx(1.402, abs=1e-3)


def test_a_state_is_timed_by_its_arrival_not_by_the_scan_that_read_it(members: Membership) -> None:
    # b's scans run 70 ms before this node's, always: every state is read 70 ms after it
    # arrived (2 ms after it was sent); timed by the reads, b would seem to send 70 ms late
    for sent in (1.0, 1.1, 1.2, 1.3):
        members.receive(attrs.evolve(STATE, t_wall=1000.0 + sent), sent + 0.072, arrived_s=sent + 0.002)
    assert members.members["b"].sent_s == pytest.approx(1.302, abs=1e-6)


def test_a_stepped_sender_clock_starts_the_offset_afresh(members: Membership) -> None:
    members.receive(attrs.evolve(STATE, t_wall=1000.0), 1.0)
    members.receive(attrs.evolve(STATE, t_wall=900.1), 1.1)  # its clock stepped back 100 s
    assert members.members["b"].sent_s == pytest.approx(1.1)
    members.receive(attrs.evolve(STATE, t_wall=900.2), 1.25)
    members.receive(attrs.evolve(STATE, t_wall=910.3), 1.3)  # and 10 s forward: that stamp is sent "now"
    assert members.members["b"].sent_s == pytest.approx(1.3)
