"""The cloud link's store-and-forward queue: what the hub has not acknowledged, in SQLite.

Every message goes into the queue (`put`, `put_many`) before the SDK sees it, and leaves it
only when the hub has acknowledged it (`ack`): the SDK drops what is sent while disconnected,
the queue is what makes the link lossless. The database runs in WAL mode with
`synchronous=FULL` (runtime/sqlite_store.py `connect`): a put or an ack is committed when it
returns, and survives a killed process and a power cut. The queue is used by one thread, the
link's: never the scan, which hands its messages to the link and goes on.

Delivery is at least once, with a message id the hub deduplicates on: `Message.message_id` is
`<queue id>-<seq>`. The queue id is a random UUID made with the database file and kept in it,
and `seq` (the row id) only grows, also past rows already acknowledged (AUTOINCREMENT): an id
is never given to two messages, not after a restart and not by a new file. A message sent but
not acknowledged when the link or the process went down is sent again; the hub drops the copy.

Order: `peek` gives the oldest messages first, by `seq`, which is the order of every message
type on its own too; new messages keep being queued behind them while the link drains.

Capacity: `max_bytes` bounds the messages' bodies. A put that takes the queue over it evicts
the oldest spot telemetry (messages put with `evictable`) first, down to the cap; only when no
spot message is left are events evicted, oldest first. A spot message of the put itself goes
before any event. Evictions are counted (`evicted_spot`, `evicted_events`, kept in the file)
and each put says what it evicted (`Put.evicted`), for the link's tag and event. A put larger
than the cap on its own is refused (ValueError) and nothing of it is queued.

A file that is not a queue (not SQLite, another program's database, a newer format) is refused
with a `QueueFileError` naming it, before anything is written to it.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import attrs

from runtime.config.schema import QUEUE_MAX_BYTES
from runtime.sqlite_store import connect

APPLICATION_ID = 0x454D5351  # "EMSQ" in the file header: this file is a cloud message queue
FORMAT = 1  # PRAGMA user_version: the layout below
SPOT_BYTES = 2048  # a 10 s spot telemetry message, JSON
WEEK_OF_SPOT = 7 * 24 * 3600 // 10  # 60,480 spot messages at one every 10 s
# 60,480 x 2,048 B = 123.9 MB for a week of spot telemetry; 192 MiB (201.3 MB) leaves 77 MB for
# events (75,000 of 1 kB) or spot messages of up to 3.3 kB. The file takes more than the bodies:
# a row of a 2 kB body gets a 4 kB page to itself (two do not fit), so that week is a 249 MB file
# (measured), plus the WAL; smaller or larger bodies pack better.
DEFAULT_MAX_BYTES = QUEUE_MAX_BYTES  # 192 MiB, the [cloud] queue_max_bytes default
_CHUNK = 500  # seqs per statement in `ack` (SQLite's limit of bound parameters)

SCHEMA = f"""
BEGIN;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {FORMAT};
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    queued_at REAL NOT NULL,
    evictable INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_class ON messages (evictable, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('evicted_spot', 0), ('evicted_events', 0);
COMMIT;
"""


class QueueFileError(OSError):
    """The queue file cannot be used: one line naming it (an OSError, like a port in use: `ems run`
    says so and exits)."""


@attrs.frozen
class Message:
    """One queued message. `seq` orders them (oldest first); `queued_at` is wall-clock seconds."""

    seq: int
    kind: str  # the message type: SC_Spot_10s, SC_state_event, ...
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")  # encoded JSON
    queued_at: float
    evictable: bool  # spot telemetry: evicted first when the queue is full
    queue_id: str = attrs.field(repr=False)

    @property
    def message_id(self) -> str:
        """Unique over every queue file ever made: what the hub deduplicates on."""
        return f"{self.queue_id}-{self.seq}"


@attrs.frozen
class Evicted:
    """A message the byte cap pushed out before it was acknowledged (its body is gone)."""

    seq: int
    kind: str
    queued_at: float
    evictable: bool
    size: int  # bytes of its body


@attrs.frozen
class Put:
    """What a put queued (in order) and what it evicted to make room (oldest first)."""

    messages: tuple[Message, ...]
    evicted: tuple[Evicted, ...] = ()

    @property
    def message(self) -> Message:
        """The message of a `put` (one)."""
        (only,) = self.messages
        return only

    @property
    def spot_evicted(self) -> int:
        return sum(1 for e in self.evicted if e.evictable)

    @property
    def events_evicted(self) -> int:
        return sum(1 for e in self.evicted if not e.evictable)


class MessageQueue:
    """The queue in one SQLite file, opened (created) at once, so a bad file shows at start. Not
    thread-safe: one thread uses it at a time (the link's); it may be opened in another."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, wall: Callable[[], float] = time.time):
        if not max_bytes > 0:
            raise ValueError(f"cloud queue max_bytes {max_bytes}: a number of bytes, more than 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.wall = wall
        self.db = _open(self.path)
        db = self.db
        with self._transaction():
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('queue_id', ?)", (str(uuid.uuid4()),))
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self.queue_id: str = meta["queue_id"]
        self._evicted = {True: int(meta["evicted_spot"]), False: int(meta["evicted_events"])}
        self._depth, self._bytes = db.execute("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM messages").fetchone()

    @property
    def depth(self) -> int:
        """Messages queued (not yet acknowledged)."""
        return int(self._depth)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the queued messages' bodies: what `max_bytes` bounds."""
        return int(self._bytes)

    @property
    def evicted_spot(self) -> int:
        """Spot messages evicted by the byte cap, over the file's life."""
        return self._evicted[True]

    @property
    def evicted_events(self) -> int:
        """Events evicted by the byte cap (none while a spot message was queued), over the file's life."""
        return self._evicted[False]

    def put(self, kind: str, body: bytes, evictable: bool) -> Put:
        """Queue one message, committed on return; what it evicted is in the answer."""
        return self.put_many([(kind, body, evictable)])

    def put_many(self, items: Iterable[tuple[str, bytes, bool]]) -> Put:
        """Queue (kind, body, evictable) messages in one transaction, in their order."""
        rows = [_checked(kind, body, evictable) for kind, body, evictable in items]
        size = sum(len(body) for _, body, _ in rows)
        if size > self.max_bytes:
            raise ValueError(f"cloud queue {self.path}: {len(rows)} message(s) of {size} bytes do not fit in "
                             f"max_bytes {self.max_bytes}; nothing queued")
        if not rows:
            return Put(())
        now = self.wall()
        db = self.db
        with self._transaction():
            seqs = [db.execute("INSERT INTO messages (kind, body, queued_at, evictable) VALUES (?, ?, ?, ?)",
                               (kind, body, now, evictable)).lastrowid for kind, body, evictable in rows]
            evicted = self._evict(self._bytes + size - self.max_bytes)
        self._depth += len(rows) - len(evicted)
        self._bytes += size - sum(e.size for e in evicted)
        for e in evicted:
            self._evicted[e.evictable] += 1
        messages = tuple(Message(int(seq or 0), kind, body, now, evictable, self.queue_id)
                         for seq, (kind, body, evictable) in zip(seqs, rows, strict=True))
        return Put(messages, tuple(evicted))

    def peek(self, limit: int, after: int = 0) -> list[Message]:
        """Up to `limit` queued messages, oldest first, of those with a seq above `after` (the
        last one already in flight), without removing them."""
        if limit <= 0:
            return []  # (SQLite reads LIMIT -1 as no limit)
        rows = self.db.execute("SELECT seq, kind, body, queued_at, evictable FROM messages WHERE seq > ? "
                               "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        return [Message(seq, kind, body, queued_at, bool(evictable), self.queue_id)
                for seq, kind, body, queued_at, evictable in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove the acknowledged messages, committed on return; seqs not queued (acknowledged
        already, or evicted) are passed over. Returns how many were removed."""
        wanted = sorted({int(seq) for seq in seqs})
        if not wanted:
            return 0
        db = self.db
        removed = freed = 0
        with self._transaction():
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i:i + _CHUNK]
                where = f"seq IN ({', '.join('?' * len(chunk))})"
                count, size = db.execute(f"SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM messages "
                                         f"WHERE {where}", chunk).fetchone()
                db.execute(f"DELETE FROM messages WHERE {where}", chunk)
                removed, freed = removed + count, freed + size
        self._depth -= removed
        self._bytes -= freed
        return int(removed)

    def oldest_age_s(self) -> float | None:
        """Wall-clock seconds since the oldest queued message was put (0 if the clock went back
        since), None when the queue is empty."""
        row = self.db.execute("SELECT queued_at FROM messages ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else max(0.0, self.wall() - row[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _evict(self, excess: int) -> list[Evicted]:
        """Delete the oldest spot messages, then (none left) the oldest events, until `excess`
        bytes are gone; counted in the file. Inside the put's transaction."""
        db = self.db
        out: list[Evicted] = []
        for evictable in (True, False):
            if excess <= 0:
                break
            chosen: list[Evicted] = []
            rows = db.execute("SELECT seq, kind, queued_at, length(body) FROM messages WHERE evictable = ? "
                              "ORDER BY seq", (evictable,))
            for seq, kind, queued_at, size in rows:
                chosen.append(Evicted(seq, kind, queued_at, evictable, size))
                excess -= size
                if excess <= 0:
                    break
            rows.close()
            if chosen:
                db.execute("DELETE FROM messages WHERE evictable = ? AND seq <= ?", (evictable, chosen[-1].seq))
                key = "evicted_spot" if evictable else "evicted_events"
                db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (len(chosen), key))
            out += chosen
        return out

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back itself (a full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _checked(kind: Any, body: Any, evictable: Any) -> tuple[str, bytes, bool]:
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"cloud queue: a message's kind is its type's name (a non-empty str), not {kind!r}")
    if not isinstance(body, bytes):
        raise TypeError(f"cloud queue: a {kind} message's body must be bytes (encoded JSON), not "
                        f"{type(body).__name__}")
    return kind, body, bool(evictable)


def _open(path: Path) -> sqlite3.Connection:
    """The queue's connection (WAL, synchronous=FULL), once the file is known to be a queue or new."""
    _identify(path)
    try:
        return connect(path, SCHEMA)
    except sqlite3.Error as exc:
        raise QueueFileError(f"cloud queue {path}: cannot be opened ({exc})") from None
    except OSError as exc:
        raise QueueFileError(f"cloud queue {path}: cannot be opened ({exc.strerror or exc})") from None


def _identify(path: Path) -> None:
    """Refuse a file that is not a cloud message queue of this format, before anything is written to it."""
    if not path.exists():
        return
    if path.is_dir():
        raise QueueFileError(f"cloud queue {path}: is a directory, not a queue file")
    try:
        db = sqlite3.connect(str(path), timeout=10.0)
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                     "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise QueueFileError(f"cloud queue {path}: not a SQLite database ({exc}); move it away or name another "
                             f"file") from None
    if application_id == 0 and not tables:
        return  # an empty database (a new file, or one cut short before its schema was committed)
    if application_id != APPLICATION_ID:
        raise QueueFileError(f"cloud queue {path}: a SQLite database of something else (tables: "
                             f"{', '.join(tables) or 'none'}), not a cloud message queue")
    if version > FORMAT:
        raise QueueFileError(f"cloud queue {path}: written in queue format {version} by a newer version; this "
                             f"one reads format {FORMAT}")
