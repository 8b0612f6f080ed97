"""The tag server against a running controller: every tag read, every writable tag written,
every rejection path, unit ids and the server's life cycle."""

from __future__ import annotations

import logging
import math
import socket

import pytest
from modbus_kit import TAGS, ServedSite, exception_code, read_tag, wobble, write_tag
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException

from plc.tags import Access, DType

DT = ModbusTcpClient.DATATYPE


# --- reads -------------------------------------------------------------------------------------------
def test_start_returns_with_the_server_listening(site: ServedSite):
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=1):
        pass


def test_every_addressed_tag_reads_as_the_image_holds_it(site: ServedSite, client: ModbusTcpClient):
    site.scan(3)
    snapshot = site.image.snapshot
    assert snapshot is not None
    addressed = [t.spec for t in site.image if t.spec.modbus is not None]
    assert len(addressed) == len(TAGS) + 32  # every kit tag and the 32 runtime tags (scan statistics, watchdog,
    # priority, clock, storage, cloud link)
    for spec in addressed:
        expected = snapshot.value(spec.name)
        got = read_tag(client, spec)
        if spec.dtype is DType.FLOAT32:
            assert got == pytest.approx(expected, rel=1e-6), spec.name
        else:
            assert got == expected, spec.name


def test_soc_reads_as_a_float32_from_input_register_0(client: ModbusTcpClient):
    response = client.read_input_registers(0, count=2, device_id=1)
    assert client.convert_from_registers(response.registers, DT.FLOAT32) == 55.5


def test_scan_statistics_sit_in_the_reserved_block_from_9000(site: ServedSite, client: ModbusTcpClient):
    site.scan(4)
    response = client.read_input_registers(9000, count=2, device_id=1)
    assert client.convert_from_registers(response.registers, DT.UINT32) == 5  # scan_count
    period = client.read_input_registers(9020, count=2, device_id=1)
    assert client.convert_from_registers(period.registers, DT.FLOAT32) == pytest.approx(0.1)  # scan_period_s


