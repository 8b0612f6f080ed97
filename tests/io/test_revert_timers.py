"""Every inverter falls back by itself when its controller goes silent.

The driver arms the device's revert timers (SunSpec *_RvrtTms, TRUMPF's communication
timeout) with the io_map's `revert_s` before its first setpoint, and rewrites guarded
setpoints often enough that a live controller never lets them lapse. The simulated devices
implement the timers (and the PQstorI's fixed heartbeat watchdog) as the manuals describe.
"""

from __future__ import annotations

import time

import pytest
from io_kit import modbus_driver, point, profile, wait_until
from testkit.waiting import holds_for

from ems.devsim.modbus_device import DeviceServer
from runtime.clock import RealClock
from runtime.config.structure import ConfigErrors
from runtime.io.driver import DriverSettings
from runtime.io.modbus.client import REWRITES_PER_REVERT, ModbusDriver
from runtime.io.modbus.config import ModbusConfig, ModbusOptions
from runtime.io.modbus.profile import PROFILE_DIR, parse_profile


def names(device) -> list[str]:  # type: ignore[no-untyped-def]
    return [name for name, _ in device.writes]


def test_the_revert_timer_is_armed_before_the_first_setpoint(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [],
                               [point("rate", register="out_w_rate_pct")], revert_s=7.0))
    driver.stage((40.0,))
    wait_until(lambda: ("out_w_rate_pct", 40.0) in inverter.device.writes)
    assert ("in_out_revert_s", 7.0) in inverter.device.writes
    assert names(inverter.device).index("in_out_revert_s") < names(inverter.device).index("out_w_rate_pct")


def test_a_guarded_setpoint_is_rewritten_ten_times_per_revert_time(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [],
                               [point("rate", register="out_w_rate_pct")], revert_s=2.0))
    scan = lambda: driver.stage(tuple([40.0]))  # noqa: C409 - a new tuple each scan, as the scan stages them
    wait_until(lambda: scan() or "out_w_rate_pct" in names(inverter.device))
    started = time.monotonic()
    holds_for(lambda: scan() or not inverter.device.expire(), 2.5, "a live controller keeps its setpoint")
    rewrites = names(inverter.device).count("out_w_rate_pct")
    assert REWRITES_PER_REVERT == 10
    assert rewrites >= (time.monotonic() - started) / 0.2 * 0.6  # every 0.2 s, with room for a loaded machine
    assert inverter.device.get("out_w_rate_pct") == pytest.approx(40.0)


def test_an_unguarded_setpoint_is_still_written_only_on_change(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [],
                               [point("cf", register="charge_from_grid")], revert_s=1.0))
    scan = lambda: driver.stage(tuple([1.0]))  # noqa: C409
    wait_until(lambda: scan() or "charge_from_grid" in names(inverter.device))
    holds_for(lambda: scan() or names(inverter.device).count("charge_from_grid") == 1, 0.5, "no rewrites")


def test_the_device_releases_the_window_within_revert_s_of_the_controllers_death(serve, run) -> None:  # type: ignore[no-untyped-def]
    """SunSpec InOutWRte_RvrtTms: both rates back to their default 100 % and StorCtl_Mod to 0 (the
    limits released: the inverter's own mode; 0 W in the simulator, tests/io/test_storage_window.py)."""
    inverter = serve("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [],
                               [point("rate", register="out_w_rate_pct")], revert_s=1.0))
    scan = lambda: driver.stage(tuple([80.0]))  # noqa: C409
    wait_until(lambda: scan() or inverter.device.get("storage_control_mode") == 3)
    driver.stop()  # the controller dies
    died = time.monotonic()
    window = ("out_w_rate_pct", "in_w_rate_pct", "storage_control_mode")
    last_write = max(inverter.device.written_at[name] for name in window)
    wait_until(lambda: set(window) <= set(inverter.device.expire()), 3.0, "the window reverts")
    reverted = time.monotonic()
    assert [inverter.device.get(name) for name in window] == [100.0, 100.0, 0]
    assert 1.0 <= reverted - last_write < 1.5
    assert reverted - died < 1.5


def test_the_timer_is_armed_again_on_every_new_connection(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [point("p", register="p_ac")],
                               [point("rate", register="out_w_rate_pct")], revert_s=5.0))
    scan = lambda: driver.stage(tuple([10.0]))  # noqa: C409
    wait_until(lambda: scan() or names(inverter.device).count("in_out_revert_s") == 1)
    inverter.device.set("in_out_revert_s", 0)  # the inverter rebooted and forgot its timer
    inverter.drop_connections()
    wait_until(lambda: scan() or names(inverter.device).count("in_out_revert_s") == 2, 10.0, "re-armed")
    assert inverter.device.get("in_out_revert_s") == 5.0


