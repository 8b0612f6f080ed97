"""Scan when a client's write waits: for tests that drive the scan themselves.

The Modbus server answers a write only once a scan has applied it (and the stores have recorded
it), so a test that scans by hand would wait on its own write. `WriteScanner` runs one scan
whenever a write is ready for one; the test's own scans take turns with it (`scan`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runtime.image import ProcessImage


class WriteScanner:
    def __init__(self, image: ProcessImage, scan: Callable[[], None]):
        self.image = image
        self._scan = scan
        self.lock = threading.Lock()
        self.scans = 0  # scans it ran
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="write-scanner", daemon=True)
        self._thread.start()

    def scan(self, n: int = 1) -> None:
        """Scan `n` times in the caller's thread, never at once with the scanner's own scan."""
        for _ in range(n):
            with self.lock:
                self._scan()

    def _run(self) -> None:
        while not self._stopped.wait(0.001):
            if self.image.writes_waiting():
                with self.lock:
                    self._scan()
                    self.scans += 1

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)


@contextmanager
def scanning_writes(image: ProcessImage, scan: Callable[[], None]) -> Iterator[WriteScanner]:
    scanner = WriteScanner(image, scan)
    try:
        yield scanner
    finally:
        scanner.stop()
