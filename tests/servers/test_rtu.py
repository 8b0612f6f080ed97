"""Modbus RTU on a serial line: two pseudo-terminals joined back to back stand in for RS-485."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from modbus_kit import ServedSite

from runtime.config.schema import MeterGatewayConfig, SerialPortConfig

serial = pytest.importorskip("serial", reason="Modbus RTU needs pyserial")
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

DT = ModbusSerialClient.DATATYPE


from testkit.serial_line import NullModem


@pytest.fixture
def line() -> Iterator[NullModem]:
    modem = NullModem()
    yield modem
    modem.close()


@pytest.fixture
def rtu_site(make_site: Callable[..., ServedSite], line: NullModem) -> ServedSite:
    return make_site(serial=SerialPortConfig(port=line.a, baudrate=19200), unit_ids=(5,),
                     write_allow=("127.0.0.1", "rtu"))


@pytest.fixture
def rtu_client(rtu_site: ServedSite, line: NullModem) -> Iterator[ModbusSerialClient]:
    client = ModbusSerialClient(port=line.b, baudrate=19200, timeout=0.5, retries=0)
    assert client.connect()
    yield client
    client.close()


def test_the_soc_reads_over_rtu(rtu_client: ModbusSerialClient):
    response = rtu_client.read_input_registers(0, count=2, device_id=5)
    assert rtu_client.convert_from_registers(response.registers, DT.FLOAT32) == 55.5


def test_a_setpoint_written_over_rtu_applies_at_the_next_scan(rtu_site: ServedSite, rtu_client: ModbusSerialClient):
    registers = rtu_client.convert_to_registers(-800.0, DT.FLOAT32)
    assert not rtu_client.write_registers(2, registers, device_id=5).isError()
    rtu_site.scan()
    assert rtu_site.image["p_setpoint_w"].value == -800.0


def test_another_unit_id_on_the_line_gets_no_answer(rtu_client: ModbusSerialClient):
    with pytest.raises(ModbusIOException, match="No response received"):
        rtu_client.read_input_registers(0, count=2, device_id=6)


def test_rtu_writes_need_rtu_in_the_allow_list(make_site, line):  # type: ignore[no-untyped-def]
    site = make_site(serial=SerialPortConfig(port=line.a), unit_ids=(5,))  # allow-list: 127.0.0.1 only
    client = ModbusSerialClient(port=line.b, baudrate=19200, timeout=0.5, retries=0)
    assert client.connect()
    try:
        assert client.write_register(5, 20, device_id=5).exception_code == 1
        assert site.server.store.rejected == 1
    finally:
        client.close()


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
def test_mbpoll_reads_the_meter_gateway_over_rtu(make_site, line):  # type: ignore[no-untyped-def]
    site = make_site(meter=MeterGatewayConfig(enabled=True, port=0, serial=SerialPortConfig(port=line.a, baudrate=9600),
                                              quantities={"w_total": "grid_power_w"}))
    done = subprocess.run(["mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-t", "3:int", "-r", "41",
                           "-1", "-o", "2", line.b], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"[41]: \t{round(site.image['grid_power_w'].value * 10)}" in done.stdout  # 0028h, low word first


def rtu_request(path: str, frame: bytes) -> bytes:
    """One raw RTU request (unit id, PDU; the CRC is added) and whatever comes back within 0.5 s."""
    from pymodbus.framer import FramerRTU

    crc = FramerRTU.compute_CRC(frame).to_bytes(2, "big")
    with serial.Serial(path, 19200, timeout=0.5) as port:
        port.write(frame + crc)
        answer = port.read(5)
    return answer


def test_a_coil_value_other_than_0000_or_ff00_is_exception_03_over_rtu(rtu_site: ServedSite, line: NullModem):
    answer = rtu_request(line.b, bytes([5, 0x05, 0, 1, 0x12, 0x34]))  # unit 5, coil 1 (run_enable) := 0x1234
    assert answer[:3] == bytes([5, 0x85, 0x03])
    rtu_site.scan()
    assert rtu_site.image["run_enable"].value is False


def test_a_read_of_0_registers_is_exception_03_over_rtu(rtu_site: ServedSite, line: NullModem):
    assert rtu_request(line.b, bytes([5, 0x03, 0, 0, 0, 0]))[:3] == bytes([5, 0x83, 0x03])


def test_read_exception_status_is_exception_01_over_rtu(rtu_site: ServedSite, line: NullModem):
    assert rtu_request(line.b, bytes([5, 0x07]))[:3] == bytes([5, 0x87, 0x01])
