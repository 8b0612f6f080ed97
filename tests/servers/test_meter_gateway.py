"""The meter gateway: the site meter's readings in the Carlo Gavazzi EM24 layouts.

EM24 values are INT32 with the low word first (INT16 for PF and Hz), weighted: V x10,
A x1000, W/VA/var x10, PF x1000, Hz x10, kWh/kvarh x10. Function codes 03 and 04 read the
same registers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from modbus_kit import SERVER, ServedSite, meter_reading
from pymodbus.client import ModbusTcpClient

from runtime.config.schema import MeterGatewayConfig

QUANTITIES = {
    "w_total": "grid_power_w", "v_l1n": "grid_voltage_l1_v", "a_l1": "grid_current_l1_a", "hz": "grid_frequency_hz",
    "kwh_import": "grid_import_kwh", "kwh_export": "grid_export_wh", "pf_total": "grid_pf",
    "var_total": "grid_reactive_kvar",
}
GATEWAY = MeterGatewayConfig(enabled=True, port=0, unit_ids=(2,), quantities=QUANTITIES, serial_number="CG0042")


def int32_lsw_first(registers: list[int]) -> int:
    raw = registers[0] | (registers[1] << 16)
    return raw - 2**32 if raw >= 2**31 else raw


def int16(register: int) -> int:
    return register - 2**16 if register >= 2**15 else register


@pytest.fixture
def gateway_site(make_site: Callable[..., ServedSite]) -> ServedSite:
    return make_site(meter=GATEWAY, scans=2)


@pytest.fixture
def meter(gateway_site: ServedSite, make_client: Callable[[int], ModbusTcpClient]) -> ModbusTcpClient:
    return make_client(gateway_site.gateway.port)


def read(meter: ModbusTcpClient, address: int, count: int, function: int = 4) -> list[int]:
    read = meter.read_input_registers if function == 4 else meter.read_holding_registers
    response = read(address, count=count, device_id=2)
    assert not response.isError(), response
    return response.registers


def test_total_power_is_int32_low_word_first_in_tenths_of_a_watt(gateway_site: ServedSite, meter: ModbusTcpClient):
    expected = round(gateway_site.image["grid_power_w"].value * 10)
    assert int32_lsw_first(read(meter, 0x28, 2)) == expected


def test_an_exported_power_reads_negative(gateway_site: ServedSite, meter: ModbusTcpClient):
    gateway_site.meter_source = lambda now: [-2345.6] + meter_reading(now)[1:]
    gateway_site.scan()
    assert int32_lsw_first(read(meter, 0x28, 2)) == -23456


def test_the_whole_e1_block_in_one_read(gateway_site: ServedSite, meter: ModbusTcpClient):
    values = {name: gateway_site.image[tag].value for name, tag in QUANTITIES.items()}
    block = read(meter, 0x00, 0x50)
    assert int32_lsw_first(block[0x00:0x02]) == round(values["v_l1n"] * 10)
    assert int32_lsw_first(block[0x0C:0x0E]) == round(values["a_l1"] * 1000)
    assert int32_lsw_first(block[0x2C:0x2E]) == -15000  # -1.5 kvar as var x10
    assert int16(block[0x31]) == 970  # PF 0.97 x1000
    assert block[0x33] == 500  # 50.02 Hz x10
    assert int32_lsw_first(block[0x34:0x36]) == round(values["kwh_import"] * 10)
    assert int32_lsw_first(block[0x4E:0x50]) == 40000  # 4,000,000 Wh = 4,000 kWh, x10


def test_function_03_and_04_read_the_same_registers(meter: ModbusTcpClient):
    assert read(meter, 0x00, 0x50, function=3) == read(meter, 0x00, 0x50, function=4)


def test_a_quantity_not_mapped_reads_zero(meter: ModbusTcpClient):
    assert read(meter, 0x02, 2) == [0, 0]  # V L2-N


def test_a_one_register_read_of_000b_answers_the_model_code(meter: ModbusTcpClient):
    assert read(meter, 0x0B, 1) == [1651]  # EM24DINAV53XE1X
    assert read(meter, 0x0A, 2) == [0, 0]  # as part of a wider read it is V L3-L1


def test_identity_registers_answer_like_an_em24_e1(meter: ModbusTcpClient):
    assert read(meter, 0x1002, 1) == [0]  # measuring system 3Pn
    assert read(meter, 0xA000, 1) == [7]  # application H
    serial = read(meter, 0x5000, 7)
    assert bytes(b for r in serial for b in (r >> 8, r & 0xFF)).rstrip(b"\0") == b"CG0042"


def test_a_read_past_the_block_is_exception_02(meter: ModbusTcpClient):
    assert meter.read_input_registers(0x4E, count=4, device_id=2).exception_code == 2


def test_coils_are_exception_01(meter: ModbusTcpClient):
    assert meter.read_coils(0, count=1, device_id=2).exception_code == 1


def test_writes_are_exception_02(meter: ModbusTcpClient):
    assert meter.write_register(0xA000, 7, device_id=2).exception_code == 2


def test_the_gateway_answers_its_own_unit_id_only(meter: ModbusTcpClient):
    assert meter.read_input_registers(0x28, count=2, device_id=1).exception_code == 0x0B


def test_a_silent_meter_is_exception_04_until_it_answers_again(gateway_site: ServedSite, meter: ModbusTcpClient,
                                                               caplog: Any):
    gateway_site.meter_online = False
    with caplog.at_level(logging.INFO, logger="runtime.servers.meter_gateway"):
        gateway_site.scan(11)  # the meter's tags turn BAD at once
        for _ in range(3):
            assert meter.read_input_registers(0x28, count=2, device_id=2).exception_code == 4
        assert read(meter, 0x5000, 7)[0] == 0x4347  # identity still answers
        gateway_site.meter_online = True
        gateway_site.scan(40)  # the driver retries after its backoff
        assert int32_lsw_first(read(meter, 0x28, 2)) == round(gateway_site.image["grid_power_w"].value * 10)
    messages = [r.getMessage() for r in caplog.records if r.name == "runtime.servers.meter_gateway"]
    assert messages == ["meter gateway: the site meter's values are not GOOD; reads answered with exception 04 "
                        "until they are", "meter gateway: the site meter's values are GOOD again"]


def test_the_em24_din_layout_moves_pf_hz_and_the_meters(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(meter=MeterGatewayConfig(enabled=True, port=0, layout="em24_din", quantities=QUANTITIES))
    meter = make_client(site.gateway.port)
    block = meter.read_input_registers(0, count=0x60, device_id=1).registers
    assert int32_lsw_first(block[0x28:0x2A]) == round(site.image["grid_power_w"].value * 10)
    assert int16(block[0x35]) == 970
    assert block[0x37] == 500
    assert int32_lsw_first(block[0x3E:0x40]) == round(site.image["grid_import_kwh"].value * 10)
    assert int32_lsw_first(block[0x5C:0x5E]) == 40000
    assert meter.read_input_registers(0x0B, count=1, device_id=1).registers == [72]  # EM24-DIN AV5
    assert meter.read_input_registers(0x1101, count=2, device_id=1).registers == [7, 0]  # application H, 3Pn


# --- configuration ----------------------------------------------------------------------------------------
def problems(**gateway: Any) -> list[tuple[tuple, str]]:  # type: ignore[type-arg]
    """What building the site finds wrong with a [meter_gateway] section (nothing is started)."""
    return ServedSite(SERVER, MeterGatewayConfig(enabled=True, port=0, **gateway)).problems


def test_an_unknown_quantity_is_a_config_error():
    (path, message), = problems(quantities={"watts": "grid_power_w"})
    assert path == ("meter_gateway", "quantities", "watts")
    assert message.startswith("the em24_e1 layout has no quantity 'watts'")


def test_an_unknown_tag_is_a_config_error():
    assert problems(quantities={"w_total": "grid_pwr_w"}) == [
        (("meter_gateway", "quantities", "w_total"), "no tag named 'grid_pwr_w'")]


def test_a_tag_in_the_wrong_unit_is_a_config_error():
    assert problems(quantities={"w_total": "grid_voltage_l1_v"}) == [
        (("meter_gateway", "quantities", "w_total"), "tag 'grid_voltage_l1_v' has unit 'V'; w_total takes 'W', 'kW'")]


def test_a_gateway_without_quantities_is_a_config_error():
    assert problems() == [(("meter_gateway", "quantities"),
                           "map at least one layout quantity to a tag (w_total = \"grid_power_w\")")]
