"""Benchmark: how long a SCADA client waits for a write to be answered now that it is durable.

A durable write (issue 22) is answered only once its event is committed to the event log, its
retained value to the retain store (SQLite, WAL, synchronous=FULL, on this machine's disk) and
the scan has applied it at a boundary. Measured in one run, against the default home site
(io_maps/sim_home.toml) on the real clock at its 10 Hz scan, with a pymodbus client writing the
retained `import_limit_w` one request at a time, each at a random moment of the scan period:

  - the durable write: request to answer, median and p99;
  - baselines in the same run: a read of the same registers (answered from the last scan's
    snapshot), and the write as it was answered before issue 22 (queued, answered at once:
    nothing recorded or applied yet);
  - the added latency: durable median minus the queued-write median, next to the scan period
    (waiting for the next scan boundary is half a period on average, a whole one at most).

Target: the durable write's p99 within half of [modbus_server] write_timeout_s (1 s), i.e. far
inside a SCADA client's timeout (typically 1-5 s). Exit status 1 when it is missed.

    .venv/bin/python bench/write_latency.py [--writes 150]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs
from pymodbus.client import ModbusTcpClient

from runtime.clock import RealClock
from runtime.config.io_map import load_io_map
from runtime.scan_stats import percentile
from runtime.servers.modbus_server import TagStore
from runtime.site import build_site

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = 1104  # import_limit_w: float32, holding registers 1104-1105, retained
DT = ModbusTcpClient.DATATYPE


def timed(n: int, request: Callable[[int], Any], spread_s: float) -> list[float]:
    """Each request's time to its answer. Requests go out at random moments of the scan period
    (a pause of 0..spread_s before each, not timed): a client that wrote again the instant it was
    answered would always arrive just after a scan boundary and wait a whole period."""
    rng = random.Random(22)
    times = []
    for i in range(n):
        time.sleep(rng.uniform(0.0, spread_s))
        started = time.perf_counter()
        response = request(i)
        times.append(time.perf_counter() - started)
        if response.isError():
            raise SystemExit(f"request {i} answered with exception {response.exception_code}")
    return times


def figures(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), percentile(ordered, 99)


def queued_write(store: TagStore) -> Callable[..., int | None]:
    """TagStore.write as before issue 22: queued for the next scan and answered at once."""

    def queue_only(table: Any, address: int, values: list[Any], peer: Any) -> int | None:
        items = store.map.decode_write(table, address, values)
        store.image.request_writes(items, source=f"modbus {peer}")
        return None

    return queue_only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=150, help="requests per phase")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    io_map = load_io_map(ROOT / "io_maps" / "sim_home.toml")
    io_map = attrs.evolve(io_map, modbus_server=attrs.evolve(io_map.modbus_server, port=0))
    period, timeout = io_map.site.scan_period_s, io_map.modbus_server.write_timeout_s
    with tempfile.TemporaryDirectory(prefix="write-latency-", dir=ROOT) as data:  # this machine's disk, not tmpfs
        site = build_site(io_map, RealClock())
        site.attach_services(Path(data))
        site.start()
        runner = threading.Thread(target=site.run, name="site", daemon=True)
        runner.start()
        server = site.mirrors[0]
        store: TagStore = server.store  # type: ignore[attr-defined]
        client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=5, retries=0)  # type: ignore[attr-defined]
        try:
            if not client.connect():
                raise SystemExit("cannot connect to the tag server")
            while client.read_holding_registers(ADDRESS, count=2, device_id=1).isError():
                time.sleep(0.01)  # until the first scan is published

            def write(i: int) -> Any:
                return client.write_registers(ADDRESS, client.convert_to_registers(100_000.0 + i, DT.FLOAT32),
                                              device_id=1)

            reads = timed(args.writes, lambda i: client.read_holding_registers(ADDRESS, count=2, device_id=1), period)
            durable = timed(args.writes, write, period)
            applied = site.image["import_limit_w"].value
            store.write = queued_write(store)  # type: ignore[method-assign]
            queued = timed(args.writes, lambda i: write(args.writes + i), period)
        finally:
            client.close()
            site.engine.stop()
            runner.join(10)
            site.stop()
    read_med, read_p99 = figures(reads)
    queued_med, queued_p99 = figures(queued)
    durable_med, durable_p99 = figures(durable)
    ms = 1e3
    print(f"write latency, {args.writes} requests per phase, scan period {period * ms:.0f} ms, "
          f"write_timeout_s {timeout:g} s")
    print(f"  read (baseline)           median {read_med * ms:7.2f} ms   p99 {read_p99 * ms:7.2f} ms")
    print(f"  queued write (before)     median {queued_med * ms:7.2f} ms   p99 {queued_p99 * ms:7.2f} ms")
    print(f"  durable write (now)       median {durable_med * ms:7.2f} ms   p99 {durable_p99 * ms:7.2f} ms")
    print(f"  added by durability       median {(durable_med - queued_med) * ms:7.2f} ms "
          f"({durable_med / queued_med:.0f}x the queued write, {durable_med / read_med:.0f}x a read); "
          f"half a scan period is {period / 2 * ms:.0f} ms")
    if applied != 100_000.0 + args.writes - 1:
        print(f"  FAIL: the last durable write was not applied ({applied})")
        return 1
    target = timeout / 2
    ok = durable_p99 <= target
    print(f"  target: durable p99 <= {target * ms:.0f} ms (half of write_timeout_s): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
