"""The servers against the Modbus Application Protocol Specification V1.1b3, function by function.

Each row is one request and the answer its section of the specification asks for: the normal
response (the function code echoed), or an exception response (function code + 0x80) with
01 illegal function (section 7: "the function code received in the query is not an allowable
action for the server"), 02 illegal data address or 03 illegal data value (the quantity, byte
count or value is outside what the function's state diagram in section 6 allows). The requests
are raw frames (no client library sends a quantity of 0), checked on the test site: coils 0..5,
holding registers 0..20, input registers 0..9027 or more (the runtime block), writes allowed
from 127.0.0.1.
"""

from __future__ import annotations

import logging
import shutil
import socket
import struct
import subprocess

import pytest
from modbus_kit import ServedSite, exception_code, mbap, raw_request
from pymodbus.client import ModbusTcpClient
from testkit.waiting import wait_until

from runtime.config.schema import MeterGatewayConfig

OK = None


def pdu(function: int, *words: int, data: bytes = b"") -> bytes:
    return bytes([function]) + b"".join(struct.pack(">H", w) for w in words) + data


def answer(response: bytes) -> int | None:
    """The exception code of a response PDU, None for a normal one."""
    if response[0] & 0x80:
        assert len(response) == 2, response
        return response[1]
    return None


TAG_SERVER = [
    # 6.1 read coils: quantity 1..2000
    ("01 one coil", pdu(0x01, 0, 1), OK),
    ("01 quantity 0", pdu(0x01, 0, 0), 3),
    ("01 quantity 2000, past the coils", pdu(0x01, 0, 2000), 2),
    ("01 quantity 2001", pdu(0x01, 0, 2001), 3),
    # 6.2 read discrete inputs: quantity 1..2000
    ("02 one input", pdu(0x02, 0, 1), OK),
    ("02 quantity 0", pdu(0x02, 0, 0), 3),
    ("02 quantity 2001", pdu(0x02, 0, 2001), 3),
    # 6.3 read holding registers: quantity 1..125
    ("03 one register", pdu(0x03, 5, 1), OK),
    ("03 quantity 0", pdu(0x03, 0, 0), 3),
    ("03 quantity 125, past the holding registers", pdu(0x03, 0, 125), 2),
    ("03 quantity 126", pdu(0x03, 0, 126), 3),
    ("03 a byte short", pdu(0x03, 0)[:4], 3),
    ("03 a byte too many", pdu(0x03, 0, 1) + b"\0", 3),
    # 6.4 read input registers: quantity 1..125
    ("04 quantity 125", pdu(0x04, 0, 125), OK),
    ("04 quantity 0", pdu(0x04, 0, 0), 3),
    ("04 quantity 126", pdu(0x04, 0, 126), 3),
    ("04 address 65535 + 2", pdu(0x04, 0xFFFF, 2), 2),
    # 6.5 write single coil: 0x0000 or 0xFF00
    ("05 on", pdu(0x05, 1, 0xFF00), OK),
    ("05 off", pdu(0x05, 1, 0x0000), OK),
    ("05 value 0x1234", pdu(0x05, 1, 0x1234), 3),
    ("05 value 0x0001", pdu(0x05, 1, 0x0001), 3),
    ("05 no coil there", pdu(0x05, 100, 0xFF00), 2),
    # 6.6 write single register: any value; the tag's range is the datastore's check
    ("06 a value in range", pdu(0x06, 5, 20), OK),
    ("06 a value out of the tag's range", pdu(0x06, 5, 0xFFFF), 3),
    ("06 no tag there", pdu(0x06, 7, 1), 2),
    # 6.11 write multiple coils: quantity 1..1968, byte count ceil(quantity / 8)
    ("15 two coils", pdu(0x0F, 0, 2, data=b"\x01\x03"), OK),
    ("15 quantity 0", pdu(0x0F, 0, 0, data=b"\x00"), 3),
    ("15 quantity 1969", pdu(0x0F, 0, 1969, data=bytes([247]) + bytes(247)), 3),
    ("15 byte count 2 for 2 coils", pdu(0x0F, 0, 2, data=b"\x02\x03\x00"), 3),
    ("15 byte count 1, no data byte", pdu(0x0F, 0, 2, data=b"\x01"), 3),
    # 6.12 write multiple registers: quantity 1..123, byte count 2 x quantity
    ("16 two registers", pdu(0x10, 5, 2, data=b"\x04\x00\x14\x00\x50"), OK),
    ("16 quantity 0", pdu(0x10, 5, 0, data=b"\x00"), 3),
    ("16 quantity 124", pdu(0x10, 0, 124, data=bytes([248]) + bytes(248))[:253], 3),
    ("16 byte count 3 for 2 registers", pdu(0x10, 5, 2, data=b"\x03\x00\x14\x00"), 3),
    # 6.16 mask write register: any masks
    ("22 mask write", pdu(0x16, 5, 0x00F0, 0x0003), OK),
    ("22 a byte short", pdu(0x16, 5, 0x00F0, 0x0003)[:6], 3),
    # 6.17 read/write multiple registers: read 1..125, write 1..121, byte count 2 x write
    ("23 read 2, write 2", pdu(0x17, 5, 2, 5, 2, data=b"\x04\x00\x14\x00\x50"), OK),
    ("23 read 0", pdu(0x17, 5, 0, 5, 1, data=b"\x02\x00\x14"), 3),
    ("23 read 126", pdu(0x17, 0, 126, 5, 1, data=b"\x02\x00\x14"), 3),
    ("23 write 0", pdu(0x17, 5, 1, 5, 0, data=b"\x00"), 3),
    ("23 write 122", pdu(0x17, 5, 1, 0, 122, data=bytes([244]) + bytes(230)), 3),
    ("23 byte count 3 for 1 register", pdu(0x17, 5, 1, 5, 1, data=b"\x03\x00\x14\x00"), 3),
    # functions the server does not implement: 01
    ("07 read exception status", bytes([0x07]), 1),
    ("08 diagnostics, return query data", pdu(0x08, 0, 0x1234), 1),
    ("0B get comm event counter", bytes([0x0B]), 1),
    ("0C get comm event log", bytes([0x0C]), 1),
    ("11 report server id", bytes([0x11]), 1),
    ("14 read file record", bytes([0x14, 7, 6, 0, 1, 0, 0, 0, 1]), 1),
    ("15 write file record", bytes([0x15, 9, 6, 0, 1, 0, 0, 0, 1, 0x12, 0x34]), 1),
    ("18 read FIFO queue", pdu(0x18, 0), 1),
    ("2B/0E read device identification", bytes([0x2B, 0x0E, 1, 0]), 1),
    ("41 user-defined", bytes([0x41]), 1),
    ("83 an exception code as a request", bytes([0x83, 0x02]), 1),
    ("FF", bytes([0xFF]), 1),
]


