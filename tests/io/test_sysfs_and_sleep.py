"""CPU temperature from sysfs, and BMS sleep control through a Modbus relay module or GPIO."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from io_kit import profile, wait_until

from runtime.clock import RealClock, VirtualClock
from runtime.config.io_map import parse_io_map
from runtime.io.bms_sleep import BmsSleepDriver, RelayConfig, SleepConfig, SleepController, SleepOptions, SleepPoint
from runtime.io.driver import DriverSettings, Point
from runtime.io.sysfs import CPU_TEMP, SysfsDriver, SysfsOptions, SysfsPoint


def test_cpu_temperature_is_read_in_millidegrees_and_scaled(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    zone = tmp_path / CPU_TEMP.lstrip("/")
    zone.parent.mkdir(parents=True)
    zone.write_text("48312\n")
    point = Point("cpu_temp_degc", SysfsPoint(), scale=0.001)
    driver = SysfsDriver("pi", [point], [], VirtualClock(), DriverSettings(), SysfsOptions(root=str(tmp_path)))
    assert point.to_engineering(driver.read_inputs(0.0)[0]) == pytest.approx(48.312)
    zone.unlink()
    assert driver.read_inputs(0.0) == [None] and driver.read_inputs(0.0) == [None]
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1
    zone.write_text("51000\n")
    assert driver.read_inputs(0.0) == [51000.0]


OPTIONS = SleepOptions(relay=RelayConfig(kind="gpio", pin=22, pin_factory="mock"), idle_after_s=600.0,
                       idle_power_w=50.0, min_awake_s=60.0, wake_time_s=5.0)


def test_idle_for_the_configured_time_puts_the_bms_to_sleep() -> None:
    ctl = SleepController(OPTIONS, now=0.0)
    assert ctl.update(100.0, demand=False, power_w=0.0, force_sleep=False) is False
    assert ctl.update(699.0, demand=False, power_w=10.0, force_sleep=False) is False
    assert ctl.update(700.0, demand=False, power_w=10.0, force_sleep=False) is True
    assert ctl.report(700.0)["sleep_count"] == 1


def test_power_above_the_idle_threshold_is_not_idle() -> None:
    ctl = SleepController(OPTIONS, now=0.0)
    for t in range(0, 2000, 100):
        assert ctl.update(float(t), demand=False, power_w=-800.0, force_sleep=False) is False


def test_demand_wakes_the_bms_and_sleep_time_is_accounted() -> None:
    ctl = SleepController(OPTIONS, now=0.0)
    ctl.update(0.0, demand=False, power_w=None, force_sleep=False)
    ctl.update(600.0, demand=False, power_w=None, force_sleep=False)  # asleep from t = 600
    assert ctl.report(1000.0)["sleep_time_s"] == pytest.approx(400.0)
    assert ctl.update(1500.0, demand=True, power_w=None, force_sleep=False) is False
    report = ctl.report(1502.0)
    assert report["sleep_time_s"] == pytest.approx(900.0)
    assert report["ready"] is False  # the BMS boots for wake_time_s = 5 s
    assert ctl.report(1505.0)["ready"] is True
    ctl.update(1510.0, demand=False, power_w=None, force_sleep=False)
    assert ctl.update(2110.0, demand=False, power_w=None, force_sleep=False) is True  # 600 s idle again
    assert ctl.report(2200.0)["sleep_time_s"] == pytest.approx(990.0)
    assert ctl.report(2200.0)["sleep_count"] == 2


def test_short_wake_stays_up_for_the_minimum_awake_time() -> None:
    options = SleepOptions(relay=OPTIONS.relay, idle_after_s=10.0, min_awake_s=60.0)
    ctl = SleepController(options, now=0.0)
    assert ctl.update(30.0, demand=False, power_w=None, force_sleep=False) is False
    assert ctl.update(59.0, demand=False, power_w=None, force_sleep=False) is False
    assert ctl.update(60.0, demand=False, power_w=None, force_sleep=False) is True


def test_force_sleep_sleeps_at_once() -> None:
    ctl = SleepController(OPTIONS, now=0.0)
    assert ctl.update(1.0, demand=True, power_w=2000.0, force_sleep=True) is True


def test_gpio_relay_follows_the_sleep_decision() -> None:
    clock = VirtualClock()
    ins = [Point(s, SleepPoint(s)) for s in ("asleep", "sleep_time_s")]
    outs = [Point("demand", SleepPoint("demand"), is_bool=True)]
    driver = BmsSleepDriver("sleep", ins, outs, clock, DriverSettings(), SleepConfig(OPTIONS, None))
    driver.open()
    pin = driver.relay.factory.pin(22)
    driver.write_outputs([True])
    assert driver.read_inputs(clock.now()) == [False, 0.0] and pin.state is True  # energised = awake
    driver.write_outputs([False])
    driver.read_inputs(clock.now())  # idle from here
    clock.advance(599.0)
    driver.read_inputs(clock.now())
    assert pin.state is True
    clock.advance(1.0)
    assert driver.read_inputs(clock.now())[0] is True and pin.state is False
    clock.advance(30.0)
    driver.write_outputs([True])
    assert driver.read_inputs(clock.now()) == [False, 30.0] and pin.state is True


SITE = """\
[site]
id = "sleep"

[[devices]]
name = "bms_power"
driver = "bms_sleep"
poll_period_s = 0.05
[devices.bms_sleep]
idle_after_s = 0.5
min_awake_s = 0.0
wake_time_s = 0.2
relay = {{ kind = "modbus", port = {port}, register = "relay_2", feedback = "input_2", timeout_s = 0.3 }}

[[tags]]
name = "bms_asleep"
dtype = "bool"
area = "input"
io = {{ device = "bms_power", signal = "asleep" }}

[[tags]]
name = "bms_relay_feedback"
dtype = "bool"
area = "input"
io = {{ device = "bms_power", signal = "relay_feedback" }}

[[tags]]
name = "battery_demand"
dtype = "bool"
area = "output"
safe_value = true
io = {{ device = "bms_power", signal = "demand" }}
"""


def test_modbus_relay_module_switches_the_bms_supply(serve, run) -> None:  # type: ignore[no-untyped-def]
    module = serve("modbus_relay_io")
    module.device.on_write = lambda name, value: module.device.set("input_2", value)  # contactor aux contact
    io_map = parse_io_map(SITE.format(port=module.port), "sleep.toml")
    device = io_map.devices[0]
    ins = [Point(t.name, io_map.tag_io[t.name][1], is_bool=True) for t in io_map.tags if t.area.value == "input"]
    outs = [Point("battery_demand", io_map.tag_io["battery_demand"][1], is_bool=True)]
    driver = run(BmsSleepDriver("bms_power", ins, outs, RealClock(),
                                DriverSettings(poll_period_s=device.poll_period_s), io_map.device_options["bms_power"]))
    driver.stage((True,))
    wait_until(lambda: module.device.get("relay_2") is True)
    wait_until(lambda: driver.latest[1][0] is True)  # feedback: supply on
    driver.stage((False,))
    wait_until(lambda: module.device.get("relay_2") is False, timeout_s=3.0)
    wait_until(lambda: driver.latest[0][0] is True and driver.latest[1][0] is False)
    driver.stage((True,))
    wait_until(lambda: module.device.get("relay_2") is True)
    assert profile("modbus_relay_io").registers["relay_2"].address == 1
