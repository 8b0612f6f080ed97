"""Retained tags and system information, kept across restarts in SQLite.

Every tag declared with `retain` (the programs' writable parameters, the monitor's battery
history, the system information below) is saved when it changes: at once after a write from
Modbus/cloud/HMI, and otherwise by a comparison every `save_interval_s` of scan time. Saving is
a transaction in a background writer, so a process killed at any moment leaves either the old
or the new value, never a torn one. A durable write (a client's, runtime/image.py) is stored
before it is applied (`Retainer.record`): its answer waits for that commit, so a write that was
acknowledged is the value found after a kill. A save that fails (a full disk) is tried again
with every retained tag at the next `save_interval_s`. At start, before the first scan, stored values go back
into their tags through the tags' own checks; a value that no longer fits (type, range) or whose
io_map starting value has changed since it was stored is skipped with a log line.

System information (tags `sys_*`): firmware version, boot count, last boot, total run time,
last mode change, Raft term, and whether the previous run stopped cleanly.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from plc.program import ScanContext
from plc.tags import Access, Area, DType, ModbusAddress, ModbusTable, TagSpec
from runtime import __version__
from runtime.config.schema import RetainConfig
from runtime.image import ProcessImage, Tag, WriteRequest
from runtime.sqlite_store import SqliteWriter, connect

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS retain (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    initial TEXT NOT NULL,
    updated_wall_s REAL NOT NULL
);
"""
SYSTEM_BASE = 1700
SYSTEM_TAGS = (  # name, dtype, unit, description; appended only (register addresses)
    ("sys_firmware_version", DType.STRING, "", "Controller software version"),
    ("sys_boot_count", DType.UINT32, "", "Starts of the controller since commissioning"),
    ("sys_last_boot_wall_s", DType.UINT32, "s", "Last start of the controller (epoch)"),
    ("sys_runtime_total_s", DType.UINT32, "s", "Time the controller has run, over all starts"),
    ("sys_last_mode_change_wall_s", DType.UINT32, "s", "Last change of the active mode (epoch)"),
    ("sys_raft_term", DType.UINT32, "", "Last Raft term seen by this controller (cluster)"),
    ("sys_last_stop_clean", DType.BOOL, "", "The previous run ended with a clean stop"),
)
VERSION_LENGTH = 16


def system_tag_specs() -> list[TagSpec]:
    """The system-information tags (retained), from input register / discrete input 1700."""
    next_address = {ModbusTable.INPUT: SYSTEM_BASE, ModbusTable.DISCRETE: SYSTEM_BASE}
    specs = []
    for name, dtype, unit, description in SYSTEM_TAGS:
        table = ModbusTable.DISCRETE if dtype is DType.BOOL else ModbusTable.INPUT
        spec = TagSpec(name=name, dtype=dtype, area=Area.MEMORY, unit=unit, access=Access.RO,
                       description=description, retain=True, length=VERSION_LENGTH if dtype is DType.STRING else 0,
                       initial={DType.STRING: "", DType.BOOL: False}.get(dtype, 0))
        spec = attrs.evolve(spec, modbus=ModbusAddress(table, next_address[table]))
        next_address[table] += spec.words
        specs.append(spec)
    return specs


class RetainStore:
    """The table of retained values: name -> JSON value, with the io_map starting value it replaced."""

    def __init__(self, path: Path):
        self.path = path
        self.writer = SqliteWriter(path, SCHEMA, "retain-store", batch_wait_s=0.05)

    def load(self) -> dict[str, tuple[Any, Any]]:
        """Stored values as name -> (value, initial); unreadable rows are skipped with a log line."""
        db = connect(self.path, SCHEMA)
        try:
            rows = db.execute("SELECT name, value, initial FROM retain").fetchall()
        finally:
            db.close()
        out = {}
        for name, value, initial in rows:
            try:
                out[name] = (json.loads(value), json.loads(initial))
            except ValueError:
                log.warning("retained %s: stored value %r is not readable; skipped", name, value)
        return out

    def save(self, values: dict[str, tuple[Any, Any]], wall_s: float, wait: bool = False,
             on_done: Callable[[BaseException | None], None] | None = None, urgent: bool = False) -> None:
        """Store name -> (value, initial) in one transaction (queued, or at once with `wait`);
        `on_done(None | exception)` once committed or failed (writer thread)."""
        rows = [(name, json.dumps(value), json.dumps(initial), wall_s) for name, (value, initial) in values.items()]

        def job(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO retain (name, value, initial, updated_wall_s) "
                           "VALUES (?, ?, ?, ?)", rows)

        if wait:
            self.writer.run_now(job)
        else:
            self.writer.submit(job, on_done, urgent)

    def close(self) -> None:
        self.writer.close()


