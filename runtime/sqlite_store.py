"""A SQLite file written by one background thread, so the scan never waits on the disk.

The scan (or anyone) hands work to `submit`: a function that takes the connection and runs in
the writer thread inside one transaction. The database runs in WAL mode with
`synchronous=FULL`: a committed transaction survives a killed process and a power cut, and a
transaction cut short leaves nothing behind. The connection is opened when the store is made
(so a broken disk shows at start, not later) and closed by `close`, after the queue is drained.

A job may come with `on_done`, called in the writer thread once its transaction has committed
(with None) or failed (with the exception): a write acknowledged to a client waits for it. Such
a job is `urgent`: the writer does not wait `batch_wait_s` for more work but commits at once, and
what arrives during that commit goes into the next one (group commit). A failed transaction is
logged once, as one line, until a transaction commits again (`health`, runtime/storage.py, when
given, also hears of every failure and success).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection], None]
Done = Callable[[BaseException | None], None]
_STOP = object()


class Health(Protocol):
    """Told of each transaction's outcome (runtime/storage.py StorageHealth)."""

    def committed(self, path: Path) -> None: ...

    def failed(self, path: Path, exc: BaseException, jobs: int) -> None: ...


class _Item:
    __slots__ = ("job", "on_done", "urgent")

    def __init__(self, job: Job, on_done: Done | None, urgent: bool):
        self.job, self.on_done, self.urgent = job, on_done, urgent


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
        self.commits = 0  # transactions committed
        self.health: Health | None = None
        self.last_error: str | None = None  # the failure of the last transaction, None once one commits
        self._hurry = threading.Event()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, on_done: Done | None = None, urgent: bool | None = None) -> None:
        """Queue a job; cheap and safe from any thread. `on_done(None | exception)` is called in
        the writer thread once the job's transaction committed or failed; a job with `on_done` is
        urgent unless told otherwise (committed without waiting for a batch)."""
        urgent = on_done is not None if urgent is None else urgent
        self._queue.put(_Item(job, on_done, urgent))
        if urgent:
            self._hurry.set()

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

        self._queue.put(_Item(wrapped, None, True))
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
            if isinstance(first, _Item) and not first.urgent:
                self._hurry.wait(self.batch_wait_s)  # let a burst gather into one transaction
            self._hurry.clear()
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(job is _STOP for job in jobs)
            items = [job for job in jobs if isinstance(job, _Item)]
            error = self._commit(items)
            for item in items:
                if item.on_done is not None:
                    try:
                        item.on_done(error)
                    except Exception:  # a waiter's bug must not kill the writer
                        log.exception("%s: a commit callback failed", self._thread.name)
            for job in jobs:
                if isinstance(job, _Barrier):
                    job.done.set()
            if stop:
                self.db.close()
                return

    def _commit(self, items: list[_Item]) -> BaseException | None:
        """Run the jobs in one transaction; the exception if it was rolled back."""
        if not items:
            return None
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for item in items:
                item.job(db)
            db.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - a bad job or a full disk must not kill the writer
            self.failures += 1
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._failed(exc, len(items))
            return exc
        self.commits += 1
        if self.health is not None:
            self.health.committed(self.path)
        elif self.last_error is not None:
            log.warning("%s: %s takes writes again (after %d failed transactions)", self._thread.name, self.path,
                        self.failures)
        self.last_error = None
        return None

    def _failed(self, exc: BaseException, jobs: int) -> None:
        first = self.last_error is None
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.health is not None:
            self.health.failed(self.path, exc, jobs)
        elif first:
            log.error("%s: cannot write to %s (%s); %d job(s) rolled back, and so is every transaction until "
                      "one commits (logged once)", self._thread.name, self.path, self.last_error, jobs)
