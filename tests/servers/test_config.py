"""[modbus_server] and [meter_gateway] in an io_map: what they take and what they refuse."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.config.structure import ConfigErrors
from runtime.site import build_site

SITE = """\
[site]
id = "t"

[modbus_server]
enabled = true
port = 0
writes_enabled = true
write_allow = ["127.0.0.1", "10.20.0.0/16", "rtu"]
word_order = "low_first"
runtime_base = 8000
serial = { port = "/dev/ttyUSB0", baudrate = 9600, parity = "E" }

[meter_gateway]
enabled = true
port = 0
unit_ids = [7]
layout = "em24_din"

[meter_gateway.quantities]
w_total = "meter_w"

[[tags]]
name = "meter_w"
dtype = "float32"
area = "memory"
unit = "kW"
initial = 1.5
modbus = { table = "input", address = 0 }
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return load_io_map(path)


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        build_site(load(tmp_path, text), VirtualClock())
    return [str(e).split(": ", 1)[1] for e in info.value.errors]


def test_every_server_key_is_read(tmp_path: Path):
    io_map = load(tmp_path, SITE)
    m, g = io_map.modbus_server, io_map.meter_gateway
    assert (m.word_order, m.write_allow, m.runtime_base) == ("low_first", ("127.0.0.1", "10.20.0.0/16", "rtu"), 8000)
    assert (m.serial.port, m.serial.baudrate, m.serial.parity) == ("/dev/ttyUSB0", 9600, "E")
    assert (g.unit_ids, g.layout, g.quantities) == ((7,), "em24_din", {"w_total": "meter_w"})


def test_the_site_gets_both_servers_and_the_runtime_block_moves(tmp_path: Path):
    site = build_site(load(tmp_path, SITE), VirtualClock())
    assert [type(m).__name__ for m in site.mirrors] == ["ModbusTagServer", "MeterGateway"]
    modbus = site.image["scan_count"].spec.modbus
    assert (modbus.table.value, modbus.address) == ("input", 8000)


def test_a_disabled_server_adds_no_tags_and_no_addresses(tmp_path: Path):
    text = SITE.replace("[modbus_server]\nenabled = true", "[modbus_server]\nenabled = false")
    text = text.replace("[meter_gateway]\nenabled = true", "[meter_gateway]\nenabled = false")
    site = build_site(load(tmp_path, text), VirtualClock())
    assert site.mirrors == []
    assert site.image["scan_count"].spec.modbus is None


def test_a_write_allow_entry_that_is_no_address_is_an_error_on_its_line(tmp_path: Path):
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, SITE.replace('"10.20.0.0/16"', '"10.20.0.0/33"'))
    (error,) = info.value.errors
    assert (error.path, error.line) == (("modbus_server", "write_allow"), 8)
    assert "'10.20.0.0/33' is not an IP address, a network (10.0.0.0/24) or \"rtu\"" in error.message


def test_a_tag_in_the_runtime_block_is_reported_with_both_names(tmp_path: Path):
    assert errors(tmp_path, SITE.replace("address = 0 }", "address = 8002 }")) == [
        "modbus_server: tag 'meter_w': input addresses 8002..8003 overlap tag 'scan_overruns'"]


def test_a_gateway_quantity_fed_by_a_missing_tag_is_an_error_on_its_line(tmp_path: Path):
    with pytest.raises(ConfigErrors) as info:
        build_site(load(tmp_path, SITE.replace('w_total = "meter_w"', 'w_total = "meter_kw"')), VirtualClock())
    (error,) = info.value.errors
    assert (error.path, error.line, error.message) == (("meter_gateway", "quantities", "w_total"), 20,
                                                       "no tag named 'meter_kw'")


def test_the_gateway_may_not_share_the_tag_servers_port(tmp_path: Path):
    text = SITE.replace("port = 0\nwrites_enabled", "port = 1502\nwrites_enabled").replace(
        "port = 0\nunit_ids = [7]", "port = 1502\nunit_ids = [7]")
    assert errors(tmp_path, text) == ["meter_gateway.port: port 1502 is the tag server's; the gateway needs its own"]


def test_an_unknown_gateway_key_is_named_with_a_suggestion(tmp_path: Path):
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, SITE.replace('layout = "em24_din"', 'layuot = "em24_din"'))
    assert [e.message for e in info.value.errors] == ["unknown key (did you mean 'layout'?)"]


def test_an_unknown_layout_is_refused(tmp_path: Path):
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, SITE.replace('layout = "em24_din"', 'layout = "em340"'))
    assert [e.message for e in info.value.errors] == ["must be one of 'em24_e1', 'em24_din', got 'em340'"]


LIMITS = SITE.replace("runtime_base = 8000\n", "runtime_base = 8000\nmax_connections = 4\nidle_timeout_s = 30\n"
                      "max_connections_per_client = 3\n").replace(
    'layout = "em24_din"\n', 'layout = "em24_din"\nmax_connections = 2\nidle_timeout_s = 5.5\nmax_connections_per_client = 1\n')


def test_both_servers_read_their_connection_limits(tmp_path: Path):
    io_map = load(tmp_path, LIMITS)
    m, g = io_map.modbus_server, io_map.meter_gateway
    assert (m.max_connections, m.idle_timeout_s, m.max_connections_per_client) == (4, 30.0, 3)
    assert (g.max_connections, g.idle_timeout_s, g.max_connections_per_client) == (2, 5.5, 1)


def test_the_connection_limits_default_to_16_clients_4_from_one_address_and_60_s():
    from runtime.config.schema import MeterGatewayConfig, ModbusServerConfig

    for section in (ModbusServerConfig(), MeterGatewayConfig()):
        assert (section.max_connections, section.max_connections_per_client, section.idle_timeout_s) == (16, 4, 60.0)


def test_the_servers_get_the_limits_of_their_sections(tmp_path: Path):
    server, gateway = build_site(load(tmp_path, LIMITS), VirtualClock()).mirrors
    assert attrs.astuple(server.thread.limits) == (4, 30.0, 3)  # type: ignore[attr-defined]
    assert attrs.astuple(gateway.thread.limits) == (2, 5.5, 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("key", "value"), [("max_connections", "0"), ("max_connections", "257"),
                                            ("max_connections_per_client", "0"),
                                            ("idle_timeout_s", "0.1"), ("idle_timeout_s", "3601")])
def test_a_connection_limit_out_of_range_is_an_error_on_its_line(tmp_path: Path, key: str, value: str):
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, SITE.replace("runtime_base = 8000\n", f"runtime_base = 8000\n{key} = {value}\n"))
    (error,) = info.value.errors
    assert (error.path, error.line) == (("modbus_server", key), 11)  # the line after runtime_base
