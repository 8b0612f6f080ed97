"""The power split: headroom, SOC weighting, caps, limited and sleeping nodes, few nodes for little power."""

from __future__ import annotations

import pytest

from blocks.power_split import Candidate, SplitParams, allocate, choose_awake, split_power

PARAMS = SplitParams(soc_min_pct=5.0, soc_max_pct=95.0, soc_weight_exponent=2.0, node_min_p_w=500.0)


def node(id: str, soc: float, charge: float = 5000.0, discharge: float = 5000.0, running: bool = True) -> Candidate:
    return Candidate(id, soc, charge, discharge, running)


THREE = [node("a", 70.0), node("b", 50.0), node("c", 30.0)]


def test_discharge_goes_mostly_to_the_fullest_node() -> None:
    shares, left = allocate(6000.0, THREE, PARAMS)
    assert sum(shares.values()) == pytest.approx(6000.0)
    assert shares["a"] > shares["b"] > shares["c"] > 0.0
    # weights: headroom x ((soc - 5) / 90) ** 2 -> 0.52 : 0.25 : 0.08
    assert shares["a"] == pytest.approx(6000.0 * 0.5216 / 0.8549, rel=0.01)
    assert left == 0.0


def test_charge_goes_mostly_to_the_emptiest_node() -> None:
    shares, _ = allocate(-6000.0, THREE, PARAMS)
    assert sum(shares.values()) == pytest.approx(-6000.0)
    assert shares["c"] < shares["b"] < shares["a"] < 0.0


def test_equal_socs_share_in_proportion_to_headroom() -> None:
    shares, _ = allocate(3000.0, [node("a", 50.0, discharge=4000.0), node("b", 50.0, discharge=2000.0)], PARAMS)
    assert shares == pytest.approx({"a": 2000.0, "b": 1000.0})


def test_no_node_gets_more_than_its_headroom_and_the_rest_goes_to_the_others() -> None:
    shares, left = allocate(9000.0, [node("a", 90.0, discharge=2000.0), node("b", 20.0), node("c", 20.0)], PARAMS)
    assert shares["a"] == 2000.0
    assert shares["b"] == pytest.approx(3500.0) and shares["c"] == pytest.approx(3500.0)
    assert left == 0.0


def test_power_beyond_every_headroom_is_reported_unallocated() -> None:
    shares, left = allocate(12000.0, [node("a", 50.0), node("b", 50.0)], PARAMS)
    assert shares == {"a": 5000.0, "b": 5000.0} and left == pytest.approx(2000.0)


def test_a_node_limited_in_the_wanted_direction_is_skipped() -> None:
    full = node("full", 95.0, charge=0.0)
    split = split_power(-3000.0, [full, node("b", 50.0), node("c", 40.0)], ["full", "b", "c"], PARAMS)
    assert split.shares["full"] == 0.0 and "full" not in split.awake
    assert split.shares["b"] + split.shares["c"] == pytest.approx(-3000.0)


def test_little_power_runs_few_nodes_the_fullest_first_when_discharging() -> None:
    assert [c.id for c in choose_awake(800.0, THREE, [], PARAMS)] == ["a"]
    assert [c.id for c in choose_awake(-800.0, THREE, [], PARAMS)] == ["c"]
    assert [c.id for c in choose_awake(1200.0, THREE, [], PARAMS)] == ["a", "b"]
    assert choose_awake(0.4, THREE, [], PARAMS) == []


def test_nodes_already_running_are_kept_before_fuller_ones() -> None:
    assert [c.id for c in choose_awake(800.0, THREE, ["c"], PARAMS)] == ["c"]


def test_power_beyond_one_node_wakes_as_many_as_its_headroom_needs() -> None:
    nodes = [node("a", 70.0, discharge=1000.0), node("b", 50.0, discharge=1000.0), node("c", 30.0, discharge=1000.0)]
    params = SplitParams(node_min_p_w=5000.0)
    assert len(choose_awake(2500.0, nodes, [], params)) == 3


def test_a_sleeping_node_being_woken_gets_no_power_until_it_runs() -> None:
    split = split_power(6000.0, [node("a", 70.0, running=False), node("b", 50.0), node("c", 30.0)], [], PARAMS)
    assert "a" in split.awake and split.shares["a"] == 0.0
    assert split.shares["b"] + split.shares["c"] == pytest.approx(6000.0)


def test_no_running_node_is_left_below_the_minimum_by_the_soc_weighting() -> None:
    # 5889 W over sixteen 5 kW units at 70 % down to 30 %: eleven make 535 W on average, but the
    # weighting gave the emptiest of them 279 W. Those sleep; the fullest carry it all.
    sixteen = [node(f"n{k:02d}", 70.0 - 40.0 * k / 15) for k in range(16)]
    split = split_power(5889.0, sixteen, (), PARAMS)
    running = {n: p for n, p in split.shares.items() if p}
    assert sum(running.values()) == pytest.approx(5889.0) and split.unallocated_w == 0.0
    assert min(running.values()) >= 500.0
    assert set(running) == set(split.awake) and len(running) == 8
    assert sorted(running) == [f"n{k:02d}" for k in range(8)]  # the fullest


def test_a_node_just_woken_gets_what_its_inverter_can_reach_and_the_others_keep_the_rest() -> None:
    # node a carries 4500 W; b, woken at 0 W, ramps 2500 W/s: within 0.5 s it reaches 1250 W
    running = node("a", 60.0, discharge=5000.0)
    woken = Candidate("b", 70.0, 5000.0, 5000.0, True, reach_discharge_w=1250.0)
    shares, left = allocate(6000.0, [running, woken], PARAMS)
    assert shares == pytest.approx({"a": 4750.0, "b": 1250.0}) and left == 0.0


def test_a_reach_that_does_not_bind_leaves_the_split_as_it_was() -> None:
    reach = [Candidate(c.id, c.soc_pct, c.limit_charge_w, c.limit_discharge_w, True, reach_discharge_w=4900.0)
             for c in THREE]
    assert allocate(6000.0, reach, PARAMS)[0] == pytest.approx(allocate(6000.0, THREE, PARAMS)[0])