@pytest.mark.parametrize(("request_pdu", "expected"), [(r, e) for _, r, e in TAG_SERVER],
                         ids=[name for name, _, _ in TAG_SERVER])
def test_the_tag_server_answers_as_the_specification_says(site: ServedSite, request_pdu: bytes, expected: int | None):
    response = answer_of(site.server.port, request_pdu)
    assert answer(response) == expected, response.hex()
    assert response[0] & 0x7F == request_pdu[0] & 0x7F  # the function code, echoed or with 0x80 set


def answer_of(port: int, request_pdu: bytes) -> bytes:
    return raw_request(port, request_pdu)


def test_a_coil_value_other_than_0000_or_ff00_changes_nothing(site: ServedSite):
    assert answer(answer_of(site.server.port, pdu(0x05, 1, 0x1234))) == 3  # run_enable
    site.scan()
    assert site.image["run_enable"].value is False


def test_write_file_record_is_exception_01_and_writes_nothing(site: ServedSite):
    assert answer(answer_of(site.server.port, bytes([0x15, 9, 6, 0, 1, 0, 5, 0, 1, 0, 20]))) == 1
    site.scan()
    assert site.image["soc_min_pct"].value == 10


@pytest.mark.parametrize("request_pdu", [pdu(0x05, 1, 0xFF00), pdu(0x06, 5, 20), pdu(0x0F, 0, 2, data=b"\x01\x03"),
                                         pdu(0x10, 5, 1, data=b"\x02\x00\x14"), pdu(0x16, 5, 0x00F0, 3),
                                         pdu(0x17, 5, 1, 5, 1, data=b"\x02\x00\x14")],
                         ids=["05", "06", "15", "16", "22", "23"])
