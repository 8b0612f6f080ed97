"""The event log: what happened on the site and when, in SQLite, for the operator and the service.

Recorded: site state changes (with their reason), mode changes, errors raised, cleared and
acknowledged, monitor findings, setpoint and parameter writes (with who wrote them), and the
service's own start and stop. The `EventRecorder` runs after each scan and only compares a few
tag values with the last ones seen and drains the programs' event queues; the rows go to a
background writer (runtime/sqlite_store.py), never to the disk from the scan. Retention keeps
at most `max_rows` rows, always, and nothing older than `max_age_days` while the clock can be
trusted: synchronized, and not behind the newest row stored (`EventLog.prune`). A Pi's clock is
wrong until NTP sets it, and a start 400 days ahead must not delete a year of history by age.

`ems events [--since] [--severity]` reads the log (`read_events`).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from plc.program import ScanContext
from runtime.config.schema import EventLogConfig
from runtime.image import ProcessImage, WriteRequest
from runtime.sqlite_store import SqliteWriter, open_readonly

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "error", "critical")
PRUNE_EVERY_S = 60.0
BEHIND_NEWEST_S = 60.0  # a clock this far behind the newest stored row cannot tell the rows' ages
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wall_s REAL NOT NULL,
    t_s REAL NOT NULL,
    kind TEXT NOT NULL,
    severity INTEGER NOT NULL,
    source TEXT NOT NULL,
    code INTEGER NOT NULL,
    name TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (wall_s);
"""


@attrs.frozen
class Event:
    """One row of the log. `severity`: 0 info, 1 warning, 2 error, 3 critical."""

    wall_s: float
    t_s: float
    kind: str  # KINDS: state, mode, error, monitor, write, service, clock, cluster, aem
    severity: int
    source: str
    code: int
    name: str
    message: str
    id: int | None = None

    def row(self) -> tuple[Any, ...]:
        return (self.wall_s, self.t_s, self.kind, self.severity, self.source, self.code, self.name, self.message)

    def text(self) -> str:
        when = datetime.fromtimestamp(self.wall_s, UTC).strftime("%Y-%m-%d %H:%M:%S")
        code = f"E{self.code} " if self.code else ""
        return f"{when}  {SEVERITIES[self.severity]:<8} {self.kind:<8} {code}{self.name}: {self.message}"


