"""The simulated devices act at the moment of a write or a revert, not at the plant's next step.

A real inverter's control loop runs every few milliseconds; the simulator's plant steps every
50 ms. Stepped only on its period, a setpoint written inside a step would act from that step's
start and a revert timer would run out at the next step, both up to a step off: errors a
controller cannot model (a cluster's new leader times a dead unit's revert to the millisecond).
Here the plant steps every 5 s, so a 1 s revert timed by the period would come 1 to 6 s late.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from io_kit import wait_until
from pymodbus.client import ModbusTcpClient

from ems.devsim.modbus_device import free_port
from ems.devsim.runner import WRITE_STEP_S, DeviceSimulation
from runtime.config.io_map import load_io_map

ROOT = Path(__file__).resolve().parents[2]
STEP_S = 5.0
REVERT_S = 1
REVERT_TIME, MODE, OUT_RATE, IN_RATE = 40163, 40153, 40160, 40161  # SunSpec model 124 (the profile's addresses)


@pytest.fixture
def step_s() -> float:
    return STEP_S


@pytest.fixture
def simulation(tmp_path: Path, step_s: float) -> Iterator[tuple[DeviceSimulation, ModbusTcpClient]]:
    """io_maps/sim_devices.toml's devices on free ports, the plant stepped every `step_s`."""
    text = (ROOT / "io_maps" / "sim_devices.toml").read_text()
    for old in (15020, 15021, 15030):
        text = text.replace(str(old), str(free_port()))
    path = tmp_path / "sim_devices.toml"
    path.write_text(text)
    io_map = load_io_map(path)
    sim = DeviceSimulation(io_map, step_s=step_s)
    sim.start()
    port = next(d.options.port for name, d in io_map.device_options.items() if name == "inverter")
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2.0)
    assert client.connect()
    try:
        yield sim, client
    finally:
        client.close()
        sim.stop()


def charge(client: ModbusTcpClient, pct: int) -> None:
    """Forced charge at pct % of WChaMax (5000 W), guarded by a REVERT_S revert timer (the
    rates in 0.1 %: InOutWRte_SF -1)."""
    assert not client.write_register(REVERT_TIME, REVERT_S, device_id=1).isError()
    assert not client.write_registers(MODE, [3], device_id=1).isError()
    assert not client.write_registers(OUT_RATE, [(-10 * pct) & 0xFFFF, 10 * pct], device_id=1).isError()


def test_a_write_acts_from_its_moment(simulation) -> None:  # type: ignore[no-untyped-def]
    sim, client = simulation
    begun = time.monotonic()
    wait_until(lambda: time.monotonic() - begun >= 0.2, timeout_s=2.0)  # the plant's next step is seconds away
    charge(client, 20)
    # stepped to the write, within WRITE_STEP_S: without it the plant would still be at 0 s
    assert sim.plant.t_s >= 0.2 - WRITE_STEP_S
    assert sim.plant.t_s < STEP_S


def test_a_revert_comes_at_its_deadline(simulation) -> None:  # type: ignore[no-untyped-def]
    sim, client = simulation
    charge(client, 20)
    last_write = time.monotonic()
    inverter = next(m.server.device for m in sim.modbus if m.name == "inverter")
    assert inverter.get("out_w_rate_pct") == pytest.approx(-20.0)
    wait_until(lambda: inverter.get("out_w_rate_pct") == pytest.approx(100.0), timeout_s=10.0)  # its revert value
    late_s = time.monotonic() - last_write - REVERT_S
    assert -0.02 <= late_s <= 0.1  # a wait_until poll and a loaded machine, not a 5 s step


@pytest.mark.parametrize("step_s", [0.05])
def test_writes_faster_than_the_step_do_not_hold_up_the_registers_refresh(simulation) -> None:  # type: ignore[no-untyped-def]
    sim, client = simulation
    link = next(m.link for m in sim.modbus if m.name == "inverter")
    refreshes: list[float] = []
    refresh = link.refresh
    link.refresh = lambda: refreshes.append(time.monotonic()) or refresh()  # a spy on the stepper's refreshes
    started = time.monotonic()
    wait_until(lambda: charge(client, 20) or time.monotonic() - started >= 1.0, timeout_s=5.0, poll_s=0.01)
    assert len(refreshes) >= 0.6 / 0.05  # every 50 ms (with room for a loaded machine), though written every 10 ms
