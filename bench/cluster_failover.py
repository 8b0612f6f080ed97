"""Failover of the shipped three-node cluster (io_maps/sim_cluster/), four processes on 127.0.0.1.

Runs the plant (`ems simulate-devices`) and three controllers (`ems run`), then:

* steady state: `SETTLE_S` after all three follow, for `--steady` seconds, the share of the
  leader's scans in which the site meter was within `--tolerance` W of its target (from the
  leader's record of each setpoint it sent);
* `--runs` times: SIGKILL the leader and measure the time from the kill to the first setpoint of
  the new term applied by any node (from the nodes' records), and to the new leader's first
  setpoint sent; then restart the killed node and wait until all three follow one leader again.

Beside it, the baseline: the Raft engine alone (pysyncobj with the same settings and the lease,
no scan, no transport, no devices) in three bare processes, killed the same way: the time to
another node commanding. Both are dominated by pysyncobj's election (timeouts drawn between
raft_min_timeout_s and raft_max_timeout_s, split votes costing one more round).
Usage: python bench/cluster_failover.py [--runs 20]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests" / "cluster"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from cluster_kit import NODES, Cluster, ClusterFiles, free_ports, wait_until

from runtime.config.io_map import load_io_map

SETTLE_S = 6.0
BARE_SETTLE_S = 3.0


def following(cluster: Cluster) -> str | None:
    """The leader, once all three nodes apply its setpoints."""
    leader = cluster.leader()
    statuses = cluster.statuses()
    if leader is None or len(statuses) != 3:
        return None
    term = statuses[leader]["term"]
    ok = all(s["setpoint"]["term"] == term and not s["setpoint"]["fallback"] for s in statuses.values())
    return leader if ok else None


def steady_state(cluster: Cluster, seconds: float, tolerance_w: float) -> tuple[int, float, float]:
    """(scans, share within tolerance, mean |error|) of the leader's scans over `seconds`."""
    leader = wait_until(lambda: following(cluster), 60.0, "a steady cluster")
    time.sleep(SETTLE_S)  # inverters starting, ramps: not steady yet
    start = time.time()
    time.sleep(seconds)
    sent = [r for r in cluster.records(leader, "sent") if start <= r["t"] < start + seconds and r["grid_w"] is not None]
    errors = [abs(r["grid_w"] - r["target_w"]) for r in sent]
    met = sum(e <= tolerance_w for e in errors)
    return len(sent), met / len(sent) if sent else 0.0, statistics.mean(errors) if errors else float("nan")


def one_failover(cluster: Cluster) -> tuple[float, float]:
    """SIGKILL the leader; (kill -> first new-term setpoint applied, kill -> first sent); restart it."""
    old = wait_until(lambda: following(cluster), 60.0, "three nodes following one leader")
    old_term = cluster.status(old)["term"]
    survivors = [n for n in NODES if n != old]
    killed_at = cluster.kill(old, signal.SIGKILL)

    def first(kind: str) -> float | None:
        times = [r["t"] for n in survivors for r in cluster.records(n, kind) if r["term"] > old_term]
        return min(times) if times else None

    applied = wait_until(lambda: first("applied"), 20.0, "a setpoint of the new term applied")
    sent = first("sent") or applied
    cluster.start_node(old)
    return applied - killed_at, sent - killed_at


BARE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[4])
    from runtime.cluster.raft import RaftEngine
    from runtime.config.schema import ClusterConfig, ClusterNodeConfig
    ports = [int(p) for p in sys.argv[2].split(",")]
    nodes = tuple(ClusterNodeConfig(id=f"n{i}", raft_port=p, pub_port=1 + i, rep_port=10 + i)
                  for i, p in enumerate(ports))
    cfg = ClusterConfig(enabled=True, node_id=sys.argv[1], nodes=nodes, insecure_lab=True)
    engine = RaftEngine(cfg, "bench-cluster-password-of-32-characters")  # encrypted, as the cluster's
    engine.start()
    out = open(sys.argv[3], "w", buffering=1)
    last = None
    while True:
        v = engine.view()
        now = (int(v.commanding), v.term, v.leader if v.has_quorum and v.leader else "")
        if now != last:  # one line per change: the polling barely loads the Raft thread
            out.write(f"{time.time()} {now[0]} {now[1]} {now[2]}\\n")
            last = now
        time.sleep(0.01)
