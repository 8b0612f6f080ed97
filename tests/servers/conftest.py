"""Fixtures: a served site on a free 127.0.0.1 port, and Modbus clients for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from modbus_kit import SERVER, ServedSite
from pymodbus.client import ModbusTcpClient
from testkit.write_scanner import WriteScanner

from runtime.config.schema import MeterGatewayConfig


@pytest.fixture
def make_site() -> Iterator[Callable[..., ServedSite]]:
    """Build, start and (at teardown) stop a served site; keywords override [modbus_server].
    A scan runs whenever a client's write waits for one (WriteScanner)."""
    sites: list[ServedSite] = []
    scanners: list[WriteScanner] = []

    def make(meter: MeterGatewayConfig = MeterGatewayConfig(), scans: int = 1, **modbus: Any) -> ServedSite:
        site = ServedSite(attrs.evolve(SERVER, **modbus), meter)
        assert site.problems == []
        sites.append(site)
        site.start()
        site.scan(scans)
        scanner = WriteScanner(site.image, lambda scan=site.scan: scan(1))
        site.scan = scanner.scan  # type: ignore[method-assign]  # the test's scans take turns with it
        scanners.append(scanner)
        return site

    yield make
    for scanner in scanners:
        scanner.stop()
    for site in sites:
        site.stop()


@pytest.fixture
def site(make_site: Callable[..., ServedSite]) -> ServedSite:
    return make_site()


@pytest.fixture
def make_client() -> Iterator[Callable[[int], ModbusTcpClient]]:
    clients: list[ModbusTcpClient] = []

    def make(port: int) -> ModbusTcpClient:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert client.connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(site: ServedSite, make_client: Callable[[int], ModbusTcpClient]) -> ModbusTcpClient:
    return make_client(site.server.port)
