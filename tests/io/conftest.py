"""Fixtures for the IO tests: simulated devices on 127.0.0.1 and drivers stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from io_kit import profile

from ems.devsim.loop import LoopThread
from ems.devsim.modbus_device import DeviceServer
from runtime.io.driver import Driver


@pytest.fixture(scope="session")
def sim_loop() -> Iterator[LoopThread]:
    loop = LoopThread("test-devices")
    yield loop
    loop.stop()


@pytest.fixture
def serve(sim_loop: LoopThread) -> Iterator[Callable[..., DeviceServer]]:
    """Start a profile-driven Modbus device server on a free 127.0.0.1 port."""
    servers: list[DeviceServer] = []

    def start(model: str, **kwargs: Any) -> DeviceServer:
        server = DeviceServer(profile(model), **kwargs)
        sim_loop.run(server.start())
        servers.append(server)
        return server

    yield start
    for server in servers:
        sim_loop.run(server.stop())


@pytest.fixture
def run() -> Iterator[Callable[[Driver], Driver]]:
    """Start a driver's poll thread; stop it at teardown."""
    drivers: list[Driver] = []

    def start(driver: Driver) -> Driver:
        driver.start()
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.stop()
