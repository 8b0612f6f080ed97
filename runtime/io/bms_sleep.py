"""The `bms_sleep` driver: puts the battery's BMS to sleep when idle and wakes it on demand.

The BMS's auxiliary supply (or its sleep input) hangs on a relay: a coil of a Modbus relay
module (profile `modbus_relay_io`, optionally with a feedback input) or a GPIO pin. The
controller asks through output tags:
  * `demand` (bool) - the battery is needed: wake at once;
  * `power_w` (optional) - battery power: idle also means |power| below `idle_power_w`;
  * `force_sleep` (optional bool) - sleep now (e.g. the site state's sleep request).
Idle for `idle_after_s` (and awake for at least `min_awake_s`) puts the BMS to sleep. Input
tags report `asleep`, `ready` (awake for `wake_time_s`, the BMS's boot time),
`sleep_time_s` and `sleep_count` (the accounting), `idle_s` and `relay_feedback`.
The time asleep restarts from 0 with the process: mark the tag `retain` to keep a total.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
from attrs import validators as v

from plc.tags import Area
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.config.structure import MISSING, ConfigErrors, Errors, _suggest, structure
from runtime.io.driver import Driver, DriverSettings, Point
from runtime.io.modbus.client import ModbusDriver
from runtime.io.modbus.config import ModbusConfig, ModbusOptions, ModbusPoint
from runtime.io.modbus.profile import Profile, load_profile, resolve_profile_path
from runtime.io.registry import DriverKind

log = logging.getLogger(__name__)

OUTPUTS = ("demand", "power_w", "force_sleep")
INPUTS = ("asleep", "ready", "sleep_time_s", "sleep_count", "idle_s", "relay_feedback")


@attrs.frozen
class RelayConfig:
    """Where the sleep relay is: a Modbus relay module's coil, or a GPIO pin."""

    kind: Literal["modbus", "gpio"]
    model: str = "modbus_relay_io"
    host: str = "127.0.0.1"
    port: int = attrs.field(default=502, validator=[v.ge(1), v.le(65535)])
    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = "tcp"
    serial_port: str = ""
    unit_id: int | None = None
    timeout_s: float = attrs.field(default=0.5, validator=v.gt(0.0))
    register: str = "relay_1"
    feedback: str = ""
    pin: int | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(53)]))
    pin_factory: Literal["default", "lgpio", "rpigpio", "native", "mock"] = "default"
    active_high: bool = True


@attrs.frozen
class SleepOptions:
    """`[devices.bms_sleep]`."""

    relay: RelayConfig
    idle_after_s: float = attrs.field(default=600.0, validator=v.ge(0.0))
    idle_power_w: float = attrs.field(default=50.0, validator=v.ge(0.0))
    min_awake_s: float = attrs.field(default=60.0, validator=v.ge(0.0))
    wake_time_s: float = attrs.field(default=5.0, validator=v.ge(0.0))
    energised_means: Literal["awake", "asleep"] = "awake"


@attrs.frozen
class SleepPoint:
    signal: Literal["demand", "power_w", "force_sleep", "asleep", "ready", "sleep_time_s", "sleep_count", "idle_s",
                    "relay_feedback"]


@attrs.frozen
class SleepConfig:
    options: SleepOptions
    profile: Profile | None


def parse_options(data: dict[str, Any], path: Path, errors: Errors) -> Any:
    options = structure(SleepOptions, data, path, errors)
    if options is MISSING:
        return MISSING
    relay, where = options.relay, path + ("relay",)
    if relay.kind == "gpio":
        if relay.pin is None:
            errors.add(where + ("pin",), "a GPIO relay needs its pin")
            return MISSING
        return SleepConfig(options, None)
    try:
        profile = load_profile(resolve_profile_path(model=relay.model))
    except ConfigErrors as exc:
        errors.add(where + ("model",), f"profile {exc.errors[0]}")
        return MISSING
    for key in ("register", "feedback"):
        name = getattr(relay, key)
        reg = profile.registers.get(name)
        if name and (reg is None or (key == "register" and reg.access != "rw")):
            errors.add(where + (key,), f"{name!r} is not a {'writable ' if key == 'register' else ''}register of "
                                       f"{relay.model!r}{_suggest(name, profile.registers)}")
            return MISSING
    return SleepConfig(options, profile)


def check_points(config: SleepConfig, points: Sequence[tuple[Any, SleepPoint, Path]]) -> list[tuple[Path, str]]:
    problems = []
    for tag, point, path in points:
        wanted = OUTPUTS if tag.area is Area.OUTPUT else INPUTS
        if point.signal not in wanted:
            problems.append((path + ("signal",), f"an {tag.area.value} tag binds one of {', '.join(wanted)}"))
        if point.signal == "relay_feedback" and config.profile is not None and not config.options.relay.feedback:
            problems.append((path + ("signal",), "relay_feedback needs relay.feedback = \"<input register>\""))
    return problems


