"""Kill a controller with SIGKILL while a SCADA client writes to it: no acknowledged write is lost.

The controller is the real `ems run` on the real clock (10 Hz scan) with its Modbus tag server;
a pymodbus client writes the retained `import_limit_w` as fast as it is answered, a new value
each time. Each round the controller is killed at a random moment once the client has had a few
answers, and then:

- the retain store holds the last acknowledged value, or the one still unanswered when the kill
  landed (a write whose answer was lost may have been applied: the client cannot tell);
- every acknowledged write is in the event log;
- after the restart, the tag server reads back that same value.

Before durable writes (issue 22) every round lost the last 3-7 acknowledged writes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient
from site_run import HOME, ROOT
from testkit.waiting import wait_until

from runtime.events import read_events

ROUNDS = 20
TAG, ADDRESS = "import_limit_w", 1104  # float32, holding registers 1104-1105, retained
FIRST_VALUE = 100_000.0  # every write a new whole number of watts: exact in float32, unique in the log
DT = ModbusTcpClient.DATATYPE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def writable_site(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(HOME.read_text().replace("port = 5020", f"port = {port}", 1))
    return path


def start(io_map: Path, data_dir: Path, notify: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    return subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--data-dir",
                             str(data_dir), "--log-level", "WARNING"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(sock: socket.socket) -> None:
    while not sock.recv(4096).startswith(b"READY=1"):
        pass


def connect(port: int) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    wait_until(client.connect, 10.0, "the tag server takes a connection")
    return client


def read_value(client: ModbusTcpClient) -> float:
    """The tag as the server reads it, once it serves a scan (READY=1 comes just before the first
    scan's snapshot is published: until then a read is exception 06)."""
    response = wait_until(lambda: (r := client.read_holding_registers(ADDRESS, count=2, device_id=1)) and
                          not r.isError() and r, 10.0, "the tag server answers a read")
    return float(client.convert_from_registers(response.registers, DT.FLOAT32))


class Writer(threading.Thread):
    """Writes a new value as soon as the last one is answered, until the connection dies."""

    def __init__(self, client: ModbusTcpClient, first: float):
        super().__init__(name="scada-writer", daemon=True)
        self.client = client
        self.next = first
        self.acked: list[float] = []  # answered without an exception
        self.refused: list[float] = []  # answered with an exception
        self.in_flight: float | None = None  # sent, no answer yet

    def run(self) -> None:
        client = self.client
        while True:
            value = self.next
            self.next += 1.0
            self.in_flight = value
            try:
                response = client.write_registers(ADDRESS, client.convert_to_registers(value, DT.FLOAT32),
                                                  device_id=1)
            except Exception:  # noqa: BLE001 - the kill: the connection is gone, the answer with it
                return
            if response.isError():
                self.refused.append(value)
            else:
                self.acked.append(value)
            self.in_flight = None


def stored(retain_db: Path) -> float:
    db = sqlite3.connect(retain_db)
    try:
        return float(json.loads(db.execute("SELECT value FROM retain WHERE name = ?", (TAG,)).fetchone()[0]))
    finally:
        db.close()


def logged_values(events_db: Path) -> set[float]:
    return {float(e.message.split(" = ")[1].split()[0]) for e in read_events(events_db, kinds=["write"])
            if e.name == TAG and "refused" not in e.message}


def test_sigkill_while_a_scada_client_writes_loses_no_acknowledged_write(tmp_path):
    rng = random.Random(20261203)
    port = free_port()
    io_map, data = writable_site(tmp_path, port), tmp_path / "data"
    data.mkdir()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30.0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        acked_total, lost, refused = run_rounds(rng, port, io_map, data, tmp_path, notify, procs)
    finally:  # a failed round leaves no controller running
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        notify.close()
    print(f"\nSIGKILL loop: {ROUNDS} rounds, {acked_total} writes acknowledged, {lost} lost, {refused} refused")
    assert lost == 0 and acked_total >= 5 * ROUNDS


def run_rounds(rng: random.Random, port: int, io_map: Path, data: Path, tmp_path: Path, notify: socket.socket,
               procs: list[subprocess.Popen[bytes]]) -> tuple[int, int, int]:
    acked_total, lost, refused = 0, 0, 0
    expected: set[float] | None = None  # what the restarted controller may read back
    value = FIRST_VALUE
    for kill in range(ROUNDS):
        proc = start(io_map, data, tmp_path / "notify.sock")
        procs.append(proc)
        wait_ready(notify)
        client = connect(port)
        if expected is not None:
            back = read_value(client)
            assert back in expected, f"round {kill}: read back {back} after the restart, expected one of {expected}"
        writer = Writer(client, value)
        writer.start()
        wait_until(lambda w=writer: len(w.acked) >= 5, 20.0, f"round {kill}: the client has answers")
        # A random delay, not a wait for anything: it picks when the kill lands (a commit, a scan, an answer).
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        writer.join(10)
        client.close()
        assert writer.acked, f"round {kill}: no write was answered"

        last = writer.acked[-1]
        after_last = {v for v in (writer.in_flight, *writer.refused) if v is not None and v > last}
        expected = {last} | after_last
        kept = stored(data / "retain.sqlite")
        if kept not in expected:
            lost += sum(1 for v in writer.acked if v > kept)
        missing = set(writer.acked) - logged_values(data / "events.sqlite")
        lost += len(missing)
        assert kept in expected, f"round {kill}: retain holds {kept}, the last acknowledged write was {last}"
        assert not missing, f"round {kill}: acknowledged writes not in the event log: {sorted(missing)[:5]}"
        acked_total += len(writer.acked)
        refused += len(writer.refused)
        value = writer.next

    proc = start(io_map, data, tmp_path / "notify.sock")  # the last round's value, read back once more
    procs.append(proc)
    wait_ready(notify)
    client = connect(port)
    try:
        assert expected is not None and read_value(client) in expected
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    return acked_total, lost, refused
