"""The shipped three-node cluster (io_maps/sim_cluster/) as real processes on 127.0.0.1.

`ClusterFiles` copies the plant and node io_maps with every port replaced by a free one and
the data directories moved under a temporary directory. `Cluster` runs `ems simulate-devices`
and `ems run` for each node as subprocesses, asks nodes for their status over the request
channel, kills, pauses and restarts them, and reads each node's record of the setpoints it
sent and applied (`applied_log`, JSON lines).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from testkit import waiting

from runtime.cluster import security
from runtime.cluster.transport import request
from runtime.config.io_map import load_io_map

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "io_maps" / "sim_cluster"
NODES = ("node1", "node2", "node3")


# testkit.waiting's waits, polling every 0.1 s: a condition here usually asks the nodes over TCP (a new
# connection each time), and polling faster would load the cores the nodes' real-time scans share.
wait_until = partial(waiting.wait_until, poll_s=0.1)
holds_for = partial(waiting.holds_for, poll_s=0.1)


# Sixteen Pis' work on this machine's two cores: at the shipped 10 Hz scan and polls seventeen
# processes want about 190 % of them and the leader's setpoints come late enough that units fall
# back. A 4 Hz scan and polls keep a site's behaviour (the split, the membership, the elections)
# at half the load; the inverter's revert (5 s) still waits for 20 missed scans.
FOUR_HZ = {"scan_period_s = 0.1": "scan_period_s = 0.25", "poll_period_s = 0.1": "poll_period_s = 0.25",
           "poll_period_s = 0.05": "poll_period_s = 0.25", "guard_rewrite_s = 0.09 ": "guard_rewrite_s = 0.24 "}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ClusterFiles:
    """The shipped files, for `units` units of which the first `voters` vote, on free ports,
    writing under `tmp`. Three units are the shipped site as it is; more are made the same way
    (each unit a copy of node1 with its own ports, the plant one inverter and BMS per unit).
    `plant_overrides` and `node_overrides` replace text in the plant's and in every node's io_map."""

    def __init__(self, tmp: Path, plant_overrides: dict[str, str] | None = None, units: int = 3,
                 voters: int | None = None, listed: int | None = None, node_overrides: dict[str, str] | None = None):
        self.tmp = tmp
        self.node_overrides = node_overrides or {}
        self.nodes = tuple(f"node{k}" for k in range(1, units + 1))
        voting = set(self.nodes[: units if voters is None else voters])
        free = iter(free_ports(1 + 5 * units))
        self.meter_port = next(free)
        self.inverter_port = {node: next(free) for node in self.nodes}
        self.bms_port = {node: next(free) for node in self.nodes}
        ports = {node: (next(free), next(free), next(free)) for node in self.nodes}  # raft, pub, rep
        self.rep = {node: ports[node][2] for node in self.nodes}
        entries = {node: f"[[cluster.nodes]]\nid = \"{node}\"\nraft_port = {raft}\npub_port = {pub}\n"
                         f"rep_port = {rep}\n{'' if node in voting else 'voter = false'}\n"
                   for node, (raft, pub, rep) in ports.items()}
        members = "".join(entries.values())
        # the first `listed` units know only each other: the later ones join with `ems cluster add`
        known = "".join(list(entries.values())[:listed]) if listed else members
        self.paths: dict[str, Path] = {"plant": self._write("plant", self._plant(members, plant_overrides or {}))}
        for k, node in enumerate(self.nodes):
            self.paths[node] = self._write(node, self._node(node, known if listed and k < listed else members))
        everyone = load_io_map(self.paths[self.nodes[-1]]).cluster
        security.generate(everyone, tmp)  # the secret and every node's and the tool's keys, under tmp/keys
        self.cli = security.load(everyone, tmp, client="cli")

    def _write(self, name: str, text: str) -> Path:
        path = self.tmp / f"{name}.toml"
        path.write_text(text.replace('data_dir = "var/sim-cluster/', f'data_dir = "{self.tmp}/'))
        return path

    def _node(self, node: str, members: str) -> str:
        text = (SHIPPED / "node1.toml").read_text()
        head, rest = text.split("[[cluster.nodes]]", 1)
        text = head + members + "\n[[devices]]" + rest.split("[[devices]]", 1)[1]
        for old, new in (('node_id = "node1"', f'node_id = "{node}"'),
                         ("three-unit cluster, node 1", f"{len(self.nodes)}-unit cluster, {node}"), ("var/sim-cluster/node1", f"var/sim-cluster/{node}"),
                         ("port = 15120", f"port = {self.meter_port}"),
                         ("port = 15121", f"port = {self.inverter_port[node]}"),
                         ("ws://127.0.0.1:15131/", f"ws://127.0.0.1:{self.bms_port[node]}/")):
            assert old in text, old
            text = text.replace(old, new)
        for old, new in self.node_overrides.items():
            assert old in text, old
            text = text.replace(old, new)
        return text

    def _plant(self, members: str, overrides: dict[str, str]) -> str:
        text = (SHIPPED / "plant.toml").read_text()
        head, rest = text.split("[[cluster.nodes]]", 1)
        blocks = ["[[devices]]" + b for b in rest.split("[[devices]]")[1:]]
        meter = next(b for b in blocks if 'name = "meter"' in b).replace("port = 15120", f"port = {self.meter_port}")
        inverter = next(b for b in blocks if 'name = "inverter1"' in b)
        bms = next(b for b in blocks if 'name = "bms1"' in b)
        units = []
        for k, node in enumerate(self.nodes):
            soc = 70.0 - 40.0 * k / max(1, len(self.nodes) - 1)  # 70 % down to 30 %, as the shipped three
            member = members.split("[[cluster.nodes]]")[k + 1].rstrip("\n")
            units.append(f"[[cluster.nodes]]{member}\ndevices = [\"inverter{k + 1}\", \"bms{k + 1}\"]\n"
                         f"plant = {{ battery = {{ cell_capacity_ah = 20.0, initial_soc_pct = {soc:.1f} }} }}\n")
        devices = [inverter.replace("inverter1", f"inverter{k + 1}").replace("port = 15121", f"port = {self.inverter_port[n]}")
                   for k, n in enumerate(self.nodes)]
        devices += [bms.replace("bms1", f"bms{k + 1}").replace("15131", str(self.bms_port[n])) for k, n in enumerate(self.nodes)]
        text = head + "\n".join(units) + "\n" + meter.rstrip("\n") + "\n\n" + "".join(d.rstrip("\n") + "\n\n" for d in devices)
        for old, new in overrides.items():
            assert old in text, old
            text = text.replace(old, new)
        return text

    def record_file(self, node: str) -> Path:
        return self.tmp / node / "cluster_setpoints.jsonl"


class Cluster:
    """The plant and the three nodes as processes. Use as a context manager."""

    def __init__(self, files: ClusterFiles):
        self.files = files
        self.plant: subprocess.Popen | None = None
        self.nodes: dict[str, subprocess.Popen] = {}
        self.paused: set[str] = set()

    # --- processes ---------------------------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        out = (self.files.tmp / log_name).open("ab")
        return subprocess.Popen([sys.executable, "-m", "ems.cli", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def start_plant(self) -> None:
        self.plant = self._spawn(["simulate-devices", "--io-map", str(self.files.paths["plant"]),
                                  "--log-level", "WARNING"], "plant.log")
        files = self.files
        wait_until(lambda: _listening(files.meter_port) and all(_listening(p) for p in files.bms_port.values()),
                   30.0, "the plant serves its devices")

    def start_node(self, node: str) -> None:
        self.nodes[node] = self._spawn(["run", "--io-map", str(self.files.paths[node])], f"{node}.log")

    def start(self) -> None:
        self.start_plant()
        for node in self.files.nodes:
            self.start_node(node)

    def kill(self, node: str, sig: signal.Signals = signal.SIGKILL) -> float:
        """Send `sig` to a node; returns the wall time it was sent, or for SIGSTOP the wall time
        every thread of the node was seen stopped (a signal lands a moment after it is sent,
        and what the node did in that moment it did before the pause)."""
        proc = self.nodes[node]
        t = time.time()
        proc.send_signal(sig)
        if sig is signal.SIGKILL:
            proc.wait(10)
        elif sig is signal.SIGSTOP:
            waiting.wait_until(lambda: _stopped(proc.pid), 5.0, f"{node} stopped by SIGSTOP", 0.001)
            t = time.time()
            self.paused.add(node)
        elif sig is signal.SIGCONT:
            self.paused.discard(node)
        return t

    def alive(self, node: str) -> bool:
        proc = self.nodes.get(node)
        return proc is not None and proc.poll() is None

    def stop(self) -> None:
        for node in list(self.paused):
            self.kill(node, signal.SIGCONT)
        procs = [p for p in self.nodes.values() if p.poll() is None]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.plant is not None and self.plant.poll() is None:
            self.plant.terminate()
            try:
                self.plant.wait(10)
            except subprocess.TimeoutExpired:
                self.plant.kill()

    def __enter__(self) -> Cluster:  # noqa: PYI034 - exactly this class
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the nodes say ------------------------------------------------------------------
    def ask(self, node: str, body: dict[str, Any], timeout_s: float = 1.0) -> dict[str, Any]:
        """A request to a node's REP socket, signed with the `ems cluster` tool's key."""
        cli = self.files.cli
        return request(f"tcp://127.0.0.1:{self.files.rep[node]}", body, timeout_s, cli, cli.member_keys[node])

    def status(self, node: str, timeout_s: float = 0.5) -> dict[str, Any] | None:
        try:
            return self.ask(node, {"cmd": "status"}, timeout_s)
        except (TimeoutError, ValueError):
            return None

    def statuses(self) -> dict[str, dict[str, Any]]:
        out = {}
        for node in self.files.nodes:
            if self.alive(node) and node not in self.paused:
                status = self.status(node)
                if status is not None:
                    out[node] = status
        return out

    def leader(self) -> str | None:
        """The leader every running node agrees on, commanding, or None."""
        statuses = self.statuses()
        leaders = {s.get("leader") for s in statuses.values()}
        if len(statuses) < 2 or len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader is None or not statuses.get(leader, {}).get("commanding"):
            return None
        return leader

    def wait_for_leader(self, timeout_s: float = 20.0) -> str:
        return wait_until(self.leader, timeout_s, "one commanding leader that every running node names")

    def records(self, node: str, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.files.record_file(node)
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line being written
            if kind is None or record["kind"] == kind:
                out.append(record)
        return out

    def log(self, node: str) -> str:
        return (self.files.tmp / f"{node}.log").read_text(errors="replace")


def _stopped(pid: int) -> bool:
    """Every thread of process `pid` is in the stopped state (T in /proc/<pid>/task/*/stat)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
    return bool(states) and all(state in ("T", "t") for state in states)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def three_and_a_fourth(tmp: Path, fourth_votes: bool) -> Iterator[Cluster]:
    """Three voters that list only each other, running with a leader; a fourth unit whose io_map
    lists all four (voting or not) is left for `ems cluster add` to bring in."""
    files = ClusterFiles(tmp, units=4, voters=4 if fourth_votes else 3, listed=3)
    with Cluster(files) as running:
        running.start_plant()
        for node in files.nodes[:3]:
            running.start_node(node)
        running.wait_for_leader(40.0)
        yield running


def ems_cluster(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `ems cluster` tool, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "ems.cli", "cluster", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
