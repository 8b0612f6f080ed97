"""The simulated BMS: DBC rates, plant values, commands; across processes via python-can-remote."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import can
import pytest
from io_kit import GOOD, can_driver, can_point, value_of, wait_until

from ems.devsim.can_bms_sim import SimulatedBms
from ems.devsim.modbus_device import free_port
from runtime.config.io_map import parse_io_map
from runtime.config.structure import ConfigErrors
from runtime.io.can.dbc import load_dbc, resolve_dbc
from sim import Plant, PlantConfig
from sim.config import BatteryConfig

CBMS = load_dbc(str(resolve_dbc(family="cbms", version="2.5")))
CBMS_26 = load_dbc(str(resolve_dbc(family="cbms", version="2.6")))


def rack_of_400_cells() -> Plant:
    """The home plant with one rack of 25 modules x 16 cells: 400 cells in series, 1280 V nominal."""
    return Plant(PlantConfig.home(battery=BatteryConfig(modules_per_rack=25, cells_per_module=16)))


def test_simulated_bms_sends_each_message_at_its_dbc_rate() -> None:
    channel = f"rate-{uuid.uuid4().hex[:8]}"
    tx = can.Bus(interface="virtual", channel=channel)
    rx = can.Bus(interface="virtual", channel=channel)
    bms = SimulatedBms(CBMS, tx, Plant(PlantConfig.commercial()), racks=4)
    seen: Counter[int] = Counter()
    bms.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            frame = rx.recv(0.05)
            if frame is not None:
                seen[frame.arbitration_id] += 1
    finally:
        bms.stop()
        tx.shutdown()
        rx.shutdown()
    assert 19 <= seen[0x350] <= 22  # PackStatus, 100 ms
    assert 9 <= seen[0x363] <= 11  # RackStatus of rack 3, 200 ms
    assert 3 <= seen[0x372] <= 5  # RackCells of rack 2, 500 ms
    assert 1 <= seen[0x353] <= 3  # PackAlarms, 1000 ms
    assert seen[0x3F0] == 0  # the command message is the EMS's to send


def test_plant_values_and_cells_arrive_and_the_sleep_command_reaches_the_plant(run) -> None:  # type: ignore[no-untyped-def]
    channel = f"plant-{uuid.uuid4().hex[:8]}"
    plant = Plant(PlantConfig.commercial())
    bus = can.Bus(interface="virtual", channel=channel)
    bms = SimulatedBms(CBMS, bus, plant, racks=4)
    bms.start()
    try:
        driver = run(can_driver(channel, [
            can_point("soc", message="PackStatus", signal="PackSoc"),
            can_point("rack3_soc", message="RackStatus", signal="RackSoc", rack=3),
            can_point("cell5", message="CellVoltages", signal="Cell05_V", rack=1),
            can_point("state", message="PackStatus", signal="PackState")],
            [can_point("sleep", is_bool=True, message="BmsCommand", signal="SleepRequest")]))
        wait_until(lambda: all(s[1] is GOOD for s in driver.latest), timeout_s=4.0)
        assert value_of(driver, "soc") == pytest.approx(plant.get("bms.soc_pct"), abs=0.01)
        assert value_of(driver, "rack3_soc") == pytest.approx(plant.get("bms.racks.3.soc_pct"), abs=0.01)
        assert value_of(driver, "cell5") == pytest.approx(float(plant.battery.cell_v[1][4]), abs=0.001)
        driver.stage((True,))
        wait_until(lambda: plant.get("bms.sleep_cmd") is True)
        plant.step(0.1)
        wait_until(lambda: value_of(driver, "state") == 4)  # the BMS reports "sleep"
    finally:
        bms.stop()
        bus.shutdown()


def test_every_cell_of_a_400_cell_plant_rack_reaches_the_driver_with_v2_6(run) -> None:  # type: ignore[no-untyped-def]
    channel = f"cells-{uuid.uuid4().hex[:8]}"
    plant = rack_of_400_cells()
    bus = can.Bus(interface="virtual", channel=channel)
    bms = SimulatedBms(CBMS_26, bus, plant, racks=1)
    bms.start()
    try:
        driver = run(can_driver(channel, [can_point(f"cell{n}", message="CellVoltages", signal=f"Cell{n:02d}_V",
                                                    rack=0) for n in range(1, 401)], version="2.6", racks=1))
        wait_until(lambda: all(s[1] is GOOD for s in driver.latest), timeout_s=10.0)  # 134 pages x 20 ms
        plant_v = [round(float(v), 3) for v in plant.battery.cell_v[0]]
        assert len(plant_v) == 400
        assert [value_of(driver, f"cell{n}") for n in range(1, 401)] == pytest.approx(plant_v, abs=0.0006)
    finally:
        bms.stop()
        bus.shutdown()


def test_simulator_cycles_only_the_pages_of_the_plant_cells() -> None:
    bus = can.Bus(interface="virtual", channel=f"pages-{uuid.uuid4().hex[:8]}")
    try:
        bms = SimulatedBms(CBMS_26, bus, rack_of_400_cells(), racks=1)
        message = CBMS_26.get_message_by_name("CellVoltages")
        pages = [bms.values_for(message, 0)["CellPage"] for _ in range(268)]  # type: ignore[index]
    finally:
        bus.shutdown()
    assert pages == [*range(134), *range(134)]  # cells 1..402 of the 768 the layout addresses


def test_simulator_sends_the_16_bit_number_of_the_lowest_cell_400() -> None:
    plant = rack_of_400_cells()
    plant.set("battery.inject_cell_index", 399)  # the last cell of the rack
    plant.set("battery.inject_cell_soc_offset_pct", -30.0)
    plant.step(1.1)  # a BMS cell scan
    bus = can.Bus(interface="virtual", channel=f"numbers-{uuid.uuid4().hex[:8]}")
    try:
        bms = SimulatedBms(CBMS_26, bus, plant, racks=1)
        values = bms.values_for(CBMS_26.get_message_by_name("PackCellNumbers"), None)
    finally:
        bus.shutdown()
    assert values is not None and values["MinCellVNum"] == 400
    per_module = 16
    assert values["MaxCellTNum"] == (plant.get("bms.max_cell_temp_module") * per_module
                                     + plant.get("bms.max_cell_temp_cell") + 1)


@pytest.fixture
def can_server():  # type: ignore[no-untyped-def]
    """python-can-remote serving a virtual bus in its own process, on a free 127.0.0.1 port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "can_remote", "-i", "virtual", "-c", "0", "-H", "127.0.0.1",
                             "-p", str(port), "-v"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout_s=10.0)
    yield f"ws://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(5)


