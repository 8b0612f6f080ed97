"""The default home site with its tag server, event log and retain store, for write tests.

`serve_home` builds io_maps/sim_home.toml on the virtual clock with the tag server on a free
port and the stores in a data directory, and runs a scan whenever a client's write waits for
one (tests/testkit/write_scanner.py): a test writes with a pymodbus client as SCADA does, and
`served.scanner.scan()` runs scans of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from pymodbus.client import ModbusTcpClient
from site_run import HOME
from testkit.write_scanner import WriteScanner, scanning_writes

from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.events import read_events
from runtime.site import Site, build_site
from runtime.sqlite_store import SqliteWriter

ADDRESS = 1104  # import_limit_w, float32 (at an even address), retained
DT = ModbusTcpClient.DATATYPE


@attrs.define
class Served:
    site: Site
    scanner: WriteScanner
    client: ModbusTcpClient

    @property
    def port(self) -> int:
        return int(self.site.mirrors[0].port)  # type: ignore[attr-defined]

    def connect(self) -> ModbusTcpClient:
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=3, retries=0)
        assert client.connect()
        return client

    def write(self, value: float, client: ModbusTcpClient | None = None) -> int | None:
        """Write import_limit_w as a SCADA client does; the exception code, None when acknowledged."""
        client = client or self.client
        response = client.write_registers(ADDRESS, client.convert_to_registers(value, DT.FLOAT32), device_id=1)
        return response.exception_code if response.isError() else None

    def read(self, client: ModbusTcpClient | None = None) -> float:
        client = client or self.client
        response = client.read_holding_registers(ADDRESS, count=2, device_id=1)
        assert not response.isError(), response
        return float(client.convert_from_registers(response.registers, DT.FLOAT32))

    def writer(self, name: str) -> SqliteWriter:
        """The event log's writer ("sink") or the retain store's ("store")."""
        hook = next(h for h in self.site.engine.after_scan if hasattr(h, name))
        return hook.sink.writer if name == "sink" else hook.store.writer

    def write_events(self) -> list[Any]:
        """The event log's write events of import_limit_w, as committed (read from the file)."""
        return [e for e in read_events(self.site.storage.data_dir / "events.sqlite", kinds=["write"])
                if e.name == "import_limit_w"]


@contextmanager
def serve_home(data_dir: Path, **modbus: Any) -> Iterator[Served]:
    io_map = load_io_map(HOME)
    io_map = attrs.evolve(io_map, modbus_server=attrs.evolve(io_map.modbus_server, port=0, **modbus))
    site = build_site(io_map, VirtualClock())
    site.attach_services(data_dir)
    site.start()
    site.engine.run(max_scans=10)
    client = ModbusTcpClient("127.0.0.1", port=site.mirrors[0].port, timeout=3, retries=0)  # type: ignore[attr-defined]
    assert client.connect()
    try:
        with scanning_writes(site.image, lambda: site.engine.run(max_scans=1)) as scanner:
            yield Served(site, scanner, client)
    finally:
        client.close()
        site.stop()
