"""A client's write is answered only once it is recorded and applied (issue 22, docs/modbus.md).

On the default home site with its tag server, event log and retain store (served_site.py): what
an acknowledged write leaves in the SQLite files before its answer, what a read right after the
answer returns, how writes of several clients share commits, and what a client gets when no scan
comes within write_timeout_s.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from served_site import Served, serve_home
from testkit.waiting import wait_until

CLIENTS = 3  # with the fixture's own client, the 4 connections a client address may hold


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve_home(tmp_path / "data") as site:
        yield site


def stored_value(data_dir: Path) -> float:
    """The retained import_limit_w as committed, read from the file by a connection of its own."""
    db = sqlite3.connect(f"file:{data_dir / 'retain.sqlite'}?mode=ro", uri=True)
    try:
        return float(json.loads(db.execute("SELECT value FROM retain WHERE name = 'import_limit_w'").fetchone()[0]))
    finally:
        db.close()


def test_an_acknowledged_write_is_committed_to_the_event_log_before_its_answer(served: Served):
    assert served.write(123_456.0) is None
    assert [e.message for e in served.write_events()][-1].startswith("import_limit_w = 123456 W (by modbus 127.0.0.1:")


def test_an_acknowledged_write_is_committed_to_the_retain_store_before_its_answer(served: Served):
    assert served.write(234_567.0) is None
    assert stored_value(served.site.storage.data_dir) == 234_567.0


def test_an_acknowledged_write_is_applied_before_its_answer(served: Served):
    assert served.write(345_678.0) is None
    assert served.site.image["import_limit_w"].value == 345_678.0


def test_a_read_right_after_the_answer_returns_the_written_value(served: Served):
    for value in (456_001.0, 456_002.0, 456_003.0):
        assert served.write(value) is None
        assert served.read() == value


def test_writes_of_several_clients_at_once_are_all_recorded_and_applied(served: Served):
    clients = [served.connect() for _ in range(CLIENTS)]
    go = threading.Barrier(CLIENTS)
    answers: list[int | None] = []

    def write(i: int) -> None:
        go.wait()
        answers.append(served.write(500_000.0 + i, clients[i]))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for client in clients:
        client.close()
    assert answers == [None] * CLIENTS
    logged = {float(e.message.split()[2]) for e in served.write_events()}
    assert logged >= {500_000.0 + i for i in range(CLIENTS)}
    assert served.site.image["import_limit_w"].value in logged


def test_a_write_no_scan_applies_is_answered_06_after_write_timeout_s(tmp_path: Path):
    with serve_home(tmp_path / "data", write_timeout_s=0.3) as served:
        served.scanner.stop()  # no scan from now on
        started = time.monotonic()
        assert served.write(600_000.0) == 6
        assert 0.3 <= time.monotonic() - started < 1.5


def test_other_connections_are_read_while_a_write_waits(tmp_path: Path):
    with serve_home(tmp_path / "data", write_timeout_s=2.0) as served:
        served.scanner.stop()
        waiting = threading.Thread(target=served.write, args=(700_000.0,))
        waiting.start()
        wait_until(served.site.image.writes_waiting, 5.0, "the write is recorded and waits for a scan")
        other = served.connect()
        try:
            started = time.monotonic()
            served.read(other)
            assert time.monotonic() - started < 0.5
        finally:
            other.close()
            waiting.join(5)
