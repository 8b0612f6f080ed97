"""SunSpec storage control the SunSpec way: a power setpoint is written as the charge/discharge
window of model 124 closed on it (StorCtl_Mod = 3, OutWRte = +x %, InWRte = -x % of WChaMax), and
the simulated inverter confines its power to [-InWRte, +OutWRte] by the bits of StorCtl_Mod, 0 W
being its own choice inside the window. Real pymodbus against the simulator bound to a home plant
(5 kW, WChaMax = 5000 W) on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from io_kit import modbus_driver, point, value_of, wait_until
from pymodbus.client import ModbusTcpClient

from ems.devsim.window import window_point
from runtime.config.io_map import load_io_map
from runtime.config.structure import ConfigErrors
from runtime.io.modbus.profile import parse_profile

WINDOW = ("storage_control_mode", "out_w_rate_pct", "in_w_rate_pct")
STORCTL_MOD, OUT_W_RTE, IN_W_RTE = 40153, 40160, 40161  # model 124 at 40148: offsets 5, 12, 13
ROOT = Path(__file__).resolve().parents[2]


def window_of(inverter) -> list[float]:  # type: ignore[no-untyped-def]
    return [inverter.server.device.get(name) for name in WINDOW]


def setpoint_driver(inverter, **options):  # type: ignore[no-untyped-def]
    return modbus_driver("sunspec_inverter_storage", inverter.server.port, [point("p", register="p_ac")],
                         [point("p_set", register="out_w_rate_pct", percent_of="w_cha_max")], **options)


def percent_words(pct: float) -> list[int]:
    """An OutWRte/InWRte value as the device holds it (int16, InOutWRte_SF = -1)."""
    return [round(pct * 10) & 0xFFFF]


def test_a_2000_w_discharge_is_the_window_closed_on_40_pct_and_the_inverter_delivers_it(serve_plant, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve_plant("sunspec_inverter_storage")
    assert inverter.server.device.get("w_cha_max") == 5000.0
    driver = run(setpoint_driver(inverter))
    scan = lambda: driver.stage(tuple([2000.0]))  # noqa: C409 - a new tuple each scan, as the scan stages them
    wait_until(lambda: scan() or window_of(inverter) == [3, 40.0, -40.0], 5.0, "StorCtl_Mod 3, OutWRte 40, InWRte -40")
    wait_until(lambda: scan() or abs((value_of(driver, "p") or 0.0) - 2000.0) < 20.0, 5.0, "2000 W delivered")
    assert inverter.get("inverter.p_setpoint_w") == pytest.approx(2000.0)


def test_a_1500_w_charge_mirrors_the_window(serve_plant, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve_plant("sunspec_inverter_storage")
    driver = run(setpoint_driver(inverter))
    scan = lambda: driver.stage(tuple([-1500.0]))  # noqa: C409
    wait_until(lambda: scan() or window_of(inverter) == [3, -30.0, 30.0], 5.0, "StorCtl_Mod 3, OutWRte -30, InWRte 30")
    wait_until(lambda: scan() or abs((value_of(driver, "p") or 0.0) + 1500.0) < 20.0, 5.0, "1500 W charged")


def test_a_setpoint_beyond_wchamax_is_clamped_to_the_full_window(serve_plant, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve_plant("sunspec_inverter_storage")
    driver = run(setpoint_driver(inverter))
    scan = lambda: driver.stage(tuple([-7000.0]))  # noqa: C409
    wait_until(lambda: scan() or window_of(inverter) == [3, -100.0, 100.0], 5.0, "clamped to -100 / 100 %")


def test_turning_from_discharge_to_charge_opens_the_charge_side_first(serve_plant, run) -> None:  # type: ignore[no-untyped-def]
    """[-InWRte, +OutWRte] from [40, 40] %: InWRte first ([-30, 40], holding 0 W between), then
    OutWRte ([-30, -30]), then StorCtl_Mod; OutWRte first would leave the window [40, -30] empty."""
    inverter = serve_plant("sunspec_inverter_storage")
    driver = run(setpoint_driver(inverter))
    device = inverter.server.device
    discharge = lambda: driver.stage(tuple([2000.0]))  # noqa: C409
    wait_until(lambda: discharge() or window_of(inverter) == [3, 40.0, -40.0], 5.0, "discharging")
    device.writes.clear()
    charge = lambda: driver.stage(tuple([-1500.0]))  # noqa: C409
    wait_until(lambda: charge() or window_of(inverter) == [3, -30.0, 30.0], 5.0, "charging")
    writes = list(device.writes)  # (a rewrite of the discharge window may come first)
    opened = writes.index(("in_w_rate_pct", pytest.approx(30.0)))
    closed = writes.index(("out_w_rate_pct", pytest.approx(-30.0)))
    assert opened < closed
    assert ("storage_control_mode", 3) in writes[closed + 1:]


def test_with_only_the_discharge_bit_a_negative_outwrte_forces_that_charge(serve_plant) -> None:  # type: ignore[no-untyped-def]
    """StorCtl_Mod = 2: the window (-inf, OutWRte]; OutWRte -30 % = charge at least 1500 W (evcc's
    Fronius GEN24 "charge from the grid")."""
    inverter = serve_plant("sunspec_inverter_storage")
    client = ModbusTcpClient("127.0.0.1", port=inverter.server.port)
    assert client.connect()
    try:
        client.write_registers(IN_W_RTE, percent_words(-50.0), device_id=1)  # ignored: bit 0 is clear
        client.write_registers(OUT_W_RTE, percent_words(-30.0), device_id=1)
        client.write_registers(STORCTL_MOD, [2], device_id=1)
        wait_until(lambda: abs(inverter.get("inverter.p_ac_w") + 1500.0) < 20.0, 5.0, "1500 W charged")
    finally:
        client.close()


def test_with_only_the_discharge_bit_the_inverter_keeps_its_own_0_w_under_the_limit(serve_plant) -> None:  # type: ignore[no-untyped-def]
    inverter = serve_plant("sunspec_inverter_storage")
    client = ModbusTcpClient("127.0.0.1", port=inverter.server.port)
    assert client.connect()
    try:
        client.write_registers(IN_W_RTE, percent_words(-50.0), device_id=1)  # ignored: bit 0 is clear
        client.write_registers(OUT_W_RTE, percent_words(40.0), device_id=1)
        client.write_registers(STORCTL_MOD, [2], device_id=1)
        wait_until(lambda: inverter.server.device.get("storage_control_mode") == 2, 5.0, "mode written")
        time.sleep(0.3)  # the plant's time to follow a wrong setpoint, had it one
        assert inverter.get("inverter.p_setpoint_w") == 0.0
        assert abs(inverter.get("inverter.p_ac_w")) < 1.0
    finally:
        client.close()


def test_with_only_the_charge_bit_a_negative_inwrte_forces_that_discharge(serve_plant) -> None:  # type: ignore[no-untyped-def]
    """StorCtl_Mod = 1: the window [-InWRte, +inf); InWRte -20 % = discharge at least 1000 W, with
    OutWRte 0 % not applying."""
    inverter = serve_plant("sunspec_inverter_storage")
    client = ModbusTcpClient("127.0.0.1", port=inverter.server.port)
    assert client.connect()
    try:
        client.write_registers(OUT_W_RTE, percent_words(0.0), device_id=1)
        client.write_registers(IN_W_RTE, percent_words(-20.0), device_id=1)
        client.write_registers(STORCTL_MOD, [1], device_id=1)
        wait_until(lambda: abs(inverter.get("inverter.p_ac_w") - 1000.0) < 20.0, 5.0, "1000 W discharged")
    finally:
        client.close()


@pytest.mark.parametrize(("rate", "mirror", "mode", "point_pct"), [
    (40.0, -40.0, 3, 40.0),  # closed on +40
    (-30.0, 30.0, 3, -30.0),  # closed on -30
    (60.0, 20.0, 3, 0.0),  # [-20, 60] holds 0: the inverter's own choice
    (40.0, 0.0, 0, 0.0),  # no bit: both sides unlimited
    (-30.0, -50.0, 2, -30.0),  # bit 1 only: (-inf, -30]
    (0.0, -20.0, 1, 20.0),  # bit 0 only: [20, +inf)
])
def test_the_window_point_is_the_nearest_to_0_w(rate: float, mirror: float, mode: int, point_pct: float) -> None:
    assert window_point(rate, mirror, mode, (1, 0)) == point_pct


def test_an_empty_window_gives_0_w() -> None:
    assert window_point(-30.0, -40.0, 3, (1, 0)) is None  # [40, -30]: the caller serves 0 W


def test_with_the_controller_silent_the_inverter_returns_to_0_w_within_the_revert_time(serve_plant, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve_plant("sunspec_inverter_storage")
    driver = run(setpoint_driver(inverter, revert_s=2.0))
    scan = lambda: driver.stage(tuple([2000.0]))  # noqa: C409
    wait_until(lambda: scan() or abs(inverter.get("inverter.p_ac_w") - 2000.0) < 20.0, 5.0, "2000 W delivered")
    driver.stop()  # the controller dies
    device = inverter.server.device
    last_write = max(device.written_at[name] for name in WINDOW)
    wait_until(lambda: inverter.get("inverter.p_setpoint_w") == 0.0, 4.0, "the window released")
    released = time.monotonic()
    assert 2.0 <= released - last_write < 2.5
    assert window_of(inverter) == [0, 100.0, 100.0]  # SunSpec defaults: limits off, rates 100 %
    wait_until(lambda: abs(inverter.get("inverter.p_ac_w")) < 20.0, 2.0, "0 W, at the plant's 2500 W/s ramp")


WINDOW_BASE = """\
[device]
vendor = "x"
model = "y"
kind = "inverter"
source = "test"
[poll_groups]
normal = {{ period_s = 1.0 }}