def test_with_writes_disabled_every_write_function_is_exception_01(make_site, request_pdu: bytes):  # type: ignore[no-untyped-def]
    site = make_site(writes_enabled=False)
    assert answer(answer_of(site.server.port, request_pdu)) == 1


def test_a_bad_quantity_is_exception_03_before_the_write_policy(make_site):  # type: ignore[no-untyped-def]
    site = make_site(writes_enabled=False)
    assert answer(answer_of(site.server.port, pdu(0x10, 5, 0, data=b"\x00"))) == 3


def test_an_unserved_unit_id_is_still_exception_0b(site: ServedSite):
    assert answer(raw_request(site.server.port, pdu(0x03, 0, 0), unit=7)) == 0x0B


METER_GATEWAY = [
    ("03 the model code", pdu(0x03, 0x000B, 1), OK),
    ("04 w_total", pdu(0x04, 0x0028, 2), OK),
    ("03 quantity 126", pdu(0x03, 0, 126), 3),
    ("01 read coils", pdu(0x01, 0, 1), 1),
    ("02 read discrete inputs", pdu(0x02, 0, 1), 1),
    ("05 write single coil", pdu(0x05, 0, 0xFF00), 1),
    ("15 write multiple coils", pdu(0x0F, 0, 1, data=b"\x01\x01"), 1),
    ("06 write single register", pdu(0x06, 0x0028, 1), 2),
    ("16 write multiple registers", pdu(0x10, 0x0028, 1, data=b"\x02\x00\x01"), 2),
    ("07 read exception status", bytes([0x07]), 1),
]


@pytest.mark.parametrize(("request_pdu", "expected"), [(r, e) for _, r, e in METER_GATEWAY],
                         ids=[name for name, _, _ in METER_GATEWAY])
def test_the_meter_gateway_answers_as_the_specification_says(make_site, request_pdu: bytes,  # type: ignore[no-untyped-def]
                                                             expected: int | None):
    site = make_site(meter=MeterGatewayConfig(enabled=True, port=0, quantities={"w_total": "grid_power_w"}))
    assert answer(answer_of(site.gateway.port, request_pdu)) == expected


# --- with a client library -------------------------------------------------------------------------
def test_pymodbus_reads_2000_coils_past_the_6_mapped_as_exception_02(client: ModbusTcpClient):
    assert exception_code(client.read_coils(0, count=2000, device_id=1)) == 2  # 6 coils mapped


def test_pymodbus_sees_exception_01_for_read_exception_status(client: ModbusTcpClient):
    assert exception_code(client.read_exception_status(device_id=1)) == 1


def test_pymodbus_sees_exception_01_for_diagnostics(client: ModbusTcpClient):
    assert exception_code(client.diag_read_diagnostic_register(device_id=1)) == 1


def test_pymodbus_sees_exception_01_for_read_fifo_queue(client: ModbusTcpClient):
    assert exception_code(client.read_fifo_queue(address=0, device_id=1)) == 1


def test_pymodbus_sees_exception_01_for_read_device_information(client: ModbusTcpClient):
    assert exception_code(client.read_device_information(device_id=1)) == 1


needs_mbpoll = pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")


def mbpoll(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-p", str(port), "-1", "-o", "2", *args, "127.0.0.1"],
                          capture_output=True, text=True, timeout=20)


@needs_mbpoll
def test_mbpoll_reads_125_input_registers(site: ServedSite):
    done = mbpoll(site.server.port, "-t", "3", "-r", "1", "-c", "125")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[125]:" in done.stdout


@needs_mbpoll
def test_mbpoll_sees_illegal_data_address_past_the_coils(site: ServedSite):
    done = mbpoll(site.server.port, "-t", "0", "-r", "1", "-c", "125")
    assert done.returncode == 1
    assert "Illegal data address" in done.stdout + done.stderr


@needs_mbpoll
def test_mbpoll_sees_illegal_function_for_the_meter_gateways_coils(make_site):  # type: ignore[no-untyped-def]
    site = make_site(meter=MeterGatewayConfig(enabled=True, port=0, quantities={"w_total": "grid_power_w"}))
    done = mbpoll(site.gateway.port, "-t", "0", "-r", "1")
    assert done.returncode == 1
    assert "Illegal function" in done.stdout + done.stderr