class SleepController:
    """The decision, apart from any IO: when to sleep, when to wake, how long it slept."""

    def __init__(self, options: SleepOptions, now: float):
        self.o = options
        self.asleep = False
        self.awake_since = now
        self.idle_since: float | None = None
        self.sleep_started = math.nan
        self.slept_s = 0.0
        self.sleeps = 0

    def update(self, now: float, demand: bool, power_w: float | None, force_sleep: bool) -> bool:
        idle = not demand and (power_w is None or abs(power_w) < self.o.idle_power_w)
        if self.asleep:
            if demand and not force_sleep:
                self.asleep = False
                self.awake_since = now
                self.slept_s += now - self.sleep_started
                self.idle_since = None
            return self.asleep
        self.idle_since = (self.idle_since if self.idle_since is not None else now) if idle else None
        long_idle = self.idle_since is not None and now - self.idle_since >= self.o.idle_after_s
        if force_sleep or (long_idle and now - self.awake_since >= self.o.min_awake_s):
            self.asleep = True
            self.sleep_started = now
            self.sleeps += 1
        return self.asleep

    def report(self, now: float) -> dict[str, Any]:
        return {
            "asleep": self.asleep,
            "ready": not self.asleep and now - self.awake_since >= self.o.wake_time_s,
            "sleep_time_s": self.slept_s + (now - self.sleep_started if self.asleep else 0.0),
            "sleep_count": self.sleeps,
            "idle_s": 0.0 if self.idle_since is None or self.asleep else now - self.idle_since,
        }


class BmsSleepDriver(Driver):
    kind = "bms_sleep"

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, config: SleepConfig):
        super().__init__(name, inputs, outputs, clock, settings)
        self.options = config.options
        self.controller = SleepController(self.options, clock.now())
        self._requests: dict[str, Any] = {"demand": True, "power_w": None, "force_sleep": False}
        self.relay = _relay(name, config, clock, settings)

    def open(self) -> None:
        self.relay.open()

    def close(self) -> None:
        self.relay.close()

    def write_outputs(self, raw: Sequence[Any]) -> None:
        for point, value in zip(self.outputs, raw):
            if value is not None:
                self._requests[point.address.signal] = value

    def read_inputs(self, now: float) -> Sequence[Any]:
        r = self._requests
        was = self.controller.asleep
        asleep = self.controller.update(now, bool(r["demand"]), r["power_w"], bool(r["force_sleep"]))
        if asleep != was:
            log.info("device %s: BMS %s", self.name, "to sleep" if asleep else "woken on demand")
        feedback = self.relay.set(asleep == (self.options.energised_means == "asleep"), now)
        report = self.controller.report(now) | {"relay_feedback": feedback}
        return [report[p.address.signal] for p in self.inputs]


class _ModbusRelay:
    """The relay as a coil of a Modbus IO module, driven through the `modbus` driver's code."""

    def __init__(self, name: str, config: SleepConfig, clock: Clock, settings: DriverSettings):
        assert config.profile is not None, "parse_options loads the profile of a relay that is not a GPIO pin"
        relay = config.options.relay
        options = ModbusOptions(model=relay.model, host=relay.host, port=relay.port, transport=relay.transport,
                                serial_port=relay.serial_port, unit_id=relay.unit_id, timeout_s=relay.timeout_s,
                                retries=0)
        ins = [Point("relay_feedback", ModbusPoint(relay.feedback), is_bool=True)] if relay.feedback else []
        outs = [Point("relay", ModbusPoint(relay.register), is_bool=True)]
        self.driver = ModbusDriver(f"{name}.relay", ins, outs, clock, settings, ModbusConfig(options, config.profile))

    def open(self) -> None:
        self.driver.open()

    def close(self) -> None:
        self.driver.close()

    def set(self, energised: bool, now: float) -> bool | None:
        self.driver.write_outputs([energised])
        values = self.driver.read_inputs(now)
        value = values[0] if values else None
        return bool(value) if isinstance(value, (bool, int, float)) else None  # None: no feedback (yet)


class _GpioRelay:
    def __init__(self, config: SleepConfig):
        self.relay = config.options.relay
        self.device: Any = None
        self.factory: Any = None

    def open(self) -> None:
        from gpiozero import OutputDevice

        from runtime.io.gpio import make_factory

        if self.factory is None:
            self.factory = make_factory(self.relay.pin_factory, pwm=False)
        self.device = OutputDevice(self.relay.pin, active_high=self.relay.active_high, initial_value=False,
                                   pin_factory=self.factory)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None

    def set(self, energised: bool, now: float) -> bool | None:
        if bool(self.device.value) != energised:
            self.device.on() if energised else self.device.off()
        return bool(self.device.value)


def _relay(name: str, config: SleepConfig, clock: Clock, settings: DriverSettings) -> Any:
    return _GpioRelay(config) if config.options.relay.kind == "gpio" else _ModbusRelay(name, config, clock, settings)


KIND = DriverKind(name="bms_sleep", driver=BmsSleepDriver, options=SleepOptions, point=SleepPoint,
                  check=check_points, parse_options=parse_options)
