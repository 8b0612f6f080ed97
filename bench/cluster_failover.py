"""Failover of the shipped cluster (io_maps/sim_cluster/), the plant and one process per unit on 127.0.0.1.

Runs the plant (`ems simulate-devices`) and a controller (`ems run`) per unit: the shipped three
by default, or `--units 16 --voters 3` (the same unit copied, three of them Raft voters and the
others members that follow without voting), then:

* steady state: `SETTLE_S` after all three follow, for `--steady` seconds, the share of the
  leader's scans in which the site meter was within `--tolerance` W of its target (from the
  leader's record of each setpoint it sent);
* `--runs` times: SIGKILL the leader and measure the time from the kill to the first setpoint of
  the new term applied by any node (from the nodes' records), and to the new leader's first
  setpoint sent; then restart the killed node and wait until all three follow one leader again,
  each online and running (or asleep, as the split lets it) for 3 s: a kill while the last
  one killed is still starting would measure a second fault, not a failover.
* the site meter through each failover, read by its own observer (a plain pymodbus client
  polling the simulated EM24 every 50 ms, nothing of the controller): the peak |error| from
  the target (also as a share of the lost unit's power), the time outside +-`--tolerance` W,
  and the time from the new leader's first setpoint until the meter is back within the
  tolerance (and stays there for 1 s). The lost unit's inverter keeps its last power until
  its revert timer runs out: the window covers that, and the survivors taking it over.

Beside it, the baseline: the Raft engine alone (pysyncobj with the same settings and the lease,
no scan, no transport, no devices) in three bare processes, killed the same way: the time to
another node commanding. Both are dominated by pysyncobj's election (timeouts drawn between
raft_min_timeout_s and raft_max_timeout_s, split votes costing one more round).
Usage: python bench/cluster_failover.py [--runs 20] [--units 16 --voters 3]
"""

from __future__ import annotations

import argparse
import itertools
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "tests", ROOT / "tests" / "cluster", ROOT):  # ROOT first: bench/blocks.py would shadow blocks
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import attrs
from cluster_kit import FOUR_HZ, Cluster, ClusterFiles, free_ports, wait_until
from pymodbus.client import ModbusTcpClient

from runtime.config.io_map import load_io_map

SETTLE_S = 6.0
BARE_SETTLE_S = 3.0
WINDOW_S = 12.0  # after the kill: the election, the takeover, the lost inverter's revert (5 s), the pick-up
STAYS_S = 1.0
STEADY_S = 3.0  # the cluster counts as settled once every unit has run (or slept) this long  # "back within the tolerance" once it stays there this long


def em24_w(registers: Sequence[int]) -> float:
    """Carlo Gavazzi EM24 W at 0x28: INT32 least significant word first, 0.1 W (+ import)."""
    lsw, msw = registers
    raw = (msw << 16) | lsw
    return (raw - (1 << 32) if raw & 0x80000000 else raw) * 0.1


def sunspec_w(registers: Sequence[int]) -> float:
    """SunSpec model 103 W at 40084 and its scale factor W_SF at 40085, both int16 (+ discharge)."""
    w, sf = (r - 65536 if r & 0x8000 else r for r in registers)
    return w * 10.0 ** sf


class Watch(threading.Thread):
    """One power register of a simulated device, polled every 50 ms by a plain pymodbus client:
    an observer apart from the controllers, which read the same devices through their own drivers."""

    def __init__(self, port: int, address: int, decode: Callable[[Sequence[int]], float], name: str):
        super().__init__(name=f"watch-{name}", daemon=True)
        self.port = port
        self.address = address
        self.decode = decode
        self.samples: list[tuple[float, float]] = []  # (wall time, W)
        self.stopped = threading.Event()

    def run(self) -> None:
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=0.5)
        while not self.stopped.wait(0.05):
            try:
                if not client.connected and not client.connect():
                    continue
                reply = client.read_holding_registers(self.address, count=2, device_id=1)
            except Exception:  # noqa: BLE001, S112 - an observer: a missed sample is just missing
                continue
            if not reply.isError():
                self.samples.append((time.time(), self.decode(reply.registers)))
        client.close()

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(t, w) for t, w in list(self.samples) if start <= t <= end]

    def settled(self, target_w: float, tolerance_w: float, seconds: float) -> bool:
        now = time.time()
        recent = self.between(now - seconds, now)
        return len(recent) >= seconds / 0.1 and all(abs(w - target_w) <= tolerance_w for _, w in recent)


