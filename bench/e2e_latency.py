"""End-to-end latency: a step at the grid meter to the new setpoint at the inverter, through the real drivers.

Three processes besides this one, each with its own GIL: the device simulators of
io_maps/sim_devices_commercial.toml (this file with --serve-devices: `ems simulate-devices`'s
DeviceSimulation plus timing hooks), the controller (`ems run`) and the bare loop (this file with
--bare-loop). A step sets the plant (grid frequency override, load override) and writes the new
value into the meter's registers at once: the step time is the moment it is in the registers
(stamped in the simulator process on CLOCK_MONOTONIC, which all processes share), not the plant's
next 50 ms register refresh. PV is held at 0 W, the load at 5 kW; the simulated inverter is made
fast (150 kW/s, 50 ms lag, as io_maps/sim_commercial.toml) so its response settles between steps.

The shipped site sells nothing, so nothing there answers a frequency step: both configurations
add a grid_services program selling FCR-N (10 kW, defaults otherwise: 0.2 s frequency filter) and
turn the tag server on (free port; `inverter_p_setpoint_w` given an input register) for the
breakdown. Each configuration runs a fresh controller:
  * as shipped - the EM24's poll groups as its profile has them (power in `fast`, 0.2 s; the
    frequency's `normal` group is 1 s, but a site running grid services reads its frequency
    input's group at every poll of the device, 0.1 s here);
  * 100 ms polling - `poll_periods = { normal = 0.1, fast = 0.1 }`.
Steps: 50.0 <-> 49.9 Hz (FCR-N 0 <-> +10 kW; the EM24 register has 0.1 Hz resolution) and load
5 <-> 9 kW (self-consumption +-4 kW, through its 0.3 s net-load filter and 20 kW/s ramp), one
every 0.7-1.1 s (uniform: random phases against the scan).

Measured: the first sample of the bench's own 250 Hz Modbus poller in which the inverter's
setpoint register (set_p) has moved more than a threshold (1.5 kW for frequency, 0.4 kW for load)
toward the new value, i.e. the first write that responds, not the settled value (the frequency
filter and the ramp shape the rest); none before the next step counts as inf. Baseline on the
same steps in the same run: a bare pymodbus loop (own process) that every 100 ms on absolute
deadlines reads a second simulated EM24 (same plant, its p_total bound to the load itself) and
writes FCR-N(f) + load to a second simulated PQstorI (not bound to the plant), observed by the
same poller. Breakdown (medians): meter read = step to the controller's first read of the stepped
register (simulator side); scan = that read to the tag server showing the new setpoint (poller);
output write = that to the write's arrival at the inverter (simulator side; the outputs are
staged before the scan publishes, so about 0, and below 0 by the tag server's poller lag, which
the scan figure carries); poller lag = that arrival to the poller seeing it.

Targets, on the frequency steps (exit status 1 when one is missed): at 100 ms polling, chain p99
<= 2x and p50 <= 1.5x the bare loop's; as shipped, none later than 0.35 s at the inverter.

    .venv/bin/python bench/e2e_latency.py [--steps 100] [--power-steps 50] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import attrs
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from runtime.io.modbus import codec
from runtime.io.modbus.profile import load_profile, resolve_profile_path
from runtime.scan_stats import percentile

SITE = ROOT / "io_maps" / "sim_devices_commercial.toml"
PORTS = (15120, 15121, 15122, 15123, 15130)
FREQ_ADDRESS, P_ADDRESS, SET_P_ADDRESS = 0x0033, 0x0028, 6200  # EM24 frequency, p_total; PQstorI set_p
TAG_ADDRESS = 200  # inverter_p_setpoint_w on the controller's tag server (input registers)
FCR_N_W = 10000.0
BASE_LOAD_W, LOAD_STEP_W = 5000.0, 4000.0
THRESHOLD_W = {"f": 1500.0, "load": 400.0}
POLL_S = 0.004  # 250 Hz
BARE_PERIOD_S = 0.1
LATE_S = (0.35, 0.7)
PACE_S = (0.7, 1.1)  # seconds between steps: uniform, so steps fall at random phases of the scan
GRID_SERVICES = f"""
[[programs]]
name = "grid"
kind = "grid_services"
[programs.params]
battery_capacity_wh = 81920.0
fcr_n_capacity_w = {FCR_N_W}

