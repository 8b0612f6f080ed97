"""The whole chain: `ems simulate-devices` in its own process serving io_maps/sim_devices.toml
(Modbus meter and inverter, CAN BMS over python-can-remote), the real drivers and the
controller's programs in this process. SOC, power and cell data must reach the image, and
the controller's setpoints must come back as measured power."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from io_kit import wait_until
from pymodbus.client import ModbusTcpClient

from ems.devsim.modbus_device import free_port
from plc.tags import Quality
from runtime.clock import RealClock
from runtime.config.io_map import load_io_map
from runtime.site import build_site

ROOT = Path(__file__).resolve().parents[2]
GOOD = Quality.GOOD


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def site_file(tmp_path: Path) -> tuple[Path, list[int]]:
    """io_maps/sim_devices.toml on free ports (the shipped file uses 15020, 15021, 15030)."""
    text = (ROOT / "io_maps" / "sim_devices.toml").read_text()
    ports = [free_port() for _ in range(3)]
    for old, new in zip((15020, 15021, 15030), ports):
        text = text.replace(str(old), str(new))
    text = text.replace('data_dir = "var/sim-devices"', f'data_dir = "{tmp_path}"')
    path = tmp_path / "sim_devices.toml"
    path.write_text(text)
    return path, ports


@pytest.fixture
def simulator(site_file):  # type: ignore[no-untyped-def]
    path, ports = site_file
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "simulate-devices", "--io-map", str(path),
                             "--duration", "120", "--log-level", "WARNING"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: all(listening(p) for p in ports), timeout_s=20.0)
        yield path
    finally:
        proc.terminate()
        proc.wait(10)


def test_simulators_real_drivers_and_controller_run_the_home_site(simulator, caplog) -> None:  # type: ignore[no-untyped-def]
    site = build_site(load_io_map(simulator), RealClock())
    image = site.image
    site.start()
    runner = threading.Thread(target=site.engine.run, args=(25.0,), name="scan")
    runner.start()
    try:
        cells = [f"cell_{n:02d}_v" for n in range(1, 17)]
        wanted = ["soc_pct", "soh_pct", "grid_power_w", "inverter_p_w", "cell_v_min_v", "cell_v_max_v", *cells]
        wait_until(lambda: all(image[t].quality is GOOD for t in wanted), timeout_s=8.0)
        assert 45.0 < image["soc_pct"].value < 55.0  # the home plant starts at 50 %
        assert all(3.0 < image[c].value < 3.6 for c in cells)  # LFP cells at mid SOC, from the CAN pages
        assert image["cell_v_min_v"].value <= min(image[c].value for c in cells) + 0.002
        assert image["bms_rack0_online"].value is True
        start_import = image["grid_power_w"].value
        assert start_import > 50.0  # night-time load, no PV: the house imports
        # self-consumption: the controller runs the inverter and discharges to cover the load
        wait_until(lambda: image["inverter_run_cmd"].value is True and image["inverter_p_w"].value > 50.0,
                   timeout_s=8.0)
        wait_until(lambda: abs(image["grid_power_w"].value) < 0.5 * start_import, timeout_s=8.0)
        # the measured inverter power follows the setpoint the controller wrote through SunSpec OutWRte
        wait_until(lambda: abs(image["inverter_p_w"].value - image["inverter_p_setpoint_w"].value) < 60.0,
                   timeout_s=6.0)
        assert image["inverter_sunspec_state"].value == 4  # SunSpec "MPPT" = running
    finally:
        site.engine.stop()
        runner.join(5.0)
        site.stop()
    stats = site.engine.stats.summary()
    assert stats["overruns"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert all(d.fault_count == 0 for d in site.drivers.values()), warnings


def inverter_p_ac_w(port: int) -> float | None:
    """The simulated inverter's SunSpec W (40084, int16, W_SF 0), read by a plain pymodbus client."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=1.0)
    try:
        if not client.connect():
            return None
        reply = client.read_holding_registers(40084, count=1, device_id=1)
        if reply.isError():
            return None
        return float(client.convert_from_registers(reply.registers, client.DATATYPE.INT16))
    finally:
        client.close()


def test_the_inverter_drops_to_0_w_by_itself_when_the_controller_is_killed(simulator, site_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = simulator.read_text()
    assert "revert_s" not in text  # the shipped file relies on the 10 s default; here a short one
    text = text.replace('model = "sunspec_inverter_storage"', 'model = "sunspec_inverter_storage"\nrevert_s = 2.0', 1)
    io_map = tmp_path / "short_revert.toml"
    io_map.write_text(text)
    inverter_port = site_file[1][1]
    controller = subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map),
                                   "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (inverter_p_ac_w(inverter_port) or 0.0) > 150.0, 30.0, "the controller discharges")
    finally:
        controller.kill()  # SIGKILL: no shutdown path runs
        controller.wait(10)
    killed = time.monotonic()
    wait_until(lambda: abs(inverter_p_ac_w(inverter_port) or 1e9) < 20.0, 10.0, "the inverter reverts to 0 W")
    assert time.monotonic() - killed < 2.0 + 1.5  # revert_s, plus the simulated inverter's ramp