@attrs.frozen
class Failover:
    """One leader SIGKILL, on the nodes' records and the meter."""

    applied_s: float  # kill -> first setpoint of the new term applied
    sent_s: float  # kill -> the new leader's first setpoint
    lost_w: float  # the killed unit's share when it died
    peak_w: float  # the meter's largest |error| from its target in the window
    outside_s: float  # time the meter spent outside the tolerance in the window
    back_s: float  # new leader's first setpoint -> within the tolerance (staying STAYS_S)
    terms: int  # terms the failover took: 1 = one election round


def deviation(samples: list[tuple[float, float]], target_w: float, tolerance_w: float,
              first_sent: float) -> tuple[float, float, float]:
    """(peak |error|, seconds outside the tolerance, first_sent -> back within and staying)."""
    errors = [(t, abs(w - target_w)) for t, w in samples]
    peak = max((e for _, e in errors), default=float("nan"))
    outside = sum(b[0] - a[0] for a, b in itertools.pairwise(errors) if a[1] > tolerance_w)
    back = float("nan")
    for i, (t, _) in enumerate(errors):
        if t < first_sent:
            continue
        later = [e for u, e in errors[i:] if u <= t + STAYS_S]
        if errors[-1][0] >= t + STAYS_S and all(e <= tolerance_w for e in later):
            back = t - first_sent
            break
    return peak, outside, back


def following(cluster: Cluster) -> str | None:
    """The leader, once every node applies its setpoints (a node still starting has none) and,
    as the leader sees it, is online and runs or sleeps as the split lets it: a kill while the
    last one killed is still starting would be a second fault (N-2), not a failover."""
    leader = cluster.leader()
    statuses = cluster.statuses()
    if leader is None or len(statuses) != len(cluster.files.nodes):
        return None
    term = statuses[leader]["term"]
    settled = all(m.get("state") == "online" and m.get("site_state") in ("run", "idle")
                  for m in statuses[leader]["members"])
    return leader if settled and all(_follows(s, term) for s in statuses.values()) else None


def steadily(cluster: Cluster) -> Callable[[], str | None]:
    """A condition: the leader once `following` has named it at every poll for STEADY_S (a unit
    just switched to Run starts its inverter within about 1.5 s; then the meter must settle too)."""
    since: dict[str, float] = {}

    def check() -> str | None:
        leader = following(cluster)
        if leader is None:
            since.clear()
            return None
        start = since.setdefault(leader, time.monotonic())
        return leader if time.monotonic() - start >= STEADY_S else None
    return check


def _follows(status: dict, term: int) -> bool:
    setpoint = status.get("setpoint") or {}
    return setpoint.get("term") == term and setpoint.get("fallback") is False


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