def test_the_truconvert_timeout_1016_is_armed_before_set_p_and_set_p_falls_to_0(serve, run) -> None:  # type: ignore[no-untyped-def]
    """TRUMPF AC 3025: the BMS communication timeout (holding 1016, s, manual p. 49) is armed with
    revert_s at connect, a coil of the map (4011, FC 05) is written beside the setpoint, and in the
    simulator the (templated, unconfirmed) set_p falls to 0 W revert_s after the controller died."""
    inverter = serve("trumpf_ac3025")
    driver = run(modbus_driver("trumpf_ac3025", inverter.port, [],
                               [point("p", register="set_p"), point("slave_id", is_bool=True, register="use_slave_id")],
                               revert_s=1.0, allow_unverified_profile=True))
    scan = lambda: driver.stage(tuple([2000.0, True]))  # noqa: C409 - a new tuple each scan
    wait_until(lambda: scan() or (inverter.device.get("set_p") == pytest.approx(2000.0)
                                  and inverter.device.get("use_slave_id") is True))
    assert inverter.device.get("comm_timeout_s") == 1.0
    assert names(inverter.device).index("comm_timeout_s") < names(inverter.device).index("set_p")
    driver.stop()
    wait_until(lambda: "set_p" in inverter.device.expire(), 3.0, "set_p reverts")
    assert inverter.device.get("set_p") == 0.0


def test_the_pqstori_watchdog_stops_the_setpoints_when_the_heartbeat_stops(sim_loop, run) -> None:  # type: ignore[no-untyped-def]
    text = (PROFILE_DIR / "abb_pqstori.toml").read_text()
    fast = parse_profile(text.replace("watchdog_s = 20.0", "watchdog_s = 1.0")  # the same map, a 1 s watchdog
                         .replace("heartbeat_period_s = 5.0", "heartbeat_period_s = 0.2"), "abb_pqstori.toml")
    inverter = DeviceServer(fast)
    sim_loop.run(inverter.start())
    try:
        config = ModbusConfig(ModbusOptions(model="abb_pqstori", port=inverter.port, timeout_s=0.2, retries=0), fast)
        settings = DriverSettings(poll_period_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.5, hang_timeout_s=5.0)
        driver = run(ModbusDriver("pq", [], [point("p", register="set_p")], RealClock(), settings, config))
        scan = lambda: driver.stage(tuple([50.0]))  # noqa: C409
        wait_until(lambda: scan() or inverter.device.get("set_p") == pytest.approx(50.0))
        holds_for(lambda: scan() or not inverter.device.expire(), 1.5, "the heartbeat keeps the watchdog fed")
        driver.stop()
        wait_until(lambda: "set_p" in inverter.device.expire(), 3.0, "the watchdog expires")
        assert inverter.device.get("set_p") == 0.0
    finally:
        sim_loop.run(inverter.stop())


REVERT_BASE = """\
[device]
vendor = "x"
model = "y"
kind = "inverter"
source = "test"
{device}
[poll_groups]
normal = {{ period_s = 1.0 }}

[registers]
timer = {{ table = "holding", address = 0, dtype = "uint16", access = "rw" }}
reading = {{ table = "input", address = 0, dtype = "uint16" }}
set_p = {{ table = "holding", address = 1, dtype = "int16", access = "rw", min = -100, max = 100, {extra} }}
"""


@pytest.mark.parametrize(("device", "extra", "line", "message"), [
    ("", 'reverts_after = "timr", revert_value = 0', 13, "'timr' must name a writable holding register"),
    ("", 'reverts_after = "reading", revert_value = 0', 13, "'reading' must name a writable holding register"),
    ("", 'reverts_after = "timer"', 13, "needs the revert_value it falls back to"),
    ("", 'reverts_after = "timer", revert_value = 500', 13, "500 is outside -100.0..100.0"),
    ("watchdog_s = 20.0", "revert_value = 0", 6, "a watchdog needs the heartbeat_register"),
])
def test_revert_mistakes_name_the_line_and_key(device: str, extra: str, line: int, message: str) -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_profile(REVERT_BASE.format(device=device, extra=extra), "inv.toml")
    text = str(exc.value)
    assert f"inv.toml:{line}" in text
    assert message in text


def test_every_shipped_inverter_setpoint_register_falls_back_by_itself() -> None:
    for model in ("sunspec_inverter_storage", "abb_pqstori", "trumpf_ac3025"):
        p = profile(model)
        regs = p.registers
        guarded = [n for n, r in regs.items() if r.revert_value is not None]
        assert any(r.plant_var == "inverter.p_setpoint_w" for n, r in regs.items() if n in guarded), model
        assert p.revert_timers(set(guarded)) or p.device.watchdog_s, model
