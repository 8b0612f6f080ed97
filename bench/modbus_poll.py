"""Poll-cycle time of the commercial site's Modbus devices against their simulators.

Starts `ems simulate-devices` for io_maps/sim_devices_commercial.toml (on free 127.0.0.1
ports) in its own process, builds the site's real `modbus` drivers and measures:
  * full cycle  - every poll group due at once (the worst case, e.g. the first poll),
    per device, next to bare pymodbus reading the same blocks (the floor);
  * steady poll - all devices polling together at their 0.1 s period for `--seconds`, as in
    `ems run` (one thread per device, one shared asyncio loop): per-poll time p50/p99/max.

    .venv/bin/python bench/modbus_poll.py [--cycles N] [--seconds S]
"""

from __future__ import annotations

import argparse
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymodbus.client import AsyncModbusTcpClient

from ems.devsim.modbus_device import free_port
from runtime.clock import RealClock
from runtime.config.io_map import load_io_map
from runtime.io import aio
from runtime.io.modbus.client import ModbusDriver
from runtime.io.modbus.transport import read
from runtime.site import build_site

SITE = ROOT / "io_maps" / "sim_devices_commercial.toml"
PORTS = (15120, 15121, 15122, 15123, 15130)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def site_on_free_ports(folder: Path) -> tuple[Path, list[int]]:
    text = SITE.read_text()
    ports = [free_port() for _ in PORTS]
    for old, new in zip(PORTS, ports):
        text = text.replace(str(old), str(new))
    path = folder / "site.toml"
    path.write_text(text.replace('data_dir = "var/sim-devices-commercial"', f'data_dir = "{folder}"'))
    return path, ports


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def full_cycles(driver: ModbusDriver, cycles: int) -> list[float]:
    times = []
    for _ in range(cycles):
        for state in driver._states:
            state.next_due = -math.inf
        started = time.perf_counter()
        driver.read_inputs(time.monotonic())
        times.append(time.perf_counter() - started)
    assert all(not s.error for s in driver._states), [s.error for s in driver._states]
    return times


def bare_cycles(driver: ModbusDriver, cycles: int) -> list[float]:
    """The same blocks, read by a bare pymodbus client on the same loop: the floor."""
    async def connect() -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient("127.0.0.1", port=driver.options.port)
        await client.connect()
        return client

    client = aio.run(connect(), 5.0)

    async def cycle() -> None:
        for block in driver.blocks:
            await read(client, block.table, block.address, block.count, driver.unit)

    times = []
    for _ in range(cycles):
        started = time.perf_counter()
        aio.run(cycle(), 5.0)
        times.append(time.perf_counter() - started)
    client.close()
    return times


def steady(drivers: list[ModbusDriver], seconds: float, period_s: float = 0.1) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {d.name: [] for d in drivers}
    stop = threading.Event()

    def poll(driver: ModbusDriver) -> None:
        deadline = time.monotonic()
        while not stop.is_set():
            started = time.perf_counter()
            driver.read_inputs(time.monotonic())
            results[driver.name].append(time.perf_counter() - started)
            deadline += period_s
            stop.wait(max(0.0, deadline - time.monotonic()))

    threads = [threading.Thread(target=poll, args=(d,)) for d in drivers]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, ports = site_on_free_ports(Path(folder))
        proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "simulate-devices", "--io-map", str(path),
                                 "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not all(listening(p) for p in ports[:4]):
                if time.monotonic() > deadline:
                    raise SystemExit("the simulators did not start")
                time.sleep(0.1)
            site = build_site(load_io_map(path), RealClock())
            drivers = [d for d in site.drivers.values() if isinstance(d, ModbusDriver)]
            for driver in drivers:
                driver.open()
            report(drivers, args.cycles, args.seconds)
            for driver in drivers:
                driver.close()
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


def report(drivers: list[ModbusDriver], cycles: int, seconds: float) -> None:
    print(f"Modbus poll cycle, commercial site ({SITE.relative_to(ROOT)}), simulators in their own process, "
          f"127.0.0.1")
    print(f"{'device':10s} {'profile':26s} {'regs':>4s} {'blocks':>6s} {'full p50':>9s} {'full p99':>9s} "
          f"{'bare p50':>9s} {'bare p99':>9s}")
    for driver in drivers:
        ours = full_cycles(driver, cycles)
        bare = bare_cycles(driver, cycles)
        registers = len({n for b in driver.blocks for n in b.registers})
        print(f"{driver.name:10s} {driver.profile.name:26s} {registers:4d} {len(driver.blocks):6d} "
              f"{statistics.median(ours) * 1e3:7.2f}ms {pct(ours, 0.99) * 1e3:7.2f}ms "
              f"{statistics.median(bare) * 1e3:7.2f}ms {pct(bare, 0.99) * 1e3:7.2f}ms")
    results = steady(drivers, seconds)
    print(f"steady polling, all {len(drivers)} devices together at 0.1 s for {seconds:.0f} s:")
    for name, times in results.items():
        print(f"  {name:10s} {len(times):4d} polls  p50 {statistics.median(times) * 1e3:6.2f} ms  "
              f"p99 {pct(times, 0.99) * 1e3:6.2f} ms  max {max(times) * 1e3:6.2f} ms")
    faults = {d.name: d.fault_count for d in drivers}
    print(f"  faults: {faults}")


if __name__ == "__main__":
    sys.exit(main())