""")


def _views(path: Path, last: int | None = None) -> list[tuple[float, int, str]]:
    """(time, term, leader known with quorum or "") lines written by a bare process."""
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for line in lines[-last:] if last else lines:
        parts = line.split(" ")
        if len(parts) == 4:
            out.append((float(parts[0]), int(parts[2]), parts[3]))
    return out


def bare_raft(runs: int, tmp: Path) -> list[float]:
    """The Raft engine alone (pysyncobj with this project's settings and lease, no scan, no
    transport) in three processes: kill the leader `runs` times; kill -> another node commanding."""
    ports = free_ports(3)
    ids = [f"n{i}" for i in range(3)]
    procs: dict[str, subprocess.Popen] = {}

    def spawn(node: str) -> None:
        (tmp / node).unlink(missing_ok=True)
        procs[node] = subprocess.Popen([sys.executable, "-c", BARE, node, ",".join(map(str, ports)), str(tmp / node),
                                        str(ROOT)])

    def agreed() -> tuple[str, int] | None:
        views = [_views(tmp / n, 3) for n in ids]
        if not all(views):
            return None
        named = {(v[-1][2], v[-1][1]) for v in views}
        leader, term = named.pop() if len(named) == 1 else ("", 0)
        return (leader, term) if leader else None

    for node in ids:
        spawn(node)
    times = []
    try:
        for _ in range(runs):
            wait_until(agreed, 30.0, "a Raft leader")
            time.sleep(BARE_SETTLE_S)  # as in the cluster: the restarted node has caught up with the log
            old, term = wait_until(agreed, 5.0, "a Raft leader")
            killed = time.time()
            procs[old].kill()
            procs[old].wait()

            def replaced(old: str = old, killed: float = killed, term: int = term) -> float | None:
                found = [t for n in ids if n != old for t, commanding, tm in _commanding(tmp / n)
                         if t > killed and tm > term and commanding]
                return min(found) if found else None

            times.append(wait_until(replaced, 20.0, "a new commanding Raft leader") - killed)
            spawn(old)
    finally:
        for proc in procs.values():
            proc.kill()
    return times


def _commanding(path: Path) -> list[tuple[float, bool, int]]:
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) == 4:
            out.append((float(parts[0]), parts[1] == "1", int(parts[2])))
    return out


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return (f"{name:<44} median {statistics.median(values):6.3f} s   p90 {p90:6.3f} s   max {max(values):6.3f} s   "
            f"min {min(values):6.3f} s   (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state measured")
    parser.add_argument("--tolerance", type=float, default=100.0, help="W from the site target that counts as met")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        files = ClusterFiles(Path(tmp))
        cfg = load_io_map(files.paths["node1"]).cluster
        with Cluster(files) as cluster:
            cluster.start()
            scans, share, mean_err = steady_state(cluster, args.steady, args.tolerance)
            failovers = [one_failover(cluster) for _ in range(args.runs)]
            scans2, share2, mean_err2 = steady_state(cluster, 10.0, args.tolerance)
        bare_dir = Path(tmp) / "bare"
        bare_dir.mkdir()
        bare = bare_raft(args.runs, bare_dir)
    print(f"three-node cluster, Raft timeouts {cfg.raft_min_timeout_s}-{cfg.raft_max_timeout_s} s, lease "
          f"{cfg.lease_s} s, scan 0.1 s, {args.runs} leader SIGKILLs")
    print(summary("kill -> first setpoint applied, new term", [a for a, _ in failovers]))
    print(summary("kill -> first setpoint sent by the new leader", [s for _, s in failovers]))
    print(summary("baseline: Raft engine alone, kill -> commanding", bare))
    print(f"steady state: site meter within {args.tolerance:.0f} W of its target in {100 * share:.1f} % of "
          f"{scans} leader scans (mean |error| {mean_err:.0f} W); after the failovers {100 * share2:.1f} % of "
          f"{scans2} (mean |error| {mean_err2:.0f} W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
