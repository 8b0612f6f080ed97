"""Storage faults: a full disk refuses client writes, raises a tag and an error, and says so once;
a nearly full disk warns; a data directory that cannot be written stops `ems run` in one line.

The full disk is SQLite's own: `PRAGMA max_page_count` on the writer's connection, then filler
rows up to it, so the next row is a real SQLITE_FULL ("database or disk is full"), as a full
file system gives, without root or a mount. The nearly full disk is an injected `disk_usage`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import namedtuple
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from served_site import Served, serve_home
from site_run import HOME, ROOT

from runtime.sqlite_store import SqliteWriter

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve_home(tmp_path / "data") as site:
        yield site


def fill(writer: SqliteWriter, insert: str) -> None:
    """Cap the database at its present size and fill what is left of it with filler rows, in
    ever smaller transactions until not even one row fits: the next row that needs space is
    SQLITE_FULL. (SQLITE_FULL rolls back the whole transaction it happens in: what else was in
    the failing ones is refused as on a full disk.)"""

    def cap(db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")

    def rows(first: int, count: int) -> Callable[[sqlite3.Connection], None]:
        def job(db: sqlite3.Connection) -> None:
            for i in range(first, first + count):
                db.execute(insert, (f"filler{i}",))
        return job

    health, writer.health = writer.health, None  # the storage health hears of the disk once it is full
    try:
        writer.run_now(cap)
        n = 0
        for chunk in (256, 64, 16, 4, 1):
            while True:
                try:
                    writer.run_now(rows(n, chunk))
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc)
                    break
                n += chunk
    finally:
        writer.health, writer.last_error = health, None


def fill_the_disk(served: Served, first: float) -> list[float]:
    """Fill both stores, then write `first`, `first + 1`, ... until a write is refused (a row or
    two may still fit in the last pages); returns the writes acknowledged on the way."""
    fill(served.writer("sink"), "INSERT INTO events (wall_s, t_s, kind, severity, source, code, name, message) "
                                "VALUES (0, 0, 'filler', 0, 'test', 0, ?, '')")
    fill(served.writer("store"), "INSERT INTO retain (name, value, initial, updated_wall_s) VALUES (?, '0', '0', 0)")
    acked = []
    for k in range(100):
        code = served.write(first + k)
        if code is not None:
            assert code == 4
            return acked
        acked.append(first + k)
    raise AssertionError("the full stores took 100 more writes")


def test_a_write_that_cannot_be_stored_is_refused_with_04_and_never_applied(served: Served):
    assert served.write(200_000.0) is None
    acked = [200_000.0, *fill_the_disk(served, 200_001.0)]
    for k in range(20):
        assert served.write(300_000.0 + k) == 4
    served.scanner.scan(3)
    assert served.site.image["import_limit_w"].value == acked[-1]
    assert [float(e.message.split()[2]) for e in served.write_events()] == acked  # every acknowledged one, no other


def test_a_full_disk_sets_storage_write_failed_and_raises_error_412(served: Served):
    served.scanner.scan(1)
    assert served.site.image["storage_write_failed"].value is False
    fill_the_disk(served, 300_000.0)
    served.scanner.scan(3)
    image = served.site.image
    assert image["storage_write_failed"].value is True
    assert image["storage_failed_writes"].value >= 1
    assert image["error_storage_write_failed"].value is True


def test_a_full_disk_is_logged_once_in_one_line(served: Served, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        fill_the_disk(served, 400_100.0)
        for k in range(20):
            assert served.write(400_000.0 + k) == 4
        served.scanner.scan(5)
    said = [r.getMessage() for r in caplog.records if r.name == "runtime.storage" and "cannot write" in r.getMessage()]
    assert len(said) <= 2, said  # the first failure, and at most a line for the other store ("either")
    assert len([m for m in said if "client writes are refused" in m]) == 1, said
    assert "database or disk is full" in said[0] and "events.sqlite" in said[0]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_writes_are_acknowledged_again_once_the_disk_takes_them(served: Served):
    fill_the_disk(served, 500_100.0)
    for store in ("sink", "store"):
        served.writer(store).run_now(lambda db: db.execute("PRAGMA max_page_count = 1000000") and None)
    assert served.write(500_001.0) is None
    served.scanner.scan(3)
    assert served.site.image["import_limit_w"].value == 500_001.0
    assert served.site.image["storage_write_failed"].value is False


def test_a_nearly_full_disk_sets_storage_near_full_and_raises_warning_411(served: Served):
    health = served.site.storage
    health.disk_usage = lambda path: Usage(total=32_000_000_000, used=30_720_000_000, free=1_280_000_000)  # 4 %
    health.measure()
    served.scanner.scan(3)
    image = served.site.image
    assert image["storage_free_pct"].value == pytest.approx(4.0)
    assert image["storage_near_full"].value is True
    assert image["error_storage_near_full"].value is True
    health.disk_usage = lambda path: Usage(total=32_000_000_000, used=16_000_000_000, free=16_000_000_000)
    health.measure()
    served.scanner.scan(3)
    assert image["storage_near_full"].value is False and image["error_storage_near_full"].value is False


def test_the_free_space_tag_is_the_data_disks(served: Served):
    served.scanner.scan(1)
    usage = shutil.disk_usage(served.site.storage.data_dir)
    assert served.site.image["storage_free_pct"].value == pytest.approx(100.0 * usage.free / usage.total, abs=1.0)


# --- ems run with a data directory it cannot write --------------------------------------------------
def ems_run(data_dir: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "ems.cli", "run", "--io-map", str(HOME), "--virtual-time",
                           "--duration", "1", "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def read_only(directory: Path) -> tuple[str, ...]:
    """A command prefix that runs under `directory` made read-only: a read-only bind mount in a
    mount namespace of its own when root (root ignores permission bits), else chmod 555."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return ()
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("root without mount namespaces: no way to make a directory read-only")
    return ("unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(directory))


def test_a_read_only_data_directory_stops_ems_run_with_one_line_and_exit_1(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    result = ems_run(data, *read_only(data))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ems: cannot start site sim-home: data directory {data} is not writable: Read-only file system"
        if os.geteuid() == 0 else f"ems: cannot start site sim-home: data directory {data} is not writable: "
                                  "Permission denied"]


def test_a_data_directory_that_cannot_be_created_stops_ems_run_with_one_line_and_exit_1(tmp_path: Path):
    (tmp_path / "not_a_dir").write_text("a regular file where the data directory's parent should be")
    data = tmp_path / "not_a_dir" / "data"
    result = ems_run(data)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ems: cannot start site sim-home: data directory {data} cannot be created: Not a directory"]


def test_a_write_whose_event_is_stored_but_not_its_retained_value_is_refused_and_logged_so(served: Served):
    assert served.write(800_000.0) is None
    served.writer("store").run_now(lambda db: db.execute("DROP TABLE retain") and None)  # every save now fails
    assert served.write(800_001.0) == 4
    served.scanner.scan(3)
    assert served.site.image["import_limit_w"].value == 800_000.0
    served.writer("sink").run_now(lambda db: None)  # the refusal event is queued as it is refused
    messages = [e.message for e in served.write_events()]
    assert messages[-2].startswith("import_limit_w = 800001 W (by modbus")
    assert "refused, not applied: it could not be stored (OperationalError: no such table: retain)" in messages[-1]