def one_failover(cluster: Cluster, meter: Watch, tolerance_w: float, trace: Path | None = None,
                 inverters: dict[str, Watch] | None = None) -> Failover:
    """Once settled, SIGKILL the leader; measure on the records and the meter; restart it."""
    old = wait_until(steadily(cluster), 60.0, f"every node following one leader for {STEADY_S:.0f} s")
    target = cluster.records(old, "sent")[-1]["target_w"]
    wait_until(lambda: meter.settled(target, tolerance_w, 2.0), 60.0, "the meter settled at its target")
    old_term = cluster.status(old)["term"]
    survivors = [n for n in cluster.files.nodes if n != old]
    lost_w = cluster.records(old, "sent")[-1]["shares"][old]
    killed_at = cluster.kill(old, signal.SIGKILL)

    def first(kind: str) -> float | None:
        times = [r["t"] for n in survivors for r in cluster.records(n, kind) if r["term"] > old_term]
        return min(times) if times else None

    applied = wait_until(lambda: first("applied"), 20.0, "a setpoint of the new term applied")
    sent = first("sent") or applied
    new_term = min(r["term"] for n in survivors for r in cluster.records(n, "applied") if r["term"] > old_term)
    wait_until(lambda: time.time() > killed_at + WINDOW_S, WINDOW_S + 5.0, "the failover window")
    peak, outside, back = deviation(meter.between(killed_at, killed_at + WINDOW_S), target, tolerance_w, sent)
    if trace is not None:
        write_trace(trace, cluster, meter, inverters or {}, killed_at, target, old)
    cluster.start_node(old)
    return Failover(applied - killed_at, sent - killed_at, lost_w, peak, outside, back, new_term - old_term)


