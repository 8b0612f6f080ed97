"""Which meter answers: the identity register read alone at connect, the wrong variant refused,
the setup a profile needs (signed power) written at connect, and what the simulator serves as
the real meters do (FC 04 as FC 03, the identity code only to a read of that one register).

The register facts themselves are checked against public sources in test_profile_facts.py.
"""

from __future__ import annotations

import pytest
from io_kit import BAD, GOOD, modbus_driver, point, value_of, wait_until
from pymodbus.client import ModbusTcpClient

from runtime.io.modbus import codec


def raw_client(port: int) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=1.0)
    assert client.connect()
    return client


def test_the_ethernet_em24_profile_refuses_an_rs485_em24_naming_the_register_and_the_right_model(
        serve, run) -> None:  # type: ignore[no-untyped-def]
    rs485 = serve("carlo_gavazzi_em24_rs485")
    rs485.device.set("frequency", 50.0)  # at 0x0037; the E1 profile would read its frequency from 0x0033 (PF L2)
    driver = run(modbus_driver("carlo_gavazzi_em24", rs485.port, [point("hz", register="frequency")]))
    wait_until(lambda: "identity register" in driver._last_error, 5.0, "the identity refused")
    assert driver._last_error == (
        "WrongDevice: identity register model_id (holding 11, 0x000B) reads 71: not a EM24-DIN Ethernet (E1) "
        "(profile 'carlo_gavazzi_em24' accepts 1648-1653); it is a device of profile 'carlo_gavazzi_em24_rs485': "
        'use model = "carlo_gavazzi_em24_rs485"')
    assert driver.latest[0][1] is BAD


def test_the_rs485_profile_reads_the_rs485_frequency_and_counters(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24_rs485")
    meter.device.set("frequency", 49.9)
    meter.device.set("pf_l2", 0.87)
    meter.device.set("energy_import", 1_234_500.0)
    meter.device.set("energy_export", 67_800.0)
    driver = run(modbus_driver("carlo_gavazzi_em24_rs485", meter.port, [
        point("hz", register="frequency"), point("pf2", register="pf_l2"),
        point("e_in", register="energy_import"), point("e_out", register="energy_export")]))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert [value_of(driver, t) for t in ("hz", "pf2", "e_in", "e_out")] == \
        [pytest.approx(49.9), pytest.approx(0.87), pytest.approx(1_234_500.0), pytest.approx(67_800.0)]


def test_the_identity_code_is_answered_to_a_read_of_that_register_alone(serve) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    meter.device.set("v_l3_l1", 400.0)  # 4000 = 0x00000FA0, LSW first: 0x000A = 0x0FA0, 0x000B = 0x0000
    client = raw_client(meter.port)
    try:
        assert client.read_holding_registers(0x000B, count=1, device_id=1).registers == [1648]
        assert client.read_holding_registers(0x000A, count=2, device_id=1).registers == [0x0FA0, 0x0000]
    finally:
        client.close()


def test_the_em24_answers_victrons_packed_read_across_its_unassigned_counters(serve) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    meter.device.set("p_total", 1234.5)
    meter.device.set("energy_export", 42_000.0)  # Wh
    client = raw_client(meter.port)
    try:  # dbus-modbus-client reads 0x0000..0x004F at once: 0x003C-0x003F and 0x0046-0x004D are not in our map
        by_fc3 = client.read_holding_registers(0x0000, count=0x50, device_id=1)
        by_fc4 = client.read_input_registers(0x0000, count=0x50, device_id=1)
    finally:
        client.close()
    assert not by_fc3.isError() and not by_fc4.isError()
    words = by_fc3.registers
    assert codec.decode(words[0x28:0x2A], "int32", "big", "little") == 12345  # W sys, 0.1 W
    assert words[0x3C:0x40] == [0, 0, 0, 0] and words[0x46:0x4E] == [0] * 8
    assert codec.decode(words[0x4E:0x50], "int32", "big", "little") == 420  # kWh(-) TOT, 0.1 kWh
    assert by_fc4.registers == words


def test_the_em24_answers_fc4_with_the_holding_registers(serve) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24_rs485")
    meter.device.set("p_total", -2500.0)
    client = raw_client(meter.port)
    try:
        by_fc3 = client.read_holding_registers(0x0028, count=2, device_id=1).registers
        by_fc4 = client.read_input_registers(0x0028, count=2, device_id=1).registers
    finally:
        client.close()
    assert by_fc3 == by_fc4 and codec.decode(by_fc4, "int32", "big", "little") == -25000


def test_an_em24_in_another_application_is_set_to_h_at_connect(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    meter.device.set("application", 0)  # "A": power without sign
    driver = run(modbus_driver("carlo_gavazzi_em24", meter.port, [point("p", register="p_total")]))
    wait_until(lambda: driver.latest[0][1] is GOOD, 5.0, "the meter read")
    assert meter.device.get("application") == 7
    assert ("application", 7) in meter.device.writes


def test_a_meter_that_does_not_take_its_setup_stays_bad_with_the_reason(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em340")
    meter.device.set("measurement_mode", 0)  # "A"
    meter.device.faults.ignore_writes = True  # as with the front selector locked
    driver = run(modbus_driver("carlo_gavazzi_em340", meter.port, [point("p", register="p_total")]))
    wait_until(lambda: "setup register" in driver._last_error, 5.0, "the setup refused")
    assert "setup register measurement_mode (holding 0x1103) does not take 1" in driver._last_error
    assert driver.latest[0][1] is BAD


def test_the_em340_serial_is_one_character_per_register(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em340")
    client = raw_client(meter.port)
    try:
        words = client.read_holding_registers(0x5000, count=7, device_id=1).registers
    finally:
        client.close()
    assert words == [ord(c) for c in "BX34017"]  # high byte 0, as the real meter sends it
    assert codec.decode(words, "string_lo") == "BX34017"
    assert codec.decode(words, "string") == ""  # read two per register, the first byte is 0: nothing
