"""Raft voters added and removed at run time (`ems cluster add --voter`, `ems cluster remove`),
through pysyncobj's membership change, as real processes.

Three voters run from io_maps that list only each other; a fourth unit's io_map lists all four
as voters. Once node4 has joined as a voter and a dead original voter has been removed, the
voters are node4 and two of the three: killing one more leaves two of three, a quorum, and the
cluster still commands. Had node4 not become a voter (or the dead one not left), the one
original survivor would be alone and nothing would command. The tests of this module share
the processes, in order.
"""

from __future__ import annotations

import signal

import pytest
from cluster_kit import Cluster, ems_cluster, three_and_a_fourth, wait_until

pytestmark = pytest.mark.timeout(240)

THREE = ("node1", "node2", "node3")
KILLED: dict[str, str] = {}  # the tests share the processes: the leader a test killed, for the next


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from three_and_a_fourth(tmp_path_factory.mktemp("voters"), fourth_votes=True)


def applies_leader(site: Cluster, node: str) -> bool:
    """`node` applies the setpoints of the commanding leader's term (not its fallback)."""
    leader = site.leader()
    status, lead = site.status(node), site.status(leader) if leader else None
    return (status is not None and lead is not None and status.get("setpoint", {}).get("term") == lead.get("term")
            and status["setpoint"]["fallback"] is False)


def test_a_voter_must_be_added_as_one(site: Cluster) -> None:
    plain = ems_cluster("add", "--io-map", str(site.files.paths["node4"]))
    assert plain.returncode == 1
    assert "node4's io_map says voter = true: add it with --voter" in plain.stderr


def test_a_voter_added_at_run_time_votes_and_follows(site: Cluster) -> None:
    pids = {n: site.nodes[n].pid for n in THREE}
    added = ems_cluster("add", "--voter", "--io-map", str(site.files.paths["node4"]))
    assert added.returncode == 0, added.stderr
    assert "node4 is a Raft voter (committed in term" in added.stdout
    site.start_node("node4")
    wait_until(lambda: (s := site.status("node4")) is not None and s.get("role") in ("follower", "leader")
               and s.get("has_quorum"), 30.0, "node4 a voter in the leader's Raft")
    wait_until(lambda: applies_leader(site, "node4"), 30.0, "node4 applying the leader's setpoints")
    assert {n: site.nodes[n].pid for n in THREE} == pids  # nobody restarted


def test_a_dead_voter_removed_no_longer_counts_toward_the_quorum(site: Cluster) -> None:
    leader = site.wait_for_leader(30.0)
    dead, survivor = (n for n in THREE if n != leader)  # two followers among the original three
    site.kill(dead, signal.SIGKILL)
    removed = ems_cluster("remove", dead, "--io-map", str(site.files.paths[leader]))
    assert removed.returncode == 0, removed.stderr
    wait_until(lambda: all(dead not in {m["id"] for m in s["members"]} for s in site.statuses().values()), 10.0,
               f"no node lists {dead}")
    # voters now: the leader, the survivor and node4; one more may fail
    site.kill(leader, signal.SIGKILL)
    KILLED["leader"] = leader
    new_leader = site.wait_for_leader(30.0)
    assert new_leader in (survivor, "node4")
    wait_until(lambda: applies_leader(site, survivor) and applies_leader(site, "node4"), 30.0,
               "both survivors applying the new leader's setpoints")


def test_a_voter_restarted_with_its_old_io_map_rejoins_the_changed_voters(site: Cluster) -> None:
    """Its io_map lists the three original voters; its saved roster says node4 joined and one
    of the three left: it starts with those as its Raft partners and follows again."""
    old = KILLED["leader"]
    site.start_node(old)
    wait_until(lambda: (s := site.status(old)) is not None and s.get("role") == "follower" and s.get("has_quorum"),
               30.0, f"{old} a follower again")
    wait_until(lambda: applies_leader(site, old), 30.0, f"{old} applying the leader's setpoints")
