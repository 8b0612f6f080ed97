"""A SQLite file written by one background thread, so the scan never waits on the disk.

The scan (or anyone) hands work to `submit`: a function that takes the connection and runs in
the writer thread inside one transaction. The database runs in WAL mode with
`synchronous=FULL`: a committed transaction survives a killed process and a power cut, and a
transaction cut short leaves nothing behind. The connection is opened when the store is made
(so a broken disk shows at start, not later) and closed by `close`, after the queue is drained.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection], None]
_STOP = object()


class _Barrier:
    """Set once every job queued before it is committed (or rolled back)."""

    def __init__(self, done: threading.Event):
        self.done = done


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database in WAL mode with full durability and apply its schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection for tools (`ems events`) that must not disturb the writer."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)


class SqliteWriter:
    """One thread, one connection, a queue of jobs; each batch of jobs commits as one transaction."""

    def __init__(self, path: Path, schema: str, name: str, batch_wait_s: float = 0.2):
        self.path = path
        self.db = connect(path, schema)
        self.batch_wait_s = batch_wait_s
        self.failures = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; cheap and safe from any thread."""
        self._queue.put(job)

    def run_now(self, job: Job) -> None:
        """Run a job in the writer and wait until it is committed (start-up, shut-down, tests)."""
        done = threading.Event()
        errors: list[BaseException] = []

        def wrapped(db: sqlite3.Connection) -> None:
            try:
                job(db)
            except BaseException as exc:
                errors.append(exc)
                raise

        self._queue.put(wrapped)
        self._queue.put(_Barrier(done))
        if not done.wait(30.0):
            raise TimeoutError(f"{self._thread.name}: no commit within 30 s")
        if errors:
            raise errors[0]

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then close the connection."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            jobs = [first]
            if first is not _STOP and not isinstance(first, _Barrier):
                time.sleep(self.batch_wait_s)  # let a burst gather into one transaction
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(job is _STOP for job in jobs)
            self._commit([job for job in jobs if callable(job)])
            for job in jobs:
                if isinstance(job, _Barrier):
                    job.done.set()
            if stop:
                self.db.close()
                return

    def _commit(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in jobs:
                job(db)
            db.execute("COMMIT")
        except Exception:  # a bad job must not kill the writer; the batch is rolled back and logged
            self.failures += 1
            log.exception("%s: a write to %s failed; batch of %d rolled back", self._thread.name, self.path,
                          len(jobs))
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
