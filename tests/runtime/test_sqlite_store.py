"""The SQLite writer thread: jobs with a waiter commit at once, and what arrives during a commit
goes into the next one (group commit); a failed transaction tells every waiter in it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from testkit.waiting import wait_until

from runtime.sqlite_store import SqliteWriter

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"


def insert(x: int):  # type: ignore[no-untyped-def]
    return lambda db: db.execute("INSERT INTO t VALUES (?)", (x,)) and None


def test_fifty_writes_that_arrive_during_a_commit_go_into_one_transaction(tmp_path: Path):
    writer = SqliteWriter(tmp_path / "t.sqlite", SCHEMA, "test-writer", batch_wait_s=5.0)
    gate, inside = threading.Event(), threading.Event()
    done: list[BaseException | None] = []

    def held(db: sqlite3.Connection) -> None:  # keeps the writer in its transaction
        inside.set()
        gate.wait(5)

    writer.submit(held, done.append)
    wait_until(inside.is_set, 5.0, "the writer is in its transaction")
    for x in range(50):
        writer.submit(insert(x), done.append)
    gate.set()
    wait_until(lambda: len(done) == 51, 5.0, "every waiter is told")
    assert done == [None] * 51
    assert writer.commits == 2
    writer.close()


def test_a_job_with_a_waiter_does_not_wait_for_the_batch(tmp_path: Path):
    writer = SqliteWriter(tmp_path / "t.sqlite", SCHEMA, "test-writer", batch_wait_s=30.0)
    done = threading.Event()
    writer.submit(insert(1), lambda error: done.set())
    assert done.wait(5.0)  # not 30 s
    writer.close()


def test_a_failed_transaction_tells_each_of_its_waiters_the_error(tmp_path: Path):
    writer = SqliteWriter(tmp_path / "t.sqlite", SCHEMA, "test-writer")
    gate, inside = threading.Event(), threading.Event()
    errors: list[BaseException | None] = []

    def held(db: sqlite3.Connection) -> None:
        inside.set()
        gate.wait(5)

    writer.submit(held)
    wait_until(inside.is_set, 5.0, "the writer is in its transaction")
    writer.submit(insert(1), errors.append)
    writer.submit(lambda db: db.execute("INSERT INTO nowhere VALUES (1)") and None, errors.append)
    gate.set()
    wait_until(lambda: len(errors) == 2, 5.0, "both waiters are told")
    assert all(isinstance(e, sqlite3.OperationalError) for e in errors)
    assert writer.last_error is not None and "no such table: nowhere" in writer.last_error
    writer.close()
