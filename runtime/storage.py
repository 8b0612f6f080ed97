"""Storage health: whether the data directory takes the controller's writes.

The event log and the retain store (runtime/sqlite_store.py) tell `StorageHealth` of every
transaction: one that fails (a full disk, an I/O error, a read-only remount) sets
`storage_write_failed`, raises error 412 through the safety program's interlocks, and is logged
once, as one line, until a transaction commits again; a client's write that could not be stored
is refused (exception 04) and never applied (runtime/image.py). A thread of its own reads the
free space of the data directory's file system (`shutil.disk_usage`, every `check_every_s`) into
`storage_free_pct`; below `near_full_pct` free, `storage_near_full` raises warning 411. The scan
only copies these figures into their tags: it never waits on the disk.

At start `check_data_dir` makes sure the data directory exists (creating it) and takes a file;
`ems run` turns a refusal into one line and exit 1.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plc.program import ScanContext
from runtime.image import ProcessImage

log = logging.getLogger(__name__)

NEAR_FULL_PCT = 10.0  # free space below which the disk counts as nearly full
CHECK_EVERY_S = 10.0
PROBE = ".ems-write-probe"


def check_data_dir(path: Path) -> str | None:
    """None when `path` is a directory the controller can create files in (it is created when
    missing), else the reason in one line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"data directory {path} cannot be created: {exc.strerror or exc}"
    if not path.is_dir():
        return f"data directory {path} is not a directory"
    probe = path / PROBE
    try:  # root ignores permission bits: only a real write tells (a read-only mount, a full disk)
        with open(probe, "wb") as f:
            f.write(b"ems")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        return f"data directory {path} is not writable: {exc.strerror or exc}"
    return None


class StorageHealth:
    """Failed and committed transactions (writer threads) and free space (its own thread), as tags."""

    def __init__(self, data_dir: Path, near_full_pct: float = NEAR_FULL_PCT, check_every_s: float = CHECK_EVERY_S,
                 disk_usage: Callable[[Path], Any] = shutil.disk_usage):
        self.data_dir = data_dir
        self.near_full_pct = near_full_pct
        self.check_every_s = check_every_s
        self.disk_usage = disk_usage
        self.free_pct: float | None = None
        self.near_full = False
        self.failed_paths: dict[Path, str] = {}  # file -> the error of its last transaction, while failing
        self.failed_writes = 0  # failed transactions since start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tags: dict[str, Any] = {}
        self.measure()

    @property
    def write_failed(self) -> bool:
        return bool(self.failed_paths)

    # --- writer threads ---------------------------------------------------------------------------
    def failed(self, path: Path, exc: BaseException, jobs: int) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.failed_writes += 1
            first = not self.failed_paths
            known = path in self.failed_paths
            self.failed_paths[path] = reason
        if first:
            log.error("storage: cannot write to %s (%s): %d record(s) not stored; client writes are refused "
                      "(exception 04) until a write succeeds (logged once)", path, reason, jobs)
        elif not known:
            log.error("storage: cannot write to %s either (%s)", path, reason)

    def committed(self, path: Path) -> None:
        if path not in self.failed_paths:  # the common case: no lock
            return
        with self._lock:
            self.failed_paths.pop(path, None)
            cleared = not self.failed_paths
        log.warning("storage: %s takes writes again%s", path,
                    f" ({self.failed_writes} failed transactions)" if cleared else "")

    # --- free space -------------------------------------------------------------------------------
    def measure(self) -> None:
        """Read the free space now (start-up, the monitor thread, tests)."""
        try:
            usage = self.disk_usage(self.data_dir)
        except OSError as exc:
            log.warning("storage: cannot read the free space of %s: %s", self.data_dir, exc)
            return
        free = 100.0 * usage.free / usage.total if usage.total else 0.0
        near = free < self.near_full_pct
        if near and not self.near_full:
            log.warning("storage: the data disk of %s is nearly full: %.1f %% free (%d MB), below %g %%",
                        self.data_dir, free, usage.free // 1_000_000, self.near_full_pct)
        elif self.near_full and not near:
            log.info("storage: the data disk of %s has %.1f %% free again", self.data_dir, free)
        self.free_pct, self.near_full = free, near

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="storage-health", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.measure()

    # --- the scan ---------------------------------------------------------------------------------
    def bind(self, image: ProcessImage) -> None:
        self._tags = {name: image[name] for name in ("storage_free_pct", "storage_near_full",
                                                     "storage_write_failed", "storage_failed_writes") if name in image}

    def __call__(self, ctx: ScanContext) -> None:
        """After each scan: the figures into their tags (plain assignments)."""
        tags = self._tags
        if not tags:
            return
        if self.free_pct is not None and "storage_free_pct" in tags:
            tags["storage_free_pct"].value = self.free_pct
        for name, value in (("storage_near_full", self.near_full), ("storage_write_failed", self.write_failed),
                            ("storage_failed_writes", self.failed_writes)):
            tag = tags.get(name)
            if tag is not None:
                tag.value = value


def attach(site: Any, data_dir: Path, writers: list[Any]) -> StorageHealth:
    """Watch the site's stores (their SqliteWriters) and the data directory's free space."""
    health = StorageHealth(data_dir)
    for writer in writers:
        writer.health = health
        if writer.last_error is not None:  # failed before it was watched (the boot count's save)
            health.failed_paths[writer.path] = writer.last_error
    health.bind(site.image)
    site.engine.after_scan.append(health)
    health.start()
    return health
