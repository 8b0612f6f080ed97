"""The tag server under attack, beside a running site: real clock, 10 Hz scan, drivers polling.

Three attacks, each from another process (so that its sockets count against its own limits,
as an attacker's would): a client that opens connections and never sends, a slowloris that
sends one byte at a time and never completes a frame, and a flood of bad frames. During each,
the scan keeps its period (its wake-up jitter is measured from every scan's snapshot), the
drivers stay healthy, the meter driver opens a new TCP connection for every poll (as a Modbus
TCP driver reconnecting would) and each succeeds, and the log stays small.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from modbus_kit import SERVER, ServedSite, meter_reading
from pymodbus.client import ModbusTcpClient
from testkit.waiting import wait_until

from runtime.clock import RealClock
from runtime.image import Snapshot
from runtime.scan_stats import percentile

ATTACKER = r"""
import socket, sys, time
mode, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + seconds
held = []
if mode.startswith("hold"):  # hold:N: start `count` connections at once from N addresses 127.0.0.2.., keep them
    sources = int(mode.split(":")[1])
    for n in range(count):
        s = socket.socket()
        s.bind((f"127.0.0.{2 + n % sources}", 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        held.append(s)
    print("opened", len(held), flush=True)
    while time.monotonic() < end:
        time.sleep(0.05)
elif mode.startswith("slowloris"):  # slowloris:N: from N addresses, a header announcing 254 bytes, a byte every 0.1 s
    sources = int(mode.split(":")[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(f"127.0.0.{2 + n % sources}", 0))
            for n in range(count)]
    header = bytes([0, 1, 0, 0, 0, 254, 1])
    for s in held:
        s.sendall(header)
    print("opened", len(held), flush=True)
    closed = 0
    while time.monotonic() < end and closed < len(held):
        closed = 0
        for s in held:
            try:
                s.sendall(b"\x03")
            except OSError:
                closed += 1
        time.sleep(0.1)
    print("closed", closed, flush=True)
elif mode == "garbage":  # garbage at 20 MB/s for `seconds`, on `count` connections at a time, reconnecting
    chunk = bytes(range(256)) * 16
    sent = 0
    started = time.monotonic()
    print("opened", count, flush=True)
    while time.monotonic() < end:
        time.sleep(max(0.0, started + sent / 20e6 - time.monotonic()))  # 12 x the 5 MB in 3 s seen in the field
        conns = []
        try:
            conns = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(count)]
            for _ in range(64):
                for s in conns:
                    s.sendall(chunk)
                    sent += len(chunk)
        except OSError:
            pass
        for s in conns:
            s.close()
    print("sent", sent, flush=True)
elif mode == "badreq":  # `count` well-framed requests to read 0 registers, pipelined; count the answers
    request = bytes([0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 0])
    answers = b""
    print("opened", 1, flush=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for start in range(0, count, 100):
            s.sendall(request * min(100, count - start))
            while len(answers) < 9 * min(start + 100, count) and time.monotonic() < end:
                chunk = s.recv(65536)
                if not chunk:  # closed by the server
                    break
                answers += chunk
    exceptions = sum(1 for i in range(0, len(answers), 9) if answers[i + 7:i + 9] == bytes([0x83, 0x03]))
    print("answered", exceptions, flush=True)
"""


@attrs.define
class Watch:
    """Every scan's wake-up lateness, and the site's health, recorded while an attack runs."""

    jitters_s: list[float] = attrs.Factory(list)
    unhealthy: list[str] = attrs.Factory(list)
    connections: list[int] = attrs.Factory(list)  # the tag server's clients, at every scan
    fds: list[int] = attrs.Factory(list)  # the process's open file descriptors, at every scan
    recording: bool = False

    def p90_ms(self) -> float:
        return percentile(sorted(self.jitters_s), 90) * 1e3

    def p99_ms(self) -> float:  # with fewer than 100 scans, the largest
        return percentile(sorted(self.jitters_s), 99) * 1e3

    def max_ms(self) -> float:
        return max(self.jitters_s) * 1e3


@pytest.fixture
def live_site(request: pytest.FixtureRequest) -> Iterator[tuple[ServedSite, Watch]]:
    """The kit's site on the real clock, its meter opening a TCP connection for every poll."""
    meter_port, stop_listener = _meter_listener()
    site = ServedSite(attrs.evolve(SERVER, idle_timeout_s=getattr(request, "param", 1.0)), clock=RealClock())
    assert site.problems == []
    watch = Watch()

    def meter(now: float) -> list[Any]:
        with socket.create_connection(("127.0.0.1", meter_port), timeout=1) as s:  # EMFILE when starved
            assert s.recv(4) == b"EM24"
        return meter_reading(now)

    site.meter_source = meter

    def on_snapshot(snapshot: Snapshot) -> None:
        if not watch.recording:
            return
        watch.jitters_s.append(snapshot.value("scan_jitter_last_s"))
        watch.connections.append(site.server.thread.connections)
        watch.fds.append(open_fds())
        for driver in (site.meter, site.bms):
            if not driver.healthy:
                watch.unhealthy.append(f"{driver.name} at scan {snapshot.scan}")

    site.image.subscribe(on_snapshot)
    gc.collect()
    gc.freeze()  # as `ems run` does once its site is built: the test process's heap out of the collector's way
    site.start()
    site.run_in_thread()
    wait_until(lambda: site.meter.healthy and site.bms.healthy and site.image.snapshot is not None)
    try:
        yield site, watch
    finally:
        site.stop()
        stop_listener()
        gc.unfreeze()


def _meter_listener() -> tuple[int, Callable[[], None]]:
    """A stand-in for a meter on the network: greets every connection and closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"EM24")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(2)
        server.close()

    return server.getsockname()[1], close


ATTACKERS: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_attacker_left() -> Iterator[None]:
    yield
    while ATTACKERS:
        process = ATTACKERS.pop()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def attack(mode: str, port: int, count: int, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", ATTACKER, mode, str(port), str(count), str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    ATTACKERS.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("opened")
    return process


def finish(process: subprocess.Popen[str]) -> str:
    out, _ = process.communicate(timeout=30)
    return out


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def scans(site: ServedSite, n: int) -> None:
    """Wait for `n` more scans (the recording runs meanwhile)."""
    first = site.image.snapshot.scan  # type: ignore[union-attr]
    wait_until(lambda: site.image.snapshot.scan >= first + n, timeout_s=n * 0.1 + 10)  # type: ignore[union-attr]


def read_soc(port: int) -> float:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert client.connect()
        response = client.read_input_registers(0, count=2, device_id=1)
        assert not response.isError(), response
        return float(client.convert_from_registers(response.registers, client.DATATYPE.FLOAT32))
    finally:
        client.close()


def read_or_none(port: int) -> float | None:
    try:
        return read_soc(port)
    except AssertionError:
        return None


def report(name: str, watch: Watch, **figures: Any) -> None:
    extra = ", ".join(f"{k} {v}" for k, v in figures.items())
    print(f"\n{name}: {len(watch.jitters_s)} scans, jitter p90 {watch.p90_ms():.2f} ms, p99 {watch.p99_ms():.2f} ms, "
          f"max {watch.max_ms():.2f} ms; {extra}")


def check_site(watch: Watch) -> None:
    assert watch.unhealthy == []
    assert len(watch.jitters_s) >= 20
    # On a shared two-core machine that also runs the attacker: nine scans in ten within a tenth of
    # the 100 ms period, and none a whole period late (no deadline missed)
    assert watch.p90_ms() < 10.0
    assert watch.max_ms() < 100.0


# --- a client that holds connections --------------------------------------------------------------
@pytest.mark.parametrize("live_site", [3.0], indirect=True)  # idle_timeout_s
def test_a_thousand_idle_connections_from_one_address_get_4_and_scada_still_reads(live_site):  # type: ignore[no-untyped-def]
    site, watch = live_site
    port = site.server.port
    watch.recording = True
    attacker = attack("hold:1", port, 1000, seconds=12.0)  # all from 127.0.0.2
    wait_until(lambda: site.server.thread.refused >= 16, timeout_s=10)  # a backlog's burst, at least
    assert site.server.thread.connections == 4  # [modbus_server] max_connections_per_client
    # SCADA on 127.0.0.1 gets in during the attack (its connect may wait for room in the listen
    # backlog, which the attacker's pending connects keep filling: the kernel retries after 1 s, 3 s)
    assert wait_until(lambda: read_or_none(port), timeout_s=10) == 55.5
    assert attacker.poll() is None  # still attacking
    finish(attacker)
    scans(site, 5)
    watch.recording = False
    report("hold 1000 from one address", watch, peak_connections=max(watch.connections),
           refused=site.server.thread.refused)
    assert max(watch.connections) <= 4 + 1  # and SCADA's, if a scan saw it
    check_site(watch)


@pytest.mark.parametrize("live_site", [3.0], indirect=True)  # idle_timeout_s
def test_a_thousand_idle_connections_get_16_and_lose_them_after_the_idle_timeout(live_site):  # type: ignore[no-untyped-def]
    site, watch = live_site
    port = site.server.port
    before = open_fds()
    watch.recording = True
    attacker = attack("hold:10", port, 1000, seconds=8.0)  # from 10 addresses; those not accepted wait in the backlog
    wait_until(lambda: site.server.thread.refused >= 16, timeout_s=10)  # a backlog's burst, at least
    assert site.server.thread.connections == 16  # [modbus_server] max_connections: the rest are closed at once
    finish(attacker)
    wait_until(lambda: site.server.thread.connections == 0, timeout_s=5)
    assert read_soc(port) == 55.5  # a SCADA client gets in
    scans(site, 5)
    watch.recording = False
    report("hold 1000", watch, peak_connections=max(watch.connections), extra_fds=max(watch.fds) - before,
           refused=site.server.thread.refused, idle_closed=site.server.thread.idle_closed)
    assert max(watch.connections) == 16
    # its 16, a burst accepted (LISTEN_BACKLOG) and being closed, the meter's: a quarter of the 256 reserved
    assert max(watch.fds) - before <= 64
    assert site.server.thread.idle_closed >= 16  # after 3 s without a request
    check_site(watch)


def test_connections_are_capped_well_below_the_descriptor_limit(make_site, monkeypatch):  # type: ignore[no-untyped-def]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # a systemd service's default
    try:
        site = make_site(max_connections=256)
        assert site.server.thread.max_connections == 256  # (1024 - 256 reserved) / 2 servers = 384
        resource.setrlimit(resource.RLIMIT_NOFILE, (600, hard))
        lowered = make_site(max_connections=256)
        assert lowered.server.thread.max_connections == (600 - 256) // 2  # 172: the drivers keep their 256
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_service_states_a_descriptor_limit_that_leaves_the_drivers_their_reserve():
    from pathlib import Path

    from runtime.config.schema import MeterGatewayConfig, ModbusServerConfig
    from runtime.servers.host import RESERVED_FDS, SERVERS_SHARING_FDS

    unit = (Path(__file__).resolve().parents[2] / "deploy" / "ems.service").read_text()
    limit = int(next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("LimitNOFILE=")))
    assert limit == 1024
    for section in (ModbusServerConfig, MeterGatewayConfig):
        section(max_connections=256)
        with pytest.raises(ValueError):
            section(max_connections=257)
    assert SERVERS_SHARING_FDS * 256 + RESERVED_FDS <= limit  # 2 x 256 + 256 = 768: never lowered


# --- slowloris -----------------------------------------------------------------------------------------
def test_a_slowloris_is_closed_after_the_idle_timeout_though_it_keeps_sending(live_site):  # type: ignore[no-untyped-def]
    site, watch = live_site
    port = site.server.port
    watch.recording = True
    attacker = attack("slowloris:4", port, 16, seconds=10.0)  # 4 connections from each of 4 addresses
    wait_until(lambda: site.server.thread.connections == 16)
    wait_until(lambda: site.server.thread.connections == 0, timeout_s=5,
               what="16 connections sending a byte every 0.1 s closed after idle_timeout_s = 1 s")
    out = finish(attacker)
    assert "closed 16" in out
    assert read_soc(port) == 55.5
    scans(site, 10)
    watch.recording = False
    report("slowloris 16", watch, idle_closed=site.server.thread.idle_closed)
    check_site(watch)


def test_a_client_that_polls_stays_connected_past_the_idle_timeout(live_site):  # type: ignore[no-untyped-def]
    site, _ = live_site
    client = ModbusTcpClient("127.0.0.1", port=site.server.port, timeout=2, retries=0)
    assert client.connect()
    try:
        for _ in range(8):  # 2 s of polls every 0.25 s: twice the idle timeout
            scans(site, 2)
            assert not client.read_input_registers(0, count=2, device_id=1).isError()
        assert site.server.thread.idle_closed == 0
    finally:
        client.close()


# --- a flood of bad frames ---------------------------------------------------------------------------
def test_three_seconds_of_garbage_log_a_few_lines(live_site, caplog):  # type: ignore[no-untyped-def]
    site, watch = live_site
    port = site.server.port
    watch.recording = True
    caplog.set_level(logging.WARNING, logger="pymodbus")  # as runtime/logs.py sets it
    with caplog.at_level(logging.INFO):
        attacker = attack("garbage", port, 4, seconds=3.0)
        out = finish(attacker)
        scans(site, 10)
    watch.recording = False
    sent = int(out.split()[-1])
    logged = [r for r in caplog.records if r.name.startswith(("runtime.servers", "pymodbus", "asyncio"))]
    size = sum(len(r.getMessage()) for r in logged)
    report("garbage", watch, sent_bytes=sent, log_records=len(logged), log_chars=size)
    assert sent >= 5_000_000
    assert len(logged) <= 3, [r.getMessage() for r in logged]  # the first bad frame; the rest held back
    assert size < 1000
    assert not any(r.exc_info for r in logged)
    assert read_soc(port) == 55.5
    check_site(watch)


def test_fifty_thousand_bad_requests_are_each_answered_03_and_logged_once(live_site, caplog):  # type: ignore[no-untyped-def]
    site, watch = live_site
    watch.recording = True
    with caplog.at_level(logging.INFO):
        attacker = attack("badreq", site.server.port, 50_000, seconds=30.0)
        out = finish(attacker)
        scans(site, 20)  # 50,000 answers can take under a second: the scans around them count too
    watch.recording = False
    logged = [r.getMessage() for r in caplog.records if r.name.startswith(("runtime.servers", "pymodbus"))]
    report("bad requests", watch, answered=out.split()[-1], log_records=len(logged))
    assert out.split()[-1] == "50000"  # every one answered exception 03
    assert len(logged) == 1 and "quantity 0 is outside 1..125" in logged[0]
    check_site(watch)
