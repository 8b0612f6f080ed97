"""A serial cable between two device paths, for Modbus RTU tests without hardware."""

from __future__ import annotations

import os
import pty
import select
import threading
import tty


class NullModem:
    """Two pseudo-terminals joined back to back: bytes written to one end's device come out of
    the other's, pumped by a thread."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        ends = []
        for _ in range(2):
            master, slave = pty.openpty()
            tty.setraw(slave)
            self._fds += [master, slave]
            ends.append((master, os.ttyname(slave)))
        (self._m1, self.a), (self._m2, self.b) = ends
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="null-modem", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        other = {self._m1: self._m2, self._m2: self._m1}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(other), [], [], 0.05)
            for fd in ready:
                try:
                    os.write(other[fd], os.read(fd, 4096))
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in self._fds:
            os.close(fd)