# --- what is logged -----------------------------------------------------------------------------------
def test_a_refused_request_is_logged_once_per_client_function_and_code(site: ServedSite, caplog):  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            answer_of(site.server.port, pdu(0x03, 0, 0))
            answer_of(site.server.port, pdu(0x05, 1, 0x1234))
            answer_of(site.server.port, bytes([0xFF]))
    lines = [r.getMessage() for r in caplog.records if r.name == "runtime.servers.host" and "exception" in r.getMessage()]
    assert len(lines) == 3, lines
    assert "function 0x03 from 127.0.0.1" in lines[0] and "quantity 0 is outside 1..125" in lines[0]
    assert "coil value 0x1234 is neither 0x0000 nor 0xFF00" in lines[1]
    assert "function code 0xFF is not served" in lines[2]


def test_no_request_logs_a_traceback_or_a_pymodbus_error(site: ServedSite, caplog):  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.DEBUG):
        for _, request_pdu, _ in TAG_SERVER:
            answer_of(site.server.port, request_pdu)
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pymodbus") and r.levelno >= logging.WARNING] \
        == []


# --- pipelining -------------------------------------------------------------------------------------
def test_a_hundred_requests_in_one_segment_are_all_answered_in_order(site: ServedSite):
    frames = b"".join(mbap(pdu(0x04, 21, 1), tid=tid) for tid in range(100))  # 1,200 bytes, past pymodbus's 264
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=2) as s:
        s.sendall(frames)
        data = b""
        while len(data) < 100 * 11:
            chunk = s.recv(4096)
            assert chunk, f"closed after {len(data) // 11} answers"
            data += chunk
    assert [int.from_bytes(data[i * 11:i * 11 + 2], "big") for i in range(100)] == list(range(100))


def test_requests_behind_a_write_being_applied_wait_unread_then_are_answered_in_order(site: ServedSite):
    scanner = site.scan.__self__  # type: ignore[attr-defined]  # the conftest's WriteScanner
    frames = mbap(pdu(0x06, 5, 20), tid=0) + b"".join(mbap(pdu(0x04, 21, 1), tid=t) for t in range(1, 2001))
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=5) as s:
        with scanner.lock:  # no scan applies the write meanwhile
            s.sendall(frames)
            (handler,) = wait_until(lambda: list(site.server.thread._servers[0].admitted))
            wait_until(lambda: handler._held is not None and not handler.transport.is_reading(),
                       what="the connection paused while its write waits")
        data = b""
        while len(data) < 12 + 2000 * 11:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        wait_until(lambda: handler.transport.is_reading(), what="reading again once the write is answered")
    assert data[:12] == mbap(pdu(0x06, 5, 20), tid=0)  # the write's echo first
    tids = [int.from_bytes(data[12 + i * 11:14 + i * 11], "big") for i in range(2000)]
    assert tids == list(range(1, 2001))


# --- the issue's own case, on the default site ---------------------------------------------------------
def test_fc05_0x1234_leaves_schedule_enabled_off_on_the_default_site():
    import threading
    from pathlib import Path

    import attrs

    from runtime.clock import VirtualClock
    from runtime.config.io_map import load_io_map
    from runtime.site import build_site

    io_map = load_io_map(Path(__file__).resolve().parents[2] / "io_maps" / "sim_home.toml")
    site = build_site(attrs.evolve(io_map, modbus_server=attrs.evolve(io_map.modbus_server, port=0)), VirtualClock())
    site.start()
    scanning = threading.Thread(target=site.engine.run, daemon=True)  # flat out: writes are applied at once
    scanning.start()
    try:
        coil = site.image["schedule_enabled"].spec.modbus
        assert coil is not None and coil.address == 1100
        port = site.mirrors[0].port  # type: ignore[attr-defined]
        assert answer(raw_request(port, pdu(0x05, coil.address, 0x0000))) is None  # off
        assert site.image["schedule_enabled"].value is False
        assert answer(raw_request(port, pdu(0x05, coil.address, 0x1234))) == 3
        after = site.image.snapshot.scan  # type: ignore[union-attr]
        wait_until(lambda: site.image.snapshot.scan > after + 2)  # type: ignore[union-attr]
        assert site.image["schedule_enabled"].value is False
    finally:
        site.engine.stop()
        scanning.join(10)
        site.stop()
