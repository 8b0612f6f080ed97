"""A site running in this process on the real clock, its tag server on a free port (tests only)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from runtime.clock import RealClock
from runtime.config.io_map import load_io_map
from runtime.site import Site, build_site
from testkit.waiting import wait_until


@contextmanager
def running_site(io_map_path: Path, ready: Callable[[Site], bool], what: str) -> Iterator[Site]:
    """Build and run the site of `io_map_path` in a thread until `ready(site)`; stop it after."""
    io_map = load_io_map(io_map_path)
    io_map = attrs.evolve(io_map, modbus_server=attrs.evolve(io_map.modbus_server, port=0))
    site = build_site(io_map, RealClock())
    site.start()
    thread = threading.Thread(target=site.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: ready(site), 30.0, what, 0.05)
        yield site
    finally:
        site.stop()
        thread.join(5.0)
