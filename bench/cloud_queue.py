"""Benchmark: the cloud link's store-and-forward queue (runtime/cloud/queue.py) on this machine's disk.

The queue's own side of the link: how fast messages go in durably (each put committed, WAL,
synchronous=FULL) and how fast a backlog comes out again on reconnect (peek oldest first, then
ack: each ack committed). 2,048-byte spot messages, in one run:

  - put, one message per transaction (the link's steady state: one spot message every 10 s),
    next to the floor of a durable write: the same bytes appended to a file and fsync'd;
  - put_many, `--batch` messages per transaction, next to the same inserts into SQLite in
    memory with synchronous=OFF (SQLite's own cost, nothing durable);
  - drain, peek and ack one message at a time (an ack committed per hub acknowledgement), next
    to the append+fsync, and `--batch` at a time, next to the same selects and deletes in memory.

Target: draining one ack at a time >= 500 msg/s, the link's drain target to the local broker
(issue: "drain rate on reconnect >= 500 msg/s"), so the queue alone never holds the link
below it. Exit status 1 when it is missed.

    .venv/bin/python bench/cloud_queue.py [--singles 1000] [--messages 20000] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.cloud.queue import SCHEMA, MessageQueue

BODY = b"x" * 2048
SPOT = "SC_Spot_10s"
TARGET_MSG_S = 500.0


def rate(n: int, run: Callable[[], object]) -> float:
    """Messages a second of `run`, which handles n messages."""
    started = time.perf_counter()
    run()
    return n / (time.perf_counter() - started)


def file_appends(path: Path, n: int) -> None:
    """The floor of a durable message: its bytes appended to a file and fsync'd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(n):
            os.write(fd, BODY)
            os.fsync(fd)
    finally:
        os.close(fd)


def memory_db() -> sqlite3.Connection:
    """The queue's tables in memory, synchronous=OFF: SQLite's work without the disk."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)
    return db


def memory_inserts(db: sqlite3.Connection, n: int, batch: int) -> None:
    for _ in range(0, n, batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO messages (kind, body, queued_at, evictable) VALUES (?, ?, ?, 1)",
                       [(SPOT, BODY, 0.0)] * batch)
        db.execute("COMMIT")


def memory_drain(db: sqlite3.Connection, batch: int) -> None:
    while rows := db.execute("SELECT seq, kind, body, queued_at, evictable FROM messages ORDER BY seq LIMIT ?",
                             (batch,)).fetchall():
        db.execute("BEGIN")
        db.executemany("DELETE FROM messages WHERE seq = ?", [(row[0],) for row in rows])
        db.execute("COMMIT")


def drain(q: MessageQueue, batch: int, n: int) -> None:
    """Peek and ack `batch` at a time until n messages are acknowledged."""
    done = 0
    while done < n:
        messages = q.peek(min(batch, n - done))
        done += q.ack([m.seq for m in messages])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=1000, help="messages put and drained one at a time")
    parser.add_argument("--messages", type=int, default=20_000, help="messages put and drained in batches")
    parser.add_argument("--batch", type=int, default=100, help="messages per put_many, per peek and ack")
    args = parser.parse_args()
    singles, n, batch = args.singles, args.messages // args.batch * args.batch, args.batch
    (ROOT / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cloud-queue-", dir=ROOT / "var") as data:  # this disk, not tmpfs
        data_dir = Path(data)
        append_rate = rate(singles, lambda: file_appends(data_dir / "append.bin", singles))
        with MessageQueue(data_dir / "queue.sqlite") as q:
            put_rate = rate(singles, lambda: [q.put(SPOT, BODY, True) for _ in range(singles)])
            drain_one_rate = rate(singles, lambda: drain(q, 1, singles))
            put_many_rate = rate(n, lambda: [q.put_many([(SPOT, BODY, True)] * batch) for _ in range(n // batch)])
            drain_many_rate = rate(n, lambda: drain(q, batch, n))
            assert q.depth == 0, q.depth
        memory = memory_db()
        memory_insert_rate = rate(n, lambda: memory_inserts(memory, n, batch))
        memory_drain_many_rate = rate(n, lambda: memory_drain(memory, batch))
    print(f"cloud queue, {len(BODY):,}-byte spot messages, durable (WAL, synchronous=FULL) on {ROOT / 'var'}")
    rows = [
        ("put, 1 per transaction", put_rate, append_rate, "a file append+fsync"),
        (f"put_many, {batch} per transaction", put_many_rate, memory_insert_rate, "SQLite in memory, sync off"),
        ("drain, peek+ack 1 at a time", drain_one_rate, append_rate, "a file append+fsync"),
        (f"drain, peek+ack {batch} at a time", drain_many_rate, memory_drain_many_rate, "SQLite in memory, sync off"),
    ]
    for label, value, baseline, what in rows:
        print(f"  {label:<33} {value:>9,.0f} msg/s {1e3 / value:7.3f} ms each   {value / baseline:5.2f}x "
              f"{what} ({baseline:,.0f}/s)")
    ok = drain_one_rate >= TARGET_MSG_S
    print(f"  target: drain one ack at a time >= {TARGET_MSG_S:.0f} msg/s "
          f"({drain_one_rate / TARGET_MSG_S:.1f}x): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