[registers]
mode = {{ table = "holding", address = 0, dtype = "uint16", access = "rw", min = 0, max = {mode_max} }}
reading = {{ table = "holding", address = 1, dtype = "int16" }}
in_rate = {{ table = "holding", address = 2, dtype = "int16", access = "rw", min = {in_min}, max = 100 }}
out_rate = {{ table = "holding", address = 3, dtype = "int16", access = "rw", min = -100, max = 100, {extra} }}
"""


@pytest.mark.parametrize(("extra", "mode_max", "in_min", "key", "message"), [
    ('mirror = "in_rte"', 3, -100, "mirror", "'in_rte' must name another writable holding register"),
    ('mirror = "reading"', 3, -100, "mirror", "'reading' must name another writable holding register"),
    ('mirror = "in_rate"', 3, 0, "mirror", "'in_rate' (range 0.0..100.0) does not take every negated value"),
    ('mode_register = "mode", mode_bits = [1, 0]', 3, -100, "mode_register", "it needs mirror"),
    ('mirror = "in_rate", mode_register = "mode", mode_bits = [1, 1]', 3, -100, "mode_bits", "two different bits"),
    ('mirror = "in_rate", mode_register = "mode", mode_bits = [1, 0]', 2, -100, "mode_bits", "above mode's max 2"),
    ('mirror = "in_rate", mode_register = "mode"', 3, -100, "mode_bits", "two different bits"),
])
def test_a_window_mistake_is_one_line_naming_the_file_and_key(extra: str, mode_max: int, in_min: int, key: str,
                                                              message: str) -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_profile(WINDOW_BASE.format(extra=extra, mode_max=mode_max, in_min=in_min), "win.toml")
    lines = str(exc.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"win.toml:13: registers.out_rate.{key}: ")
    assert message in lines[0]


def test_a_tag_bound_to_a_register_the_window_writes_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "io_maps" / "sim_devices.toml").read_text() + """
[[tags]]
name = "inverter_in_rate_pct"
dtype = "float32"
area = "output"
unit = "%"
safe_value = 0.0
io = { device = "inverter", register = "in_w_rate_pct" }
"""
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigErrors, match="register 'in_w_rate_pct' is already written by tag 'inverter_p_setpoint_w'"):
        load_io_map(path)