class EventLog:
    """Appends events through a background writer and keeps the table within its limits."""

    def __init__(self, path: Path, max_rows: int = 200_000, max_age_days: float = 365.0,
                 clock_synced: Callable[[], bool] = lambda: True):
        self.path = path
        self.max_rows = max_rows
        self.max_age_s = max_age_days * 86400.0
        self.clock_synced = clock_synced  # whether the wall clock is synchronized (the site's ClockWatch)
        self.age_pruning_held = False  # the last prune kept old rows because the clock was not trusted
        self.writer = SqliteWriter(path, SCHEMA, "event-log")
        self.written = 0
        self._pruned_at = -PRUNE_EVERY_S
        self._prune_rows = max(1, max_rows // 10)  # the table holds at most 10 % more than max_rows
        # told of each event once it is committed (the writer's thread; must not block): the cloud link
        self.listeners: list[Callable[[Event], None]] = []

    def append(self, event: Event, on_done: Callable[[BaseException | None], None] | None = None) -> None:
        """Queue one event (cheap; any thread); `on_done(None | exception)` once it is committed or
        failed (in the writer thread; such an event is committed at once)."""
        row = event.row()
        self.writer.submit(lambda db: self._insert(db, row), self._told([event], on_done))

    def append_all(self, events: list[Event], on_done: Callable[[BaseException | None], None]) -> None:
        """Queue events to be committed together, at once; `on_done` as for `append`."""
        rows = [event.row() for event in events]

        def job(db: sqlite3.Connection) -> None:
            for row in rows:
                self._insert(db, row)

        self.writer.submit(job, self._told(events, on_done))

    def _told(self, events: list[Event], on_done: Callable[[BaseException | None], None] | None
              ) -> Callable[[BaseException | None], None] | None:
        """`on_done`, and the listeners told of `events` once committed (none: `on_done` as it is,
        so events without a waiting caller are still committed in batches)."""
        listeners = self.listeners
        if not listeners:
            return on_done

        def done(error: BaseException | None) -> None:
            if error is None:
                for event in events:
                    for listener in listeners:
                        listener(event)
            if on_done is not None:
                on_done(error)

        return done

    def _insert(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        db.execute("INSERT INTO events (wall_s, t_s, kind, severity, source, code, name, message) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        self.written += 1
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_EVERY_S or self.written % self._prune_rows == 0:
            self._pruned_at = now
            self.prune(db, row[0])

    def prune(self, db: sqlite3.Connection, now_wall_s: float) -> None:
        """Drop rows beyond the row limit (oldest first, always), and rows older than the age
        limit only while the clock is trusted: synchronized, and not more than BEHIND_NEWEST_S
        behind the newest stored row (else the clock or the stored times are wrong, and which of
        them is cannot be told). A clock that jumped never deletes history."""
        if self._clock_trusted(db, now_wall_s):
            db.execute("DELETE FROM events WHERE wall_s < ?", (now_wall_s - self.max_age_s,))
        db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.max_rows,))

    def _clock_trusted(self, db: sqlite3.Connection, now_wall_s: float) -> bool:
        synced = self.clock_synced()
        newest = db.execute("SELECT MAX(wall_s) FROM events").fetchone()[0]
        behind = newest is not None and now_wall_s < newest - BEHIND_NEWEST_S
        trusted = synced and not behind
        if not trusted and not self.age_pruning_held:
            why = "not synchronized" if not synced else f"{newest - now_wall_s:.0f} s behind the newest event"
            log.warning("event log: the clock is %s: no event is deleted by age (max_age_days) until it is right; "
                        "the log stays within max_rows = %d", why, self.max_rows)
        elif trusted and self.age_pruning_held:
            log.info("event log: the clock is trusted again; events older than %g days are deleted",
                     self.max_age_s / 86400.0)
        self.age_pruning_held = not trusted
        return trusted

    def close(self, now_wall_s: float | None = None) -> None:
        """Prune to the limits, write what is queued and close."""
        wall = time.time() if now_wall_s is None else now_wall_s
        self.writer.submit(lambda db: self.prune(db, wall))
        self.writer.close()


# a cluster node's role, the leader it follows, the Raft term and the members online (kind "cluster")
CLUSTER_TAGS = ("cluster_role", "cluster_leader", "cluster_term", "cluster_members_online")


def _label(tag: Any, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(tag.spec.label(value)) if value != "" else "none"


class EventRecorder:
    """After each scan: state and mode changes, cluster role, leader, term and membership changes,
    AEM on and off (grid services), the programs' event queues; writes as they apply."""

    def __init__(self, image: ProcessImage, programs: Iterable[Any], sink: EventLog, wall: Any,
                 ignore_writes: Iterable[str] = ()):
        self.sink = sink
        self.wall = wall  # the clock's wall(): event times for writes applied outside a program
        watched = [("site_state", "site_state_reason", "state"), ("mode_active", "mode_reason", "mode"),
                   *((name, None, "cluster") for name in CLUSTER_TAGS),
                   *((tag.name, None, "aem") for tag in image if tag.name.startswith("aem_active_"))]
        self.watch = [(image[state], image.get(reason) if reason else None, kind)
                      for state, reason, kind in watched if state in image]
        self.last: list[Any] = [None] * len(self.watch)
        self.queues: list[deque[Any]] = [p.events for p in programs if isinstance(getattr(p, "events", None), deque)]
        self.ignore = re.compile("|".join(fnmatch.translate(p) for p in ignore_writes)) if ignore_writes else None
        self.image = image
        image.write_listeners.append(self.on_write)
        image.add_recorder(0, self.record)
        image.refusal_listeners.append(self.on_refused)

    def __call__(self, ctx: ScanContext) -> None:
        last = self.last
        for i, (tag, reason, kind) in enumerate(self.watch):
            value = tag.value
            if value != last[i]:
                self._changed(ctx, i, tag, reason, kind, value)
        for q in self.queues:
            while q:
                self._program_event(q.popleft())

    def _changed(self, ctx: ScanContext, i: int, tag: Any, reason: Any, kind: str, value: Any) -> None:
        before = self.last[i]
        self.last[i] = value
        label, was = _label(tag, value), _label(tag, before)
        why = f" ({reason.value})" if reason is not None and reason.value else ""
        message = f"{tag.name}: " if kind in ("cluster", "aem") else ""
        message += f"{was} -> {label}{why}" if before is not None else f"{label}{why}"
        severity = 2 if kind == "state" and label == "error" else 1 if kind == "aem" and value else 0
        self.sink.append(Event(ctx.wall_s, ctx.t_s, kind, severity, "site", 0, tag.name, message))

    def _program_event(self, e: Any) -> None:
        self.sink.append(Event(e.wall_s, e.t_s, e.kind, int(e.severity), e.source, int(e.code), e.name, e.message))

    def on_write(self, request: WriteRequest) -> None:
        """Called by the image as a request's writes are applied (scan thread, scan boundary)."""
        if request.recorded:
            return  # a durable write: in the log before it was applied
        for event in self._write_events(request):
            self.sink.append(event)

    def record(self, request: WriteRequest, then: Callable[[BaseException | None], None]) -> bool:
        """A durable write's events, committed before it is applied (any thread); `then` once
        committed or failed. One transaction: the request's events are all stored or none."""
        events = self._write_events(request)
        if not events:
            return False

        def committed(error: BaseException | None) -> None:
            request.recorded = error is None
            then(error)

        self.sink.append_all(events, committed)
        return True

    def on_refused(self, request: WriteRequest, error: BaseException) -> None:
        """A durable write whose event is logged but whose value could not be stored (writer thread)."""
        if not request.recorded:
            return
        for tag, value in request.items:
            message = f"{tag.name} = {tag.spec.label(value)} (by {request.source}) refused, not applied: " \
                      f"it could not be stored ({type(error).__name__}: {error})"
            self.sink.append(Event(self.wall(), self.image.now, "write", 1, request.source, 0, tag.name, message))

    def _write_events(self, request: WriteRequest) -> list[Event]:
        wall, now, source = self.wall(), self.image.now, request.source
        return [Event(wall, now, "write", 0, source, 0, tag.name, f"{tag.name} = {tag.spec.label(value)} (by {source})")
                for tag, value in request.items if self.ignore is None or not self.ignore.match(tag.name)]


# --- reading -------------------------------------------------------------------------------------
KINDS = ("state", "mode", "error", "monitor", "write", "service", "clock", "cluster", "aem")  # what the log records


def parse_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """`--kind`: each one the log records (a misspelt kind would only ever find nothing)."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    return tuple(kinds)


def read_events(path: Path, since_wall_s: float | None = None, min_severity: int = 0,
                kinds: Iterable[str] = (), limit: int | None = None) -> list[Event]:
    """Events in time order, oldest first (the newest `limit` when given)."""
    query = "SELECT id, wall_s, t_s, kind, severity, source, code, name, message FROM events WHERE severity >= ?"
    args: list[Any] = [min_severity]
    if since_wall_s is not None:
        query += " AND wall_s >= ?"
        args.append(since_wall_s)
    kinds = tuple(kinds)
    if kinds:
        query += f" AND kind IN ({', '.join('?' * len(kinds))})"
        args.extend(kinds)
    query += " ORDER BY id DESC"
    if limit is not None:
        query += " LIMIT ?"
        args.append(limit)
    db = open_readonly(path)
    try:
        rows = db.execute(query, args).fetchall()
    finally:
        db.close()
    return [Event(wall_s=w, t_s=t, kind=k, severity=s, source=src, code=c, name=n, message=m, id=i)
            for i, w, t, k, s, src, c, n, m in reversed(rows)]


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_since(text: str, now_wall_s: float | None = None) -> float:
    """`--since`: a duration back from now (`30m`, `2h`, `7d`) or an ISO date/time (UTC if no zone)."""
    now = time.time() if now_wall_s is None else now_wall_s
    match = _RELATIVE.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration like 30m, 2h, 7d or a date like 2026-01-31T12:00") \
            from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_severity(text: str) -> int:
    try:
        return SEVERITIES.index(text.lower())
    except ValueError:
        raise ValueError(f"--severity {text!r}: one of {', '.join(SEVERITIES)}") from None


def attach(site: Any, data_dir: Path, cfg: EventLogConfig) -> EventLog:
    """Record the site's events into `<data_dir>/<cfg.file>`; returns the log (closed by Site.stop)."""
    watch = site.engine.clock_watch
    event_log = EventLog(data_dir / cfg.file, cfg.max_rows, cfg.max_age_days, lambda: watch.synced)
    recorder = EventRecorder(site.image, site.programs, event_log, site.clock.wall, cfg.ignore_writes)
    site.engine.after_scan.append(recorder)
    return event_log



def service_event(site: Any, what: str, previous_clean: bool = True) -> Event:
    """The controller's own start or stop, with the boot count and how the previous run ended."""
    image = site.image
    boots = image["sys_boot_count"].value if "sys_boot_count" in image else 0
    message = f"controller {what} (boot {boots})"
    if not previous_clean:
        message += "; the previous run did not stop cleanly"
    return Event(site.clock.wall(), site.engine.ctx.t_s, "service", 0 if previous_clean else 1, "raspberry_pi", 0,
                 what, message)