class Retainer:
    """Restores retained tags, keeps the system information, saves what changed (after each scan)."""

    def __init__(self, image: ProcessImage, store: RetainStore, save_interval_s: float, clock: Any):
        self.store = store
        self.wall = clock.wall
        self.interval_s = save_interval_s
        self.tags: list[Tag] = [tag for tag in image if tag.spec.retain]
        self.saved: dict[str, Any] = {}
        self.dirty = False
        self.next_check_s: float | None = None
        self.started_t_s = clock.now()
        self.runtime_base_s = 0
        self.mode = image.get("mode_active")
        self.last_mode = None
        self.sys = {name: image[name] for name, *_ in SYSTEM_TAGS if name in image}
        self.previous_clean = True
        self.unsaved = False  # a save failed: store every retained tag again at the next interval
        image.write_listeners.append(self.on_write)
        image.add_recorder(1, self.record)

    def restore(self) -> int:
        """Put stored values back into their tags; returns how many were restored."""
        stored = self.store.load()
        restored = 0
        for tag in self.tags:
            if tag.name not in stored:
                continue
            value, initial = stored[tag.name]
            if initial != _jsonable(tag.spec.initial):
                log.warning("retained %s: the io_map's starting value changed (%r -> %r); using the io_map's",
                            tag.name, initial, tag.spec.initial)
                continue
            try:
                tag.set(tag.check(value))
            except (ValueError, TypeError) as exc:
                log.warning("retained %s: stored value %r skipped: %s", tag.name, value, exc)
                continue
            self.saved[tag.name] = tag.value
            restored += 1
        log.info("restored %d of %d retained tags from %s", restored, len(self.tags), self.store.path)
        return restored

    def boot(self) -> bool:
        """Count this start and stamp it, durably, before the first scan. Returns whether the last
        run stopped cleanly."""
        sys = self.sys
        first_boot = not (sys["sys_boot_count"].value if "sys_boot_count" in sys else 0)
        clean = True
        if not first_boot and "sys_last_stop_clean" in sys:
            clean = bool(sys["sys_last_stop_clean"].value)
        previous = sys["sys_firmware_version"].value if "sys_firmware_version" in sys else ""
        updates = {"sys_boot_count": (sys["sys_boot_count"].value or 0) + 1, "sys_last_boot_wall_s": int(self.wall()),
                   "sys_firmware_version": __version__[:VERSION_LENGTH], "sys_last_stop_clean": False}
        for name, value in updates.items():
            if name in sys:
                sys[name].set(value)
        if previous and previous != __version__:
            log.warning("firmware changed from %s to %s", previous, __version__)
        self.runtime_base_s = sys["sys_runtime_total_s"].value if "sys_runtime_total_s" in sys else 0
        try:
            self.save(wait=True)
        except sqlite3.Error:  # a full disk: the writer has said so; the controller runs, client writes are refused
            self.unsaved = True
        if not clean:
            log.warning("the previous run did not stop cleanly (killed, crashed or power lost)")
        self.previous_clean = clean
        return clean

    def on_write(self, request: WriteRequest) -> None:
        for tag, _value in request.items:
            if tag.spec.retain:
                self.dirty = True

    def record(self, request: WriteRequest, then: Callable[[BaseException | None], None]) -> bool:
        """Store a durable request's retained values before it is applied (any thread); `then`
        once committed. (The scan saves them again once applied: that save comes after any
        the scan queued meanwhile, so the store ends with the applied value.)"""
        rows = {tag.name: (value, _jsonable(tag.spec.initial)) for tag, value in request.items if tag.spec.retain}
        if not rows:
            return False
        self.store.save(rows, self.wall(), on_done=then, urgent=True)
        return True

    def _saved(self, error: BaseException | None) -> None:
        if error is not None:
            self.unsaved = True  # writer thread; read by the scan at its next interval

    def __call__(self, ctx: ScanContext) -> None:
        mode = self.mode
        if mode is not None and mode.value != self.last_mode:
            if self.last_mode is not None and "sys_last_mode_change_wall_s" in self.sys:
                self.sys["sys_last_mode_change_wall_s"].set(int(ctx.wall_s))
                self.dirty = True
            self.last_mode = mode.value
        if self.next_check_s is None:
            self.next_check_s = ctx.t_s + self.interval_s
        if self.dirty or ctx.t_s >= self.next_check_s:
            if ctx.t_s >= self.next_check_s:
                self.next_check_s = ctx.t_s + self.interval_s
                self._update_runtime(ctx.t_s)
                if self.unsaved:
                    self.unsaved = False
                    self.saved.clear()  # not known to be stored: store them all
            self.dirty = False
            self.save()

    def _update_runtime(self, t_s: float) -> None:
        tag = self.sys.get("sys_runtime_total_s")
        if tag is not None:
            tag.set(self.runtime_base_s + int(round(t_s - self.started_t_s)))

    def save(self, wait: bool = False) -> int:
        """Store every retained tag whose value differs from the last one stored."""
        changed = {}
        for tag in self.tags:
            value = tag.value
            if value is None or (tag.name in self.saved and self.saved[tag.name] == value):
                continue
            changed[tag.name] = (value, _jsonable(tag.spec.initial))
            self.saved[tag.name] = value
        if changed or wait:
            self.store.save(changed, self.wall(), wait=wait, on_done=None if wait else self._saved)
        return len(changed)

    def stop(self, t_s: float | None) -> None:
        """The final save of a clean stop."""
        if t_s is not None:
            self._update_runtime(t_s)
        if "sys_last_stop_clean" in self.sys:
            self.sys["sys_last_stop_clean"].set(True)
        try:
            self.save(wait=True)
        except sqlite3.Error:  # a full disk: said once by the writer; the next start counts an unclean stop
            pass


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def attach(site: Any, data_dir: Path, cfg: RetainConfig) -> Retainer:
    """Restore the site's retained tags from `<data_dir>/<cfg.file>` and keep saving them."""
    store = RetainStore(data_dir / cfg.file)
    retainer = Retainer(site.image, store, cfg.save_interval_s, site.clock)
    retainer.restore()
    retainer.boot()
    site.engine.after_scan.append(retainer)
    return retainer
