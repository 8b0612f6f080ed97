"""The shipped three-node cluster as four processes in real time on 127.0.0.1: the plant
(`ems simulate-devices` serving the site meter, three inverters and three BMSs) and three
controllers (`ems run`), each reaching its devices through the real drivers.

The processes are shared by the tests of this module, in order; a test that kills or pauses
a node restores the cluster before the next one (`all_three_following`). The last test takes
the quorum away for good.
"""

from __future__ import annotations

import itertools
import json
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from cluster_kit import NODES, ROOT, Cluster, ClusterFiles, holds_for, wait_until
from pymodbus.client import ModbusTcpClient

from ems.cluster_status import render

pytestmark = pytest.mark.timeout(240)

LOAD_W = 6000.0  # the plant's constant site load (io_maps/sim_cluster/plant.toml), no PV


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    files = ClusterFiles(tmp_path_factory.mktemp("sim_cluster"))
    with Cluster(files) as running:
        running.start()
        running.wait_for_leader(40.0)
        yield running


def all_three_following(cluster: Cluster, timeout_s: float = 30.0) -> str:
    """Restart what a previous test stopped; wait until every node follows one leader."""
    for node in NODES:
        if node in cluster.paused:
            cluster.kill(node, signal.SIGCONT)
        if not cluster.alive(node):
            cluster.start_node(node)

    def following() -> str | None:
        leader = cluster.leader()
        statuses = cluster.statuses()
        if leader is None or len(statuses) != 3:
            return None
        term = statuses[leader]["term"]
        ok = all(s["setpoint"]["term"] == term and not s["setpoint"]["fallback"] for s in statuses.values())
        return leader if ok else None

    return wait_until(following, timeout_s, "three nodes following one leader")


def steady(cluster: Cluster, leader: str, timeout_s: float = 30.0) -> None:
    """Until the ramps after a restart or a state change are done: for three status polls in a
    row (0.4 s), the meter at its target and the three units carrying the site load."""
    polls: list[bool] = []

    def settled() -> bool:
        status = cluster.status(leader)
        polls.append(status is not None
                     and abs(status["site"]["grid_power_w"] - status["site"]["cluster_grid_setpoint_w"]) <= 150.0
                     and abs(status["cluster"]["p_w"] - LOAD_W) <= 300.0)
        return len(polls) >= 3 and all(polls[-3:])

    wait_until(settled, timeout_s, "the meter at its target and the units carrying the load", poll_s=0.2)


def members(status: dict) -> dict[str, dict]:
    return {m["id"]: m for m in status["members"]}


def scans_with_two_terms(records: list[dict]) -> list[tuple[int, int]]:
    """(process, scan) in which a node applied setpoints of more than one term."""
    terms = defaultdict(set)
    for r in records:
        terms[(r["pid"], r["scan"])].add(r["term"])
    return [key for key, seen in terms.items() if len(seen) > 1]


def terms_never_go_back(records: list[dict]) -> bool:
    """Within each process of a node, the applied terms only rise."""
    by_pid = defaultdict(list)
    for r in sorted(records, key=lambda r: (r["pid"], r["scan"])):
        by_pid[r["pid"]].append(r["term"])
    return all(a <= b for terms in by_pid.values() for a, b in itertools.pairwise(terms))


# --- steady state -------------------------------------------------------------------------------