def write_trace(path: Path, cluster: Cluster, meter: Watch, inverters: dict[str, Watch], killed_at: float,
                target_w: float, killed: str) -> None:
    """One failover as a table every 0.1 s from the kill: the meter's error, the new leader's
    baseline and its model of the dead unit as the split counts it (`outside_w`, its `lead_s`
    ahead), each unit's share, power (its inverter's, read by an observer; else its last
    "applied" record's) and state."""
    nodes = list(cluster.files.nodes)
    applied = {n: [r for r in cluster.records(n, "applied") if r["t"] >= killed_at - 1.0] for n in nodes}
    sent = sorted((r for n in nodes if n != killed for r in cluster.records(n, "sent") if r["t"] >= killed_at),
                  key=lambda r: r["t"])
    samples = meter.between(killed_at - 0.5, killed_at + WINDOW_S)
    powers = {n: watch.between(killed_at - 1.0, killed_at + WINDOW_S) for n, watch in inverters.items()}
    lines = [f"killed {killed}; target {target_w:.0f} W; columns: t_s error_w baseline_w outside_w@lead_s "
             "cluster_w/grid_w (the leader's), then "
             "per unit share_w/power_w/state"]
    for step in range(-5, int(WINDOW_S * 10)):
        t = killed_at + step / 10.0
        meter_now = [w for ts, w in samples if ts <= t]
        leader = [r for r in sent if r["t"] <= t]
        cells = [f"{step / 10.0:5.1f}", f"{meter_now[-1] - target_w:7.0f}" if meter_now else "      -",
                 f"{leader[-1]['baseline_w']:7.0f}" if leader else "      -",
                 f"{leader[-1].get('outside_w', 0):6.0f}@{leader[-1].get('lead_s', 0):.2f}" if leader else "     -@-   ",
                 f"{leader[-1].get('cluster_w', 0):6.0f}/{leader[-1]['grid_w'] or 0:5.0f}" if leader else "     -/-    "]
        for n in nodes:
            last = [r for r in applied[n] if r["t"] <= t]
            seen = [w for ts, w in powers.get(n, []) if ts <= t]
            power = seen[-1] if seen else last[-1].get("inverter_w", 0) if last else 0
            cells.append(f"{n}:{last[-1]['p_w']:.0f}/{power:.0f}/{last[-1].get('state', '?')}" if last else f"{n}:-")
        lines.append("  ".join(cells))
    path.mkdir(parents=True, exist_ok=True)
    (path / f"failover-{int(killed_at)}.txt").write_text("\n".join(lines) + "\n")


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
    parser.add_argument("--units", type=int, default=3, help="battery units, one controller process each")
    parser.add_argument("--voters", type=int, default=None, help="of them Raft voters (default: all)")
    parser.add_argument("--trace", type=Path, default=None, metavar="DIR",
                        help="write each failover's timeline (meter error, shares, measured powers) into DIR")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="run the cluster in DIR and leave it there: the nodes' logs and records")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as scratch:
        tmp = str(args.keep or scratch)
        # more units than the shipped three share this machine's cores at 4 Hz (cluster_kit.FOUR_HZ)
        overrides = FOUR_HZ if args.units > 3 else None
        files = ClusterFiles(Path(tmp), units=args.units, voters=args.voters, node_overrides=overrides)
        node1 = load_io_map(files.paths["node1"])
        cfg, scan_s = node1.cluster, node1.site.scan_period_s
        with Cluster(files) as cluster:
            cluster.start()
            meter = Watch(files.meter_port, 0x28, em24_w, "meter")
            inverters = {n: Watch(port, 40084, sunspec_w, n) for n, port in files.inverter_port.items()} if args.trace else {}
            for watch in (meter, *inverters.values()):
                watch.start()
            scans, share, mean_err = steady_state(cluster, args.steady, args.tolerance)
            failovers = [one_failover(cluster, meter, args.tolerance, args.trace, inverters) for _ in range(args.runs)]
            scans2, share2, mean_err2 = steady_state(cluster, 10.0, args.tolerance)
            for watch in (meter, *inverters.values()):
                watch.stopped.set()
        bare_dir = Path(tmp) / "bare"
        bare_dir.mkdir()
        bare = bare_raft(args.runs, bare_dir)
    voters = len(files.nodes) if args.voters is None else args.voters
    print(f"{len(files.nodes)}-unit cluster ({voters} Raft voters), Raft timeouts {cfg.raft_min_timeout_s}-{cfg.raft_max_timeout_s} s, lease "
          f"{cfg.lease_s} s, scan {scan_s:g} s, {args.runs} leader SIGKILLs")
    print(summary("kill -> first setpoint applied, new term", [f.applied_s for f in failovers]))
    print(summary("kill -> first setpoint sent by the new leader", [f.sent_s for f in failovers]))
    for n, f in enumerate(failovers, 1):
        print(f"  failover {n}: lost {f.lost_w:5.0f} W, peak |error| {f.peak_w:5.0f} W, outside {f.outside_s:4.2f} s, "
              f"back after {f.back_s:4.2f} s, {f.terms} election round(s)")
    rounds = [f.terms for f in failovers]
    print(f"election rounds (terms spent) per failover: {rounds.count(1)} x 1, {len(rounds) - rounds.count(1)} x more "
          f"(the first failover: {rounds[0]})")
    print(f"site meter through each failover ({WINDOW_S:.0f} s from the kill; lost unit "
          f"{statistics.median(f.lost_w for f in failovers):.0f} W median, its inverter reverting by itself):")
    print(f"  peak |error| median {statistics.median(f.peak_w for f in failovers):.0f} W, max "
          f"{max(f.peak_w for f in failovers):.0f} W; as a share of the lost unit's power median "
          f"{statistics.median(100 * f.peak_w / max(abs(f.lost_w), 1.0) for f in failovers):.0f} %, max "
          f"{max(100 * f.peak_w / max(abs(f.lost_w), 1.0) for f in failovers):.0f} %")
    print(f"  outside +-{args.tolerance:.0f} W median {statistics.median(f.outside_s for f in failovers):.2f} s, "
          f"max {max(f.outside_s for f in failovers):.2f} s; back within it after the new leader's first setpoint "
          f"median {statistics.median(f.back_s for f in failovers):.2f} s, max {max(f.back_s for f in failovers):.2f} s")
    print(summary("baseline: Raft engine alone, kill -> commanding", bare))
    print(f"steady state: site meter within {args.tolerance:.0f} W of its target in {100 * share:.1f} % of "
          f"{scans} leader scans (mean |error| {mean_err:.0f} W); after the failovers {100 * share2:.1f} % of "
          f"{scans2} (mean |error| {mean_err2:.0f} W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
