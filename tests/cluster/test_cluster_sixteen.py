"""An industrial site: sixteen battery units, three of them Raft voters, as seventeen processes.

The plant (`ems simulate-devices`, one SunSpec inverter and one CAN BMS per unit behind a site
meter) and a controller (`ems run`) per unit, each a copy of the shipped node1 with its own
ports (cluster_kit.ClusterFiles). Units 1 to 3 vote; units 4 to 16 are members: they follow Raft
read-only, take their share and report their state. The processes are shared by the tests of
this module, in order.
"""

from __future__ import annotations

import signal

import pytest
from cluster_kit import FOUR_HZ, Cluster, ClusterFiles, wait_until

from ems.cluster_status import render

pytestmark = pytest.mark.timeout(300)

UNITS, VOTERS = 16, 3
LOAD_W = 6000.0  # the plant's constant site load (io_maps/sim_cluster/plant.toml), no PV


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    files = ClusterFiles(tmp_path_factory.mktemp("sixteen"), units=UNITS, voters=VOTERS,
                         node_overrides=FOUR_HZ)  # see cluster_kit.FOUR_HZ
    with Cluster(files) as running:
        running.start()
        running.wait_for_leader(90.0)
        yield running


def every_unit_following(site: Cluster, units: list[str], timeout_s: float = 90.0) -> str:
    """Until every unit of `units` applies the setpoints of one commanding leader."""

    def following() -> str | None:
        leader = site.leader()
        statuses = site.statuses()
        if leader is None or any(u not in statuses for u in units):
            return None
        term = statuses[leader]["term"]
        ok = all(statuses[u]["setpoint"]["term"] == term and not statuses[u]["setpoint"]["fallback"] for u in units)
        return leader if ok else None

    return wait_until(following, timeout_s, f"{len(units)} units following one leader")


def last_split(site: Cluster, leader: str) -> dict[str, float]:
    return site.records(leader, "sent")[-1]["shares"]


def test_sixteen_units_follow_one_leader_that_is_a_voter(site: Cluster) -> None:
    leader = every_unit_following(site, list(site.files.nodes))
    assert leader in ("node1", "node2", "node3")
    terms = {s["term"] for s in site.statuses().values()}
    assert len(terms) == 1  # the members know the voters' term


def test_the_split_gives_every_unit_a_share_of_the_site_load(site: Cluster) -> None:
    leader = every_unit_following(site, list(site.files.nodes))
    seen: list[float] = []

    def carrying() -> bool:
        seen.append((site.status(leader) or {}).get("cluster", {}).get("p_w", float("nan")))
        return abs(seen[-1] - LOAD_W) <= 600.0

    try:
        wait_until(carrying, 60.0, "the sixteen units carry the site load")
    except AssertionError as failed:
        raise AssertionError(f"{failed}; the leader's cluster p_w, last readings: {seen[-10:]}") from None
    shares = wait_until(lambda: s if len(s := last_split(site, leader)) == UNITS else None, 30.0,
                        "a split over all sixteen units")
    assert set(shares) == set(site.files.nodes)
    assert abs(sum(shares.values()) - site.records(leader, "sent")[-1]["baseline_w"]) < 1.0 * UNITS  # all of it
    # 6 kW over sixteen 5 kW units: several carry it, none below node_min_p_w (500 W), weighted by
    # SOC (the plant starts them from 70 % at node1 down to 30 % at node16; headroom weighs too)
    running = {n: p for n, p in shares.items() if p}
    assert len(running) >= 2 and min(running.values()) >= 500.0, shares
    fullest = max(running, key=running.__getitem__)
    assert fullest in site.files.nodes[:8] and running[fullest] > shares["node16"], shares


def test_the_status_shows_sixteen_rows_the_members_as_members(site: Cluster) -> None:
    leader = every_unit_following(site, list(site.files.nodes))

    def all_online() -> dict | None:
        status = site.status(leader)
        ok = status is not None and all(m["state"] == "online" for m in status["members"])
        return status if ok else None

    status = wait_until(all_online, 30.0, "sixteen rows online in the leader's status")
    rows = {m["id"]: m for m in status["members"]}
    assert set(rows) == set(site.files.nodes)
    assert {rows[n]["role"] for n in site.files.nodes[VOTERS:]} == {"member"}
    assert {rows[n]["role"] for n in site.files.nodes[:VOTERS]} == {"leader", "follower"}
    table = render(status)
    assert table.count("\n") >= UNITS + 1 and "member" in table


def test_a_member_killed_leaves_the_split_and_costs_no_election(site: Cluster) -> None:
    leader = every_unit_following(site, list(site.files.nodes))
    term = site.status(leader)["term"]  # type: ignore[index]
    site.kill("node10", signal.SIGKILL)
    wait_until(lambda: "node10" not in last_split(site, leader), 10.0, "node10 out of the split")
    wait_until(lambda: {m["id"]: m for m in site.status(leader)["members"]}["node10"]["state"]  # type: ignore[index]
               in ("stale", "offline"), 10.0, "node10 shown silent")
    assert site.leader() == leader and site.status(leader)["term"] == term  # type: ignore[index]
    assert len(last_split(site, leader)) == UNITS - 1


def test_the_leader_killed_another_voter_takes_over_and_every_survivor_follows(site: Cluster) -> None:
    survivors = [n for n in site.files.nodes if n != "node10"]
    old = every_unit_following(site, survivors)
    old_term = site.status(old)["term"]  # type: ignore[index]
    killed_at = site.kill(old, signal.SIGKILL)
    rest = [n for n in survivors if n != old]
    new = every_unit_following(site, rest, 30.0)
    assert new != old and new in ("node1", "node2", "node3")
    applied = [r["t"] for n in rest for r in site.records(n, "applied") if r["term"] > old_term]
    assert min(applied) - killed_at < 3.0  # the first setpoint of the new term, within one election
    shares = wait_until(lambda: s if set(s := last_split(site, new)) == set(rest) else None, 20.0,
                        "the split over the fourteen survivors")
    assert old not in shares and "node10" not in shares
