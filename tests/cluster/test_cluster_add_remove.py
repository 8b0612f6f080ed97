"""Members added and removed at run time with `ems cluster add/remove`, as real processes.

Three voters run from io_maps that list only each other; a fourth unit's io_map lists all four.
`ems cluster add --io-map node4.toml` makes it a member through the leader and the Raft log,
without editing or restarting the three; `ems cluster remove node4` takes it out again. The
processes are shared by the tests of this module, in order.
"""

from __future__ import annotations

import signal

import pytest
from cluster_kit import Cluster, ems_cluster, three_and_a_fourth, wait_until

pytestmark = pytest.mark.timeout(240)

THREE = ("node1", "node2", "node3")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from three_and_a_fourth(tmp_path_factory.mktemp("add_remove"), fourth_votes=False)


def listed_by(site: Cluster, node: str) -> set[str]:
    """The nodes whose status table lists `node`."""
    return {n for n, s in site.statuses().items() if node in {m["id"] for m in s["members"]}}


def split_of(site: Cluster) -> dict[str, float]:
    leader = site.leader()
    sent = site.records(leader, "sent") if leader else []
    return sent[-1]["shares"] if sent else {}


def test_a_unit_the_io_maps_do_not_list_is_not_a_member(site: Cluster) -> None:
    assert listed_by(site, "node4") == set()


def test_a_unit_added_at_run_time_joins_the_split_without_restarting_the_others(site: Cluster) -> None:
    pids = {n: site.nodes[n].pid for n in THREE}
    added = ems_cluster("add", "--io-map", str(site.files.paths["node4"]))
    assert added.returncode == 0, added.stderr
    assert "node4 is a member (committed in term" in added.stdout
    wait_until(lambda: listed_by(site, "node4") == set(THREE), 10.0, "every node lists node4")
    site.start_node("node4")
    wait_until(lambda: split_of(site).get("node4") is not None, 30.0, "node4 in the leader's split")
    leader = site.leader()
    wait_until(lambda: (s := site.status("node4")) is not None and s["setpoint"]["term"] == site.status(leader)["term"]
               and not s["setpoint"]["fallback"], 30.0, "node4 applying the leader's setpoints")
    assert {n: site.nodes[n].pid for n in THREE} == pids  # nobody restarted


def test_a_node_restarted_with_its_old_io_map_still_knows_the_added_member(site: Cluster) -> None:
    follower = next(n for n in THREE if n != site.leader())
    site.kill(follower, signal.SIGKILL)
    site.start_node(follower)
    wait_until(lambda: follower in listed_by(site, "node4"), 30.0, f"the restarted {follower} lists node4")


def test_adding_a_member_twice_is_refused_with_the_reason(site: Cluster) -> None:
    again = ems_cluster("add", "--io-map", str(site.files.paths["node4"]))
    assert again.returncode == 1 and "node4 is a member already" in again.stderr


def test_a_member_cannot_be_added_as_a_voter_its_io_map_does_not_make(site: Cluster) -> None:
    voter = ems_cluster("add", "--voter", "--io-map", str(site.files.paths["node4"]))
    assert voter.returncode == 1
    assert "node4's io_map says voter = false: add it without --voter" in voter.stderr


def test_a_member_may_not_change_the_members_only_a_command_key(site: Cluster) -> None:
    refused = ems_cluster("remove", "node4", "--key", "node2", "--io-map", str(site.files.paths["node4"]))
    assert refused.returncode == 1 and "node2 may not change the cluster's members" in refused.stderr


def test_a_member_removed_leaves_the_split_and_every_status_table(site: Cluster) -> None:
    removed = ems_cluster("remove", "node4", "--io-map", str(site.files.paths["node1"]))
    assert removed.returncode == 0, removed.stderr
    assert "node4 is no longer a member" in removed.stdout
    wait_until(lambda: not listed_by(site, "node4") - {"node4"}, 10.0, "no other node lists node4")
    wait_until(lambda: "node4" not in split_of(site), 10.0, "node4 out of the leader's split")