[[programs]]
name = "dispatch"
"""


def fcr_n_w(f_hz: float) -> float:
    """The step rule both chains follow for frequency: FCR-N, +C at 49.9 Hz, 0 at 50.0 Hz."""
    return FCR_N_W * max(-1.0, min(1.0, (50.0 - f_hz) / 0.1))


# --- the io_maps ---------------------------------------------------------------------------------
class Ports(NamedTuple):
    devices: list[int]  # meter, pv_meter, inverter, relay, CAN
    bare_meter: int
    bare_inverter: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_text(ports: Ports, data_dir: Path, server_port: int, fast_polling: bool) -> str:
    """The shipped site on free ports, selling FCR-N, its tag server on, optionally 100 ms polling."""
    text = SITE.read_text()
    for old, new in zip(PORTS, ports.devices):
        text = replace(text, str(old), str(new))
    text = replace(text, 'data_dir = "var/sim-devices-commercial"', f'data_dir = "{data_dir}"')
    text = replace(text, '[[programs]]\nname = "dispatch"\n', GRID_SERVICES)
    setpoint_io = 'io = { device = "inverter", register = "set_p", scale = 1000.0 }'
    text = replace(text, setpoint_io, f'modbus = {{ table = "input", address = {TAG_ADDRESS} }}\n{setpoint_io}')
    if fast_polling:
        text = replace(text, 'model = "carlo_gavazzi_em24"\n',
                       'model = "carlo_gavazzi_em24"\npoll_periods = { normal = 0.1, fast = 0.1 }\n')
    return text + f"\n[modbus_server]\nenabled = true\nport = {server_port}\n"


def replace(text: str, old: str, new: str) -> str:
    """`old` (at its first place) replaced: the shipped site must still have it."""
    if old not in text:
        raise SystemExit(f"{SITE.relative_to(ROOT)} no longer has {old!r}: update bench/e2e_latency.py")
    return text.replace(old, new, 1)


# --- the simulator process (--serve-devices) ------------------------------------------------------
def serve_devices(io_map_path: str, bare_meter_port: int, bare_inverter_port: int) -> int:
    """The site's simulated devices, a second meter and inverter for the bare loop, and the
    hooks that time the controller's meter reads and inverter writes; steps on stdin."""
    from ems.devsim.cluster_sim import simulation_for
    from ems.devsim.modbus_device import DeviceServer
    from ems.devsim.plant_link import PlantLink
    from ems.devsim.runner import SimulatedModbus
    from runtime.config.io_map import load_io_map
    from sim import Plant

    logging.basicConfig(level=logging.WARNING)
    sim = simulation_for(load_io_map(io_map_path), preset="commercial", seed=1)
    cfg = sim.plant.config  # type: ignore[attr-defined]  # a Plant: not a cluster's site
    sim.plant = Plant(attrs.evolve(cfg, inverter=attrs.evolve(cfg.inverter, ramp_w_per_s=150000.0,
                                                              response_tau_s=0.05)))
    plant: Any = sim.plant
    with sim.lock:
        plant.set("grid.frequency_override_hz", 50.0)
        plant.set("load.override_w", BASE_LOAD_W)
        plant.set("pv.override_w", 0.0)
    sim.start()
    meter_profile = load_profile(resolve_profile_path(model="carlo_gavazzi_em24"))
    bare_meter = DeviceServer(meter_profile, port=bare_meter_port)
    bare_inverter = DeviceServer(load_profile(resolve_profile_path(model="abb_pqstori")), port=bare_inverter_port)
    for server in (bare_meter, bare_inverter):
        sim.loop.run(server.start())
    link = PlantLink(bare_meter.device, plant, sim.lock, {"p_total": "load.power_w"})
    sim.modbus.append(SimulatedModbus("bare_meter", bare_meter, link, None))
    devices = {s.name: s.server.device for s in sim.modbus}
    log: dict[str, list[Any]] = {"reads": [], "writes": [], "bare_writes": []}
    hook_reads(devices["meter"], log["reads"])
    hook_writes(devices["inverter"], log["writes"])
    hook_writes(bare_inverter.device, log["bare_writes"])
    print(json.dumps({"ready": True}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if "dump" in command:
                print(json.dumps(log), flush=True)
                continue
            t = step_plant(sim, plant, devices["meter"], bare_meter.device, command)
            print(json.dumps({"t": t}), flush=True)
    finally:
        sim.stop()
    return 0


def hook_reads(device: Any, reads: list[tuple[float, int, int]]) -> None:
    """Time every read request that reaches the meter (MBAP header, then function code, address, count)."""
    original = device.trace_packet

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending and len(data) >= 12 and data[7] in (3, 4):
            reads.append((time.monotonic(), int.from_bytes(data[8:10], "big"), int.from_bytes(data[10:12], "big")))
        return original(sending, data)

    device.trace_packet = trace


def hook_writes(device: Any, writes: list[tuple[float, float]]) -> None:
    """Time every write of set_p as it lands in the inverter's registers (value in W)."""
    original = device.on_write

    def on_write(name: str, value: Any) -> None:
        if name == "set_p":
            writes.append((time.monotonic(), float(value) * 1000.0))
        if original is not None:
            original(name, value)

    device.on_write = on_write


def step_plant(sim: Any, plant: Any, meter: Any, bare: Any, command: dict[str, float]) -> float:
    """Set the plant and write the step into both meters' registers at once; the moment it is
    there. Written twice: a periodic refresh that read the plant just before may overwrite it."""
    kind, value = next(iter(command.items()))
    with sim.lock:
        plant.set("grid.frequency_override_hz" if kind == "f" else "load.override_w", value)
        sim._advance()
    stamps = []
    for _ in range(2):
        if kind == "f":
            bare.set("frequency", value)
            meter.set("frequency", value)
        else:
            bare.set("p_total", plant.get("load.power_w"))
            meter.set("p_total", plant.get("meter.p_w"))
        stamps.append(time.monotonic())
        time.sleep(0.003)
    return stamps[0]


# --- the bare loop process (--bare-loop) ----------------------------------------------------------
def bare_loop(meter_port: int, inverter_port: int) -> int:
    """Every 100 ms: read the frequency and power of the second meter, write FCR-N(f) + load."""
    meter = load_profile(resolve_profile_path(model="carlo_gavazzi_em24")).device
    inverter = load_profile(resolve_profile_path(model="abb_pqstori")).device
    with connected(meter_port) as m, connected(inverter_port) as inv:
        deadline = time.monotonic()
        while True:
            deadline += BARE_PERIOD_S
            time.sleep(max(0.0, deadline - time.monotonic()))
            try:
                words = m.read_holding_registers(P_ADDRESS, count=FREQ_ADDRESS - P_ADDRESS + 1, device_id=1).registers
                f_hz = words[FREQ_ADDRESS - P_ADDRESS] * 0.1
                load_w = float(codec.decode(words[0:2], "int32", meter.byte_order, meter.word_order)) * 0.1
                kw = max(-30.0, min(30.0, (fcr_n_w(f_hz) + load_w) / 1000.0))
                inv.write_registers(SET_P_ADDRESS, codec.encode(kw, "float32", inverter.byte_order,
                                                                inverter.word_order), device_id=1)
            except ModbusException as exc:  # counted as a missed period; the next one tries again
                print(f"bare loop: {exc}", file=sys.stderr)


@contextmanager
def connected(port: int) -> Iterator[ModbusTcpClient]:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    deadline = time.monotonic() + 30
    while not client.connect():
        if time.monotonic() > deadline:
            raise SystemExit(f"cannot connect to 127.0.0.1:{port}")
        time.sleep(0.1)
    try:
        yield client
    finally:
        client.close()


# --- the bench's own poller ----------------------------------------------------------------------
Series = list[tuple[float, float]]  # (time, W)


class Poller:
    """Reads the two inverters' set_p and the controller's setpoint tag at 250 Hz, in a thread.
    A sample is timed at the middle of its request."""

    def __init__(self, inverter_port: int, bare_port: int, server_port: int):
        inverter = load_profile(resolve_profile_path(model="abb_pqstori")).device
        order = (inverter.byte_order, inverter.word_order)
        self.sources: dict[str, tuple[int, Callable[[ModbusTcpClient], Any], tuple[codec.Order, codec.Order],
                                      float]] = {
            "chain": (inverter_port, lambda c: c.read_holding_registers(SET_P_ADDRESS, count=2, device_id=1),
                      order, 1000.0),
            "bare": (bare_port, lambda c: c.read_holding_registers(SET_P_ADDRESS, count=2, device_id=1),
                     order, 1000.0),
            "tag": (server_port, lambda c: c.read_input_registers(TAG_ADDRESS, count=2, device_id=1),
                    ("big", "big"), 1.0),
        }
        self.series: dict[str, Series] = {name: [] for name in self.sources}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        clients = {name: ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
                   for name, (port, *_rest) in self.sources.items()}
        for client in clients.values():
            client.connect()
        deadline = time.monotonic()
        while not self._stop.is_set():
            for name, (_port, request, (byte_order, word_order), scale) in self.sources.items():
                started = time.monotonic()
                try:
                    response = request(clients[name])
                except ModbusException:  # not up yet (the tag server starts with the controller)
                    continue
                if not response.isError():
                    value = float(codec.decode(response.registers, "float32", byte_order, word_order)) * scale
                    self.series[name].append(((started + time.monotonic()) / 2, value))
            deadline = max(deadline + POLL_S, time.monotonic())
            time.sleep(max(0.0, deadline - time.monotonic()))
        for client in clients.values():
            client.close()


# --- the run ---------------------------------------------------------------------------------------
class Step(NamedTuple):
    t: float
    kind: str  # "f" or "load"
    sign: float  # the direction the setpoint must move


class Chain(NamedTuple):
    """What one configuration measured: the steps, the poller's series, the simulator's logs."""

    name: str
    steps: list[Step]
    series: dict[str, Series]
    log: dict[str, list[Any]]


class Devices:
    """The simulator process: start, step, dump, stop."""

    def __init__(self, io_map: Path, ports: Ports, log: IO[str]):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-devices", str(io_map),
                                      str(ports.bare_meter), str(ports.bare_inverter)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.ask({})  # the "ready" line: answered before any command is read

    def ask(self, command: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the device simulators exited")
        return json.loads(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def controller(io_map: Path, data_dir: Path, log: IO[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--data-dir",
                             str(data_dir), "--log-level", "WARNING", "--status-every", "0"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_running(poller: Poller, proc: subprocess.Popen[str], log: Path, timeout_s: float = 90.0) -> None:
    """Until the controller's setpoint covers the base load (the site is in Run), then 3 s more."""
    deadline = time.monotonic() + timeout_s
    while not (poller.series["chain"] and poller.series["chain"][-1][1] > BASE_LOAD_W / 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "".join(log.read_text().splitlines(keepends=True)[-10:])
            raise SystemExit(f"the controller did not bring the inverter to the base load; its log ends:\n{tail}")
        time.sleep(0.2)
    time.sleep(3.0)


def step_plan(freq_steps: int, power_steps: int, rng: random.Random) -> list[dict[str, float]]:
    """Frequency steps down and back, load steps up and back, the two kinds spread over the run."""
    freq = [{"f": 49.9 if i % 2 == 0 else 50.0} for i in range(freq_steps)]
    load = [{"load": BASE_LOAD_W + (LOAD_STEP_W if i % 2 == 0 else 0.0)} for i in range(power_steps)]
    plan: list[dict[str, float]] = []
    while freq or load:  # keep pairs together so each kind returns to its rest state
        take = freq if freq and (not load or rng.random() < len(freq) / (len(freq) + len(load))) else load
        plan.extend(take[:2])
        del take[:2]
    return plan


def run_configuration(name: str, text: str, folder: Path, ports: Ports, server_port: int, plan: list[dict[str, float]],
                      pace_s: tuple[float, float], devices: Devices, rng: random.Random) -> Chain:
    io_map = folder / f"{name.replace(' ', '_')}.toml"
    io_map.write_text(text)
    data = folder / f"data-{name.replace(' ', '_')}"
    data.mkdir()
    devices.ask({"f": 50.0})  # the rest state, whatever the last configuration left
    devices.ask({"load": BASE_LOAD_W})
    log_path = folder / f"{io_map.stem}.log"
    with open(log_path, "w") as log:
        proc = controller(io_map, data, log)
        poller = Poller(ports.devices[2], ports.bare_inverter, server_port)
        poller.start()
        try:
            wait_running(poller, proc, log_path)
            since = time.monotonic()
            steps = []
            for command in plan:
                time.sleep(rng.uniform(*pace_s))
                t = devices.ask(command)["t"]
                kind, value = next(iter(command.items()))
                sign = (1.0 if value < 50.0 else -1.0) if kind == "f" else (1.0 if value > BASE_LOAD_W else -1.0)
                steps.append(Step(t, kind, sign))
            time.sleep(pace_s[1])
        finally:
            poller.stop()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    logs = devices.ask({"dump": True})
    logs = {key: [entry for entry in entries if entry[0] >= since] for key, entries in logs.items()}
    return Chain(name, steps, poller.series, logs)


# --- the figures -----------------------------------------------------------------------------------
def response(series: Series, times: list[float], t0: float, t1: float, sign: float, threshold: float) -> float | None:
    """When the series (`times` its sample times) first moved more than `threshold` in direction
    `sign` from its value before t0; a response after the next step t1 is none."""
    i = bisect_left(times, t0)
    if i == 0:
        return None
    v0 = series[i - 1][1]
    for t, v in series[i:]:
        if t >= t1:
            return None
        if sign * (v - v0) > threshold:
            return t
    return None


def latencies(chain: Chain, kind: str, source: str) -> list[float]:
    """Per step of `kind`: its latency in `source` (a poller series or the simulator's write log);
    math.inf for no response before the next step."""
    series = chain.series[source] if source in chain.series else [(t, v) for t, v in chain.log[source]]
    times = [t for t, _v in series]
    out = []
    for i, step in enumerate(chain.steps):
        if step.kind == kind:
            t1 = chain.steps[i + 1].t if i + 1 < len(chain.steps) else math.inf
            seen = response(series, times, step.t, t1, step.sign, THRESHOLD_W[kind])
            out.append(math.inf if seen is None else seen - step.t)
    return out


def register_reads(chain: Chain, kind: str) -> list[float]:
    """When the controller read the register a step of `kind` changes (simulator side)."""
    address = FREQ_ADDRESS if kind == "f" else P_ADDRESS
    return [t for t, start, count in chain.log["reads"] if start <= address < start + count]


def meter_reads(chain: Chain, kind: str) -> list[float]:
    """Per step of `kind`: step to the controller's first read of the stepped register."""
    reads = register_reads(chain, kind)
    out = []
    for step in chain.steps:
        if step.kind == kind:
            out.append(next((t - step.t for t in reads if t > step.t), math.inf))
    return out


def read_intervals(chain: Chain, kind: str) -> list[float]:
    """Time between the controller's successive reads of the stepped register: polls when due?"""
    return [b - a for a, b in pairwise(register_reads(chain, kind))]


def median(values: list[float]) -> float:
    finite = sorted(v for v in values if math.isfinite(v))
    return finite[len(finite) // 2] if finite else math.nan


def stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return percentile(ordered, 50), percentile(ordered, 99), ordered[-1]


def ms(x: float) -> str:
    return f"{x * 1e3:7.0f}" if math.isfinite(x) else "    inf"


def report(chain: Chain, kind: str) -> tuple[list[float], list[float]]:
    ours, bare = latencies(chain, kind, "chain"), latencies(chain, kind, "bare")
    label = {"f": "frequency 50.0 <-> 49.9 Hz", "load": "load 5 <-> 9 kW"}[kind]
    print(f"{chain.name}: {len(ours)} steps of {label} (ms)")
    print(f"  {'':24s}{'p50':>7s}{'p99':>7s}{'max':>7s}  {'>0.35 s':>7s} {'>0.7 s':>7s}")
    for title, values in (("chain (meter->inverter)", ours), ("bare pymodbus loop", bare)):
        p50, p99, top = stats(values)
        late = [sum(v > limit for v in values) for limit in LATE_S]
        missed = sum(not math.isfinite(v) for v in values)
        print(f"  {title:24s}{ms(p50)}{ms(p99)}{ms(top)}  {late[0]:7d} {late[1]:7d}"
              + (f"   ({missed} with no response before the next step: inf)" if missed else ""))
    (a50, a99, amax), (b50, b99, bmax) = stats(ours), stats(bare)
    print(f"  {'ratio chain / bare':24s}{a50 / b50:6.2f}x{a99 / b99:6.2f}x{amax / bmax:6.2f}x")
    tag, written = latencies(chain, kind, "tag"), latencies(chain, kind, "writes")
    read = meter_reads(chain, kind)
    parts = [("meter read", read), ("scan", [t - r for t, r in zip(tag, read)]),
             ("output write", [w - t for w, t in zip(written, tag)]), ("poller lag", [c - w for c, w in zip(ours, written)])]
    print("  breakdown, medians:   " + "   ".join(f"{n} {median(v) * 1e3:.0f}" for n, v in parts))
    slowest = sorted(range(len(ours)), key=lambda i: -ours[i])[:3]
    print("  slowest (ms): " + ";  ".join(f"{ms(ours[i]).strip()} = read {ms(read[i]).strip()} + scan "
                                          f"{ms(tag[i] - read[i]).strip()} + write {ms(written[i] - tag[i]).strip()}"
                                          for i in slowest))
    gaps = read_intervals(chain, kind)
    print(f"  the controller read the register every {median(gaps) * 1e3:.0f} ms (median), "
          f"at most {max(gaps, default=math.nan) * 1e3:.0f} ms apart")
    return ours, bare


def verdict(label: str, ok: bool) -> bool:
    print(f"  {'PASS' if ok else 'MISS'}: {label}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="frequency steps per configuration")
    parser.add_argument("--power-steps", type=int, default=None,
                        help="load steps per configuration (default: half of --steps)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve-devices", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bare-loop", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_devices:
        path, meter, inverter = args.serve_devices
        return serve_devices(path, int(meter), int(inverter))
    if args.bare_loop:
        return bare_loop(*args.bare_loop)
    power = args.steps // 2 if args.power_steps is None else args.power_steps
    freq, power = args.steps + args.steps % 2, power + power % 2  # pairs: each kind ends at rest
    rng = random.Random(args.seed)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the tag server is not up at once
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="e2e-latency-") as tmp:
        chains = measure(Path(tmp), freq, power, rng)
    return summary(chains, time.monotonic() - started)


def measure(folder: Path, freq_steps: int, power_steps: int, rng: random.Random) -> list[Chain]:
    ports = Ports([free_port() for _ in PORTS], free_port(), free_port())
    (folder / "devices.toml").write_text(site_text(ports, folder, free_port(), False))
    chains = []
    with open(folder / "devices.log", "w") as log:
        devices = Devices(folder / "devices.toml", ports, log)
        bare = subprocess.Popen([sys.executable, __file__, "--bare-loop", str(ports.bare_meter),
                                 str(ports.bare_inverter)], cwd=ROOT)
        try:
            for name, fast in (("as shipped", False), ("100 ms polling", True)):
                server = free_port()
                text = site_text(ports, folder, server, fast)
                chains.append(run_configuration(name, text, folder, ports, server,
                                                step_plan(freq_steps, power_steps, rng), PACE_S, devices, rng))
        finally:
            bare.terminate()
            bare.wait(10)
            devices.stop()
    return chains


def summary(chains: list[Chain], elapsed_s: float) -> int:
    print(f"end-to-end latency, {SITE.relative_to(ROOT)} + FCR-N, device simulators, controller and bare loop "
          f"in their own processes, {os.cpu_count()} CPUs, {elapsed_s:.0f} s")
    ok = True
    shipped, fast = chains
    ours, _bare = report(shipped, "f")
    late = sum(v > LATE_S[0] for v in ours)
    ok &= verdict(f"as shipped: {late} of {len(ours)} frequency steps later than 0.35 s (target 0)", late == 0)
    ours, bare = report(fast, "f")
    (a50, a99, _), (b50, b99, _) = stats(ours), stats(bare)
    ok &= verdict(f"100 ms polling: p99 {a99 / b99:.2f}x the bare loop's (target <= 2x)", a99 <= 2 * b99)
    ok &= verdict(f"100 ms polling: p50 {a50 / b50:.2f}x the bare loop's (target <= 1.5x)", a50 <= 1.5 * b50)
    for chain in chains:
        if any(step.kind == "load" for step in chain.steps):
            report(chain, "load")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