def test_a_leader_is_elected_and_every_node_follows_its_setpoints(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    statuses = cluster.statuses()
    term = statuses[leader]["term"]
    assert [s["leader"] for s in statuses.values()] == [leader] * 3
    assert [s["commanding"] for s in statuses.values()].count(True) == 1
    for node in NODES:
        applied = cluster.records(node, "applied")
        assert applied and applied[-1]["term"] == term and applied[-1]["leader"] == leader
    before = cluster.records(leader, "sent")[-1]
    sent = wait_until(lambda: len(s := [r for r in cluster.records(leader, "sent") if r["t"] > before["t"]]) >= 8
                      and s, 10.0, "eight more setpoints sent")
    assert sent[7]["t"] - before["t"] <= 1.0  # eight within the second after `before`, on the leader's clock
    assert len(sent) >= 8 and all(r["term"] == term for r in sent)  # a setpoint every scan (0.1 s)
    assert [r["seq"] for r in sent] == list(range(before["seq"] + 1, before["seq"] + 1 + len(sent)))


def test_the_site_meter_is_held_at_its_target(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    steady(cluster, leader)  # the ramps settled after any restart
    grid = []
    for _ in range(30):
        status = cluster.status(leader)
        assert status is not None
        grid.append(status["site"]["grid_power_w"])
        time.sleep(0.2)  # deliberately: the sampling period of the 6 s the meter is watched over
    target = status["site"]["cluster_grid_setpoint_w"]
    met = [abs(g - target) <= 150.0 for g in grid]
    assert target == 0.0
    assert sum(met) / len(met) >= 0.9, grid
    assert abs(statistics.mean(grid) - target) < 100.0
    assert status["cluster"]["p_w"] == pytest.approx(LOAD_W, abs=300.0)  # the three units carry the load


def test_socs_converge_the_fullest_unit_discharging_most(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    before = members(cluster.status(leader))
    spread_before = max(m["soc_pct"] for m in before.values()) - min(m["soc_pct"] for m in before.values())
    fullest = max(before.values(), key=lambda m: m["soc_pct"])["id"]
    emptiest = min(before.values(), key=lambda m: m["soc_pct"])["id"]
    assert before[fullest]["p_w"] > before[emptiest]["p_w"] + 500.0

    def converged() -> dict[str, dict] | None:  # 1 kWh units: the fullest, at about 3.7 kW, loses 0.1 % SOC a second
        status = cluster.status(leader)
        now = members(status) if status is not None else {}
        if set(now) != set(NODES):
            return None
        spread = max(m["soc_pct"] for m in now.values()) - min(m["soc_pct"] for m in now.values())
        return now if spread < spread_before - 0.6 else None

    after = wait_until(converged, 60.0, "the SOC spread down by 0.6 %", poll_s=0.5)
    spread_after = max(m["soc_pct"] for m in after.values()) - min(m["soc_pct"] for m in after.values())
    drop = {node: before[node]["soc_pct"] - after[node]["soc_pct"] for node in NODES}
    assert spread_after < spread_before - 0.6, (before, after)
    assert drop[fullest] > 3 * max(drop[emptiest], 0.05), drop


def test_cluster_status_prints_members_roles_terms_socs_and_setpoints(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    node2 = str(cluster.files.paths["node2"])
    out = subprocess.run([sys.executable, "-m", "ems.cli", "cluster", "status", "--io-map", node2, "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["node"] == "node2" and status["leader"] == leader and status["term"] >= 1
    assert sorted(m["id"] for m in status["members"]) == list(NODES)
    assert all({"state", "role", "term", "soc_pct", "setpoint_w"} <= set(m) for m in status["members"])
    table = subprocess.run([sys.executable, "-m", "ems.cli", "cluster", "status", "--io-map", node2], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and f"leader {leader}, term {status['term']}" in table.stdout
    assert all(node in table.stdout for node in NODES)


def test_a_state_command_to_the_leader_reaches_every_node(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    follower = next(n for n in NODES if n != leader)
    refused = cluster.ask(follower, {"cmd": "state", "value": "maintenance"})
    assert refused["ok"] is False and refused["leader"] == leader
    accepted = cluster.ask(leader, {"cmd": "state", "value": "maintenance"})
    assert accepted["ok"] is True
    in_state = lambda state: lambda: all(m.get("site_state") == state
                                         for m in cluster.status(leader)["members"])
    wait_until(in_state("maintenance"), 5.0, "every node in maintenance")
    done = subprocess.run([sys.executable, "-m", "ems.cli", "cluster", "state", "run", "--io-map",
                           str(cluster.files.paths[leader])], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and "run queued by the leader" in done.stdout, done.stderr
    wait_until(in_state("run"), 8.0, "every node running again")


# --- failures -----------------------------------------------------------------------------------


def test_a_killed_leader_is_replaced_within_2_s_and_rejoins_as_follower(cluster: Cluster) -> None:
    old = all_three_following(cluster)
    steady(cluster, old)  # the previous test ended with every node just back in Run
    old_term = cluster.status(old)["term"]
    survivors = [n for n in NODES if n != old]
    killed_at = cluster.kill(old, signal.SIGKILL)
    new = wait_until(cluster.leader, 10.0, "a new leader")
    assert new != old and cluster.status(new)["term"] > old_term
    silent = wait_until(lambda: next((m for m in (cluster.status(new) or {}).get("members", [])
                                      if m["id"] == old and m["state"] in ("stale", "offline")), None),
                        5.0, f"{new} sees {old} silent")
    assert silent["age_s"] >= 0.5
    line = next(r for r in render(cluster.status(new) or {}).splitlines() if r.startswith(old + " "))
    assert "unreachable" in line and "leader" not in line  # `ems cluster status` on the survivor

    def first_new_term() -> float | None:
        times = [r["t"] for n in survivors for r in cluster.records(n, "applied") if r["term"] > old_term]
        return min(times) if times else None

    first = wait_until(first_new_term, 5.0, "a setpoint of the new term applied")
    assert first - killed_at < 2.0
    last_old = [r for r in cluster.records(old, "sent") if r["term"] == old_term][-1]
    first_new = next(r for r in cluster.records(new, "sent") if r["term"] > old_term)
    for node in survivors:  # bumpless: the survivors carry on from their setpoints, not from 0; the
        # first new baseline may differ by one scan of the cluster ramp (5000 W/s x 0.1 s)
        assert first_new["shares"][node] == pytest.approx(last_old["shares"][node], abs=600.0)
    for node in survivors:
        applied = cluster.records(node, "applied")
        assert scans_with_two_terms(applied) == []
        assert terms_never_go_back(applied)
    restarted_at = time.time()
    cluster.start_node(old)

    def rejoined() -> bool:  # a node still starting answers without a role yet
        s, leader = cluster.status(old) or {}, cluster.status(new) or {}
        setpoint = s.get("setpoint") or {}
        return (s.get("role") == "follower" and s.get("leader") == new and "term" in leader
                and setpoint.get("term") == leader["term"] and not setpoint.get("fallback", True))

    wait_until(rejoined, 30.0, f"{old} following {new}")
    assert [r for r in cluster.records(old, "sent") if r["t"] > restarted_at] == []


def inverter_fault_bits(cluster: Cluster, node: str) -> int | None:
    """The node's simulated inverter's SunSpec EvtVnd1 (40114, uint32), read by a plain pymodbus client."""
    client = ModbusTcpClient("127.0.0.1", port=cluster.files.inverter_port[node], timeout=1.0)
    try:
        if not client.connect():
            return None
        reply = client.read_holding_registers(40114, count=2, device_id=1)
        return None if reply.isError() else int(client.convert_from_registers(reply.registers, client.DATATYPE.UINT32))
    finally:
        client.close()


def test_a_follower_killed_and_restarted_10_times_never_trips_its_inverter(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    steady(cluster, leader)
    follower = next(n for n in NODES if n != leader)
    for attempt in range(10):
        assert inverter_fault_bits(cluster, follower) == 0, f"restart {attempt}: the inverter is in fault"
        cluster.kill(follower, signal.SIGKILL)  # while its inverter carries its share
        restarted_at = time.time()
        cluster.start_node(follower)

        def back_in_the_split(restarted_at: float = restarted_at) -> bool:
            status = cluster.status(follower) or {}
            sent = [r for r in cluster.records(leader, "sent") if r["t"] > restarted_at]
            return (status.get("role") == "follower" and not (status.get("setpoint") or {}).get("fallback", True)
                    and bool(sent) and sent[-1]["shares"].get(follower, 0.0) > 500.0)

        wait_until(back_in_the_split, 30.0, f"restart {attempt}: {follower} back in the split")
        assert inverter_fault_bits(cluster, follower) == 0, f"restart {attempt}: the restart tripped the inverter"
    steady(cluster, leader)


def test_a_paused_follower_resumes_as_follower_without_a_new_term(cluster: Cluster) -> None:
    leader = all_three_following(cluster)
    term = cluster.status(leader)["term"]
    follower = next(n for n in NODES if n != leader)
    paused_at = cluster.kill(follower, signal.SIGSTOP)
    # Deliberately a fixed pause: 2 s, ten election timeouts, so that its timer has long run out
    time.sleep(max(0.0, paused_at + 2.0 - time.time()))
    cluster.kill(follower, signal.SIGCONT)
    wait_until(lambda: (s := cluster.status(follower)) is not None and s["role"] == "follower"
               and _setpoint_term(s) == term, 10.0, f"{follower} following again")
    holds_for(lambda: (s := cluster.status(leader)) is not None and s["term"] == term and s["commanding"], 2.0,
              "the leader keeps its term and keeps commanding")
    assert cluster.leader() == leader


def _setpoint_term(status: dict) -> int | None:
    return (status.get("setpoint") or {}).get("term")


def test_a_paused_leader_does_not_command_once_a_new_term_exists(cluster: Cluster) -> None:
    old = all_three_following(cluster)
    old_term = cluster.status(old)["term"]
    paused_at = cluster.kill(old, signal.SIGSTOP)
    new = wait_until(cluster.leader, 10.0, "a new leader while the old one is paused")
    new_term = cluster.status(new)["term"]
    assert new != old and new_term > old_term
    # Deliberately a fixed pause, not a wait for anything: the old leader stays stopped for 2 s, far
    # past the election timeout, whatever the new election took.
    time.sleep(max(0.0, paused_at + 2.0 - time.time()))
    resumed_at = cluster.kill(old, signal.SIGCONT)
    wait_until(lambda: (s := cluster.status(old)) is not None and s["leader"] == new and s["role"] == "follower",
               10.0, f"{old} following {new}")

    def nothing_from_the_deposed_leader() -> bool:
        assert [r for r in cluster.records(old, "sent") if r["t"] >= paused_at] == []
        for node in NODES:
            late = [r for r in cluster.records(node, "applied") if r["t"] >= resumed_at and r["term"] <= old_term]
            assert late == [], f"{node} applied a deposed leader's setpoint"
            assert scans_with_two_terms(cluster.records(node, "applied")) == []
        return True

    # What must not happen, for the 1 s (ten scans) after it follows: a setpoint from the old leader.
    # The records only grow, so checking every 0.5 s misses nothing (and reads the files less).
    holds_for(nothing_from_the_deposed_leader, 1.0, "nothing sent or applied from the deposed leader", poll_s=0.5)


def test_without_quorum_the_last_node_stops_commanding_and_falls_back_to_0_w(cluster: Cluster) -> None:
    survivor = all_three_following(cluster)  # the leader survives: it believes it leads for a while
    killed_at = time.time()
    for node in NODES:
        if node != survivor:
            cluster.kill(node, signal.SIGKILL)
    wait_until(lambda: (s := cluster.status(survivor)) is not None and s["setpoint"]["fallback"], 5.0,
               "the survivor on its fallback")
    wait_until(lambda: abs(cluster.status(survivor)["setpoint"]["p_w"]) < 1.0, 6.0, "the fallback ramped to 0 W")
    status = cluster.status(survivor)
    assert status["commanding"] is False and status["leader"] is None and status["has_quorum"] is False
    late = [r for r in cluster.records(survivor, "sent") if r["t"] > killed_at + 0.5]
    assert late == [], "the survivor sent setpoints without a quorum"
    wait_until(lambda: abs(members(cluster.status(survivor))[survivor]["p_w"]) < 100.0, 8.0,
               "the survivor's inverter at 0 W")
    # what must not happen, for 2 s: the survivor commanding again (a status poll that times out tells nothing)
    holds_for(lambda: (s := cluster.status(survivor)) is None or s["commanding"] is False, 2.0,
              "the survivor never commands without a quorum")
    assert cluster.status(survivor)["commanding"] is False