def test_bms_frames_cross_processes_through_python_can_remote(can_server, run) -> None:  # type: ignore[no-untyped-def]
    plant = Plant(PlantConfig.home())
    bus = can.Bus(interface="remote", channel=can_server)
    bms = SimulatedBms(CBMS, bus, plant, racks=1)
    bms.start()
    try:
        driver = run(can_driver(can_server, [can_point("soc", message="PackStatus", signal="PackSoc"),
                                             can_point("vmax", message="PackCells", signal="MaxCellV")],
                                [can_point("contactor", is_bool=True, message="BmsCommand",
                                           signal="ContactorRequest")], interface="remote", racks=1))
        wait_until(lambda: all(s[1] is GOOD for s in driver.latest), timeout_s=5.0)
        assert value_of(driver, "soc") == pytest.approx(plant.get("bms.soc_pct"), abs=0.01)
        assert value_of(driver, "vmax") == pytest.approx(plant.get("bms.max_cell_v"), abs=0.001)
        plant.set("bms.contactor_cmd", False)
        driver.stage((True,))
        wait_until(lambda: plant.get("bms.contactor_cmd") is True, timeout_s=3.0)
    finally:
        bms.stop()
        bus.shutdown()


SITE = """\
[site]
id = "can"

[[devices]]
name = "bms"
driver = "can_bms"
[devices.can_bms]
interface = "virtual"
channel = "x"
family = "cbms"
version = "2.4"
racks = 2

[[tags]]
name = "soc_pct"
dtype = "float32"
area = "input"
io = { device = "bms", message = "PackStatus", signal = "PackSocc" }

[[tags]]
name = "rack_soc"
dtype = "float32"
area = "input"
io = { device = "bms", message = "RackStatus", signal = "RackSoc" }

[[tags]]
name = "rack5_soc"
dtype = "float32"
area = "input"
io = { device = "bms", message = "RackStatus", signal = "RackSoc", rack = 5 }

[[tags]]
name = "sleep_cmd"
dtype = "bool"
area = "output"
safe_value = false
io = { device = "bms", message = "PackStatus", signal = "Alarm" }

[[tags]]
name = "cell1"
dtype = "float32"
area = "input"
io = { device = "bms", message = "CellVoltages", signal = "Cell01_V", rack = 0 }
"""


def test_io_map_checks_can_bindings_against_the_dbc_version() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(SITE, "can.toml")
    found = [str(e) for e in exc.value.errors]
    expected = [
        "can.toml:18: tags[0].io.signal: message 'PackStatus' has no signal 'PackSocc' (did you mean 'PackSoc'?)",
        "can.toml:24: tags[1].io.rack: message 'RackStatus' is per rack: give rack = <n>",
        "can.toml:30: tags[2].io.rack: rack 5 is beyond racks = 2",
        "can.toml:37: tags[3].io.message: message 'PackStatus' is sent by the BMS",
        "can.toml:43: tags[4].io.message: the DBC has no message 'CellVoltages'",  # 2.4 has no cell pages
    ]
    for prefix in expected:
        assert any(m.startswith(prefix) for m in found), (prefix, found)


SITE_26 = """\
[site]
id = "can"

[[devices]]
name = "bms"
driver = "can_bms"
[devices.can_bms]
interface = "virtual"
channel = "x"
family = "nbms"
version = "2.6"
racks = 1

[[tags]]
name = "cell400_v"
dtype = "float32"
area = "input"
io = { device = "bms", message = "CellVoltages", signal = "Cell400_V", rack = 0 }

[[tags]]
name = "hottest_cell"
dtype = "uint16"
area = "input"
io = { device = "bms", message = "NbmsCellNumbers", signal = "MaxCellTNum" }
"""


def test_the_site_version_selects_the_layout_its_bindings_are_checked_against() -> None:
    site = parse_io_map(SITE_26, "can.toml")
    assert site.device_options["bms"].dbc_path.endswith("nbms_v2.6.dbc")
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(SITE_26.replace('version = "2.6"', 'version = "2.5"'), "can.toml")
    assert [str(e) for e in exc.value.errors] == [
        "can.toml:18: tags[0].io.signal: message 'CellVoltages' has no signal 'Cell400_V' (did you mean 'Cell40_V'?)",
        "can.toml:24: tags[1].io.message: the DBC has no message 'NbmsCellNumbers' (did you mean 'NbmsCells'?)"]