def test_low_word_first_serves_32_bit_values_swapped(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(word_order="low_first")
    client = make_client(site.server.port)
    response = client.read_input_registers(36, count=2, device_id=1)  # energy_today_wh = -1234
    assert client.convert_from_registers(response.registers, DT.INT32, word_order="little") == -1234


def test_a_read_past_the_last_mapped_register_is_exception_02(client: ModbusTcpClient):
    assert exception_code(client.read_input_registers(9082, count=2, device_id=1)) == 2  # 9082 is the last
    assert exception_code(client.read_holding_registers(9000, count=2, device_id=1)) == 2  # no holding there


def test_a_read_of_a_unit_id_not_served_is_exception_0b(client: ModbusTcpClient):
    assert exception_code(client.read_input_registers(0, count=2, device_id=7)) == 0x0B


def test_two_unit_ids_both_answer(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(unit_ids=(1, 3))
    client = make_client(site.server.port)
    for unit in (1, 3):
        assert client.read_input_registers(0, count=2, device_id=unit).registers == [0x425E, 0x0000]


def test_before_the_first_scan_reads_are_exception_06(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(scans=0)
    client = make_client(site.server.port)
    assert exception_code(client.read_input_registers(0, count=2, device_id=1)) == 6


def test_a_read_answers_from_the_latest_scan(site: ServedSite, client: ModbusTcpClient):
    site.scan(5)
    response = client.read_input_registers(24, count=4, device_id=1)
    echo = client.convert_from_registers(response.registers[2:], DT.UINT32)
    assert echo == 6
    assert client.convert_from_registers(response.registers[:2], DT.FLOAT32) == wobble(6)


# --- writes ------------------------------------------------------------------------------------------
NEW_VALUES = {
    "state_cmd": 1, "mode": 3, "p_setpoint_w": -2500.5, "q_setpoint_var": -1230, "soc_min_pct": 15,
    "soc_max_pct": 95, "export_limit_w": 250000, "schedule_id": 3_000_000_000, "site_label": "depot7",
    "schedule_active": True, "run_enable": True,
}


def test_every_writable_tag_is_applied_by_a_scan_before_its_write_is_answered(site: ServedSite,
                                                                              client: ModbusTcpClient):
    writable = [t.spec for t in site.image if t.spec.modbus is not None and t.spec.access is Access.RW]
    assert sorted(s.name for s in writable) == sorted(NEW_VALUES)
    for spec in writable:
        scans = site.engine.ctx.scan
        response = write_tag(client, spec, NEW_VALUES[spec.name])
        assert not response.isError(), (spec.name, response)
        assert site.image[spec.name].value == NEW_VALUES[spec.name], "answered before a scan applied it"
        assert site.engine.ctx.scan > scans
    site.scan()
    for spec in writable:
        assert site.image[spec.name].value == NEW_VALUES[spec.name]
        assert read_tag(client, spec) == NEW_VALUES[spec.name]


def test_a_write_request_is_logged_with_its_client_as_source(site: ServedSite, client: ModbusTcpClient):
    applied = []
    site.image.write_listeners.append(applied.append)
    client.write_registers(5, [20, 80], device_id=1)
    site.scan()
    assert len(applied) == 1
    assert applied[0].source.startswith("modbus 127.0.0.1:")
    assert [(t.name, v) for t, v in applied[0].items] == [("soc_min_pct", 20), ("soc_max_pct", 80)]


def test_a_single_register_write_is_echoed(client: ModbusTcpClient):
    response = client.write_register(5, 33, device_id=1)
    assert (response.address, response.registers) == (5, [33])


def test_a_single_coil_write_is_echoed(client: ModbusTcpClient):
    response = client.write_coil(1, True, device_id=1)
    assert (response.address, response.bits[0]) == (1, True)


def test_a_write_spanning_several_tags_is_applied_whole(site: ServedSite, client: ModbusTcpClient):
    registers = [2, 0] + client.convert_to_registers(1500.0, DT.FLOAT32) + [(-50) & 0xFFFF, 20, 80]
    assert not client.write_registers(0, registers, device_id=1).isError()
    site.scan()
    values = {n: site.image[n].value for n in ("state_cmd", "mode", "p_setpoint_w", "q_setpoint_var",
                                              "soc_min_pct", "soc_max_pct")}
    assert values == {"state_cmd": 2, "mode": 0, "p_setpoint_w": 1500.0, "q_setpoint_var": -500,
                      "soc_min_pct": 20, "soc_max_pct": 80}


def test_one_value_out_of_range_rejects_the_whole_write_with_03(site: ServedSite, client: ModbusTcpClient):
    registers = [2, 0] + client.convert_to_registers(1500.0, DT.FLOAT32) + [0, 20, 101]  # soc_max_pct 101 > 100
    assert exception_code(client.write_registers(0, registers, device_id=1)) == 3
    site.scan()
    assert (site.image["state_cmd"].value, site.image["p_setpoint_w"].value, site.image["soc_min_pct"].value) == \
           (0, 0.0, 10)


def test_a_float_setpoint_past_its_limit_is_exception_03(site: ServedSite, client: ModbusTcpClient):
    response = client.write_registers(2, client.convert_to_registers(5000.5, DT.FLOAT32), device_id=1)
    assert exception_code(response) == 3
    site.scan()
    assert site.image["p_setpoint_w"].value == 0.0


def test_an_enum_past_its_labels_is_exception_03(client: ModbusTcpClient):
    assert exception_code(client.write_register(1, 4, device_id=1)) == 3  # mode has 4 labels: 0..3


def test_a_read_only_holding_register_is_exception_02(client: ModbusTcpClient):
    assert exception_code(client.write_register(20, 1, device_id=1)) == 2  # firmware_build


def test_a_read_only_coil_is_exception_02(client: ModbusTcpClient):
    assert exception_code(client.write_coil(5, True, device_id=1)) == 2  # estop_latched


def test_an_unmapped_register_is_exception_02(client: ModbusTcpClient):
    assert exception_code(client.write_register(7, 1, device_id=1)) == 2


def test_an_address_past_the_map_is_exception_02(client: ModbusTcpClient):
    assert exception_code(client.write_register(30000, 1, device_id=1)) == 2


def test_half_of_a_float32_is_exception_02_and_changes_nothing(site: ServedSite, client: ModbusTcpClient):
    assert exception_code(client.write_register(3, 0x4000, device_id=1)) == 2
    site.scan()
    assert site.image["p_setpoint_w"].value == 0.0


def test_writes_are_refused_with_01_when_disabled(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(writes_enabled=False)
    client = make_client(site.server.port)
    assert exception_code(client.write_register(5, 20, device_id=1)) == 1
    assert exception_code(client.write_coil(1, True, device_id=1)) == 1
    site.scan()
    assert (site.image["soc_min_pct"].value, site.image["run_enable"].value) == (10, False)


def test_a_client_outside_the_allow_list_is_refused_with_01(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(write_allow=("10.1.2.0/24",))
    client = make_client(site.server.port)
    assert exception_code(client.write_register(5, 20, device_id=1)) == 1
    assert client.read_holding_registers(5, count=1, device_id=1).registers == [10]  # reads stay open


def test_a_refused_client_is_logged_once(make_site, make_client, caplog):  # type: ignore[no-untyped-def]
    site = make_site(write_allow=("10.1.2.0/24",))
    client = make_client(site.server.port)
    with caplog.at_level(logging.WARNING, logger="runtime.servers.modbus_server"):
        for value in range(20, 30):
            client.write_register(5, value, device_id=1)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "not in [modbus_server] write_allow" in refusals[0].getMessage()
    assert site.server.store.rejected == 10


def test_a_network_in_the_allow_list_admits_its_clients(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(write_allow=("127.0.0.0/8",))
    client = make_client(site.server.port)
    assert not client.write_register(5, 20, device_id=1).isError()


# --- life cycle ----------------------------------------------------------------------------------------
def test_stop_closes_the_port_and_is_idempotent(make_site):  # type: ignore[no-untyped-def]
    site = make_site()
    port = site.server.port
    site.server.stop()
    site.server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_port_in_use_fails_start_with_the_reason(make_site):  # type: ignore[no-untyped-def]
    first = make_site()
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.server.port}"):
        make_site(port=first.server.port)


def test_stop_ends_open_client_connections(site: ServedSite, client: ModbusTcpClient):
    assert not client.read_input_registers(0, count=2, device_id=1).isError()
    site.server.stop()
    with pytest.raises(ConnectionException):
        client.read_input_registers(0, count=2, device_id=1)


def test_requests_pipelined_on_one_connection_are_all_answered_in_order(site: ServedSite):
    frames = b"".join(bytes([0, tid, 0, 0, 0, 6, 1, 4, 0, 21, 0, 1]) for tid in (1, 2, 3))  # read input 21
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=2) as s:
        s.sendall(frames)
        data = b""
        while len(data) < 3 * 11:
            chunk = s.recv(1024)
            assert chunk
            data += chunk
    assert [data[i * 11 + 1] for i in range(3)] == [1, 2, 3]  # transaction ids, in order
    assert all(data[i * 11 + 9:i * 11 + 11] == b"\x00\x00" for i in range(3))  # active_error_count = 0


def test_a_float_never_read_from_its_device_reads_nan(make_site, make_client):  # type: ignore[no-untyped-def]
    site = make_site(scans=0)
    site.image.publish(0, 0.0)  # the image as built: inputs not read yet
    client = make_client(site.server.port)
    response = client.read_input_registers(2, count=2, device_id=1)
    assert math.isnan(client.convert_from_registers(response.registers, DT.FLOAT32))


# --- other function codes ---------------------------------------------------------------------------
def test_a_mask_write_applies_to_the_register_as_the_last_scan_left_it(site: ServedSite, client: ModbusTcpClient):
    response = client.mask_write_register(address=5, and_mask=0x00F0, or_mask=0x0003, device_id=1)  # soc_min 10
    assert not response.isError(), response
    site.scan()
    assert site.image["soc_min_pct"].value == (10 & 0x00F0) | (0x0003 & ~0x00F0)


def test_read_write_multiple_reads_the_last_scan_and_writes_for_the_next(site: ServedSite, client: ModbusTcpClient):
    response = client.readwrite_registers(read_address=5, read_count=2, write_address=5, values=[20, 80],
                                          device_id=1)
    assert response.registers == [10, 90]  # the write applies at the next scan boundary
    site.scan()
    assert client.read_holding_registers(5, count=2, device_id=1).registers == [20, 80]


def test_an_unknown_function_code_is_exception_01(site: ServedSite):
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=2) as s:
        s.sendall(bytes([0, 9, 0, 0, 0, 2, 1, 0x41]))
        answer = s.recv(64)
    assert answer[:2] == bytes([0, 9])  # transaction id
    assert answer[7:9] == bytes([0xC1, 0x01])
