"""Helpers for the IO tests: real peers on 127.0.0.1, and testkit's waiting.

Nothing here replaces our own code: devices are pymodbus servers built from the shipped
profiles (ems/devsim), CAN buses are python-can buses, drivers are the production ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from testkit.serial_line import NullModem  # noqa: F401  (the io tests take it from here)
from testkit.waiting import wait_until

from plc.tags import Quality
from runtime.clock import RealClock
from runtime.io.driver import DriverSettings, Point
from runtime.io.modbus.client import ModbusDriver
from runtime.io.modbus.config import ModbusConfig, ModbusOptions, ModbusPoint
from runtime.io.modbus.profile import load_profile, resolve_profile_path

GOOD, STALE, BAD = Quality.GOOD, Quality.STALE, Quality.BAD


def profile(model: str):  # type: ignore[no-untyped-def]
    return load_profile(resolve_profile_path(model=model))


def point(tag: str, is_bool: bool = False, scale: float = 1.0, **address: Any) -> Point:
    return Point(tag, ModbusPoint(**address), scale=scale, is_bool=is_bool)


def modbus_driver(model: str, port: int, ins: Sequence[Point], outs: Sequence[Point] = (), poll_s: float = 0.05,
                  **options: Any) -> ModbusDriver:
    options.setdefault("timeout_s", 0.2)
    options.setdefault("retries", 0)
    config = ModbusConfig(ModbusOptions(model=model, port=port, **options), profile(model))
    settings = DriverSettings(poll_period_s=poll_s, backoff_initial_s=0.1, backoff_max_s=0.5, hang_timeout_s=5.0)
    return ModbusDriver(model, ins, outs, RealClock(), settings, config)


def em24(serve: Any, run: Any, **options: Any) -> tuple[Any, ModbusDriver]:
    """A simulated EM24 reading 1500 W and 230 V, and a driver reading both (p, v), both GOOD."""
    meter = serve("carlo_gavazzi_em24")
    meter.device.set("p_total", 1500.0)
    meter.device.set("v_l1_n", 230.0)
    driver = run(modbus_driver("carlo_gavazzi_em24", meter.port, [
        point("p", register="p_total"), point("v", register="v_l1_n")], **options))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    return meter, driver


def sample(driver: Any, tag: str) -> Any:
    index = [p.tag for p in driver.inputs].index(tag)
    return driver.latest[index]


def value_of(driver: Any, tag: str) -> Any:
    s = sample(driver, tag)
    return s[0] if s[1] is GOOD else None




def can_point(tag: str, is_bool: bool = False, **address: Any) -> Point:
    from runtime.io.can.bms import CanPoint

    return Point(tag, CanPoint(**address), is_bool=is_bool)


def can_driver(channel: str, ins: Sequence[Point], outs: Sequence[Point] = (), family: str = "cbms",
               version: str = "2.5", interface: str = "virtual", poll_s: float = 0.02, **options: Any):  # type: ignore[no-untyped-def]
    from runtime.io.can.bms import CanBmsConfig, CanBmsDriver, CanBmsOptions
    from runtime.io.can.dbc import resolve_dbc

    options.setdefault("racks", 4)
    opts = CanBmsOptions(interface=interface, channel=channel, family=family, version=version, **options)  # type: ignore[arg-type]
    settings = DriverSettings(poll_period_s=poll_s, backoff_initial_s=0.1, backoff_max_s=0.5)
    return CanBmsDriver("bms", ins, outs, RealClock(), settings,
                        CanBmsConfig(opts, str(resolve_dbc(family=family, version=version))))
