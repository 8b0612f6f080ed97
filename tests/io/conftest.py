"""Fixtures for the IO tests: simulated devices on 127.0.0.1 and drivers stopped at teardown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from io_kit import profile

from ems.devsim.loop import LoopThread
from ems.devsim.modbus_device import DeviceServer
from ems.devsim.plant_link import PlantLink
from runtime.io.driver import Driver
from sim import Plant, PlantConfig
from sim.config import InverterConfig


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


@attrs.define
class PlantDevice:
    """A simulated device bound to a plant, as `ems simulate-devices` serves it."""

    server: DeviceServer
    plant: Plant
    lock: threading.Lock

    def get(self, variable: str) -> Any:
        with self.lock:
            return self.plant.get(variable)


@pytest.fixture
def serve_plant(sim_loop: LoopThread) -> Iterator[Callable[[str], PlantDevice]]:
    """Serve a profile bound to a home plant (5 kW inverter, running; 0.1 s start delays instead
    of 3 s), the plant stepped in real time every 20 ms and the registers refreshed after each
    step, as ems/devsim/runner.py does."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    servers: list[DeviceServer] = []

    def start(model: str) -> PlantDevice:
        plant = Plant(PlantConfig.home(inverter=InverterConfig(ready_delay_s=0.1, start_delay_s=0.1)))
        plant.set("inverter.run_cmd", True)
        server = DeviceServer(profile(model))
        sim_loop.run(server.start())
        servers.append(server)
        lock = threading.Lock()
        link = PlantLink(server.device, plant, lock)
        link.refresh()

        def step() -> None:
            last = time.monotonic()
            while not stop.wait(0.02):
                now = time.monotonic()
                with lock:
                    plant.step(now - last)
                last = now
                link.refresh()
        thread = threading.Thread(target=step, name=f"plant-{model}", daemon=True)
        thread.start()
        threads.append(thread)
        return PlantDevice(server, plant, lock)

    yield start
    stop.set()
    for thread in threads:
        thread.join(2.0)
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
