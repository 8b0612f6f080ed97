"""One controller per site: an exclusive lock on the site's data directory.

A second `ems run` on a site that is running (a technician's shell while the service is up)
must not open the live stores, bump the boot count, log a false unclean-stop warning, or touch
an output: it takes this lock before anything else and, refused, exits naming the process that
holds the site. The lock is `fcntl.flock` on `<data_dir>/ems.lock`, which holds the holder's
PID; the kernel releases it when the holder exits in any way (SIGKILL included), so a stale
file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "ems.lock"


class SiteBusy(Exception):
    """Another process holds the site."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{holder} is running this site (it holds {path}); stop it first "
                         f"(systemctl stop ems), or give this run another --data-dir")


class SiteLock:
    """Held from `acquire()` until `release()` or the end of the process."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise SiteBusy naming the holder. Writes the PID only once held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise SiteBusy(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
