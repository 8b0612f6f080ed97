"""The `gpio` driver: Raspberry Pi pins through gpiozero (e-stop, buttons, LEDs, relays, PWM).

Inputs are debounced in software from gpiozero's edge callbacks: a level counts once it has
held for `debounce_s`, and with `latch = true` a press that came and went between two polls
still shows for one poll. An `estop` input is fail-safe: wired normally closed, an open
circuit (button pressed or wire cut) reads as pressed at once; only the release is debounced.
The pin factory is gpiozero's default on a Pi (lgpio or RPi.GPIO); `mock` is gpiozero's
MockFactory, used by the tests and by `ems run` off a Pi.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import attrs
from attrs import validators as v

from plc.tags import Area
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.io.driver import Driver, DriverSettings, Point
from runtime.io.registry import DriverKind

log = logging.getLogger(__name__)

INPUT_MODES = ("input", "button", "estop")
OUTPUT_MODES = ("led", "relay", "output", "pwm")


@attrs.frozen
class GpioOptions:
    """`[devices.gpio]`."""

    pin_factory: Literal["default", "lgpio", "rpigpio", "native", "mock"] = "default"


@attrs.frozen
class GpioPoint:
    """A tag's io keys: one pin and what hangs on it."""

    pin: int = attrs.field(validator=[v.ge(0), v.le(53)])
    mode: Literal["input", "button", "estop", "led", "relay", "output", "pwm"] = "input"
    pull_up: bool = True
    active_high: bool = True
    debounce_s: float = attrs.field(default=0.05, validator=[v.ge(0.0), v.le(5.0)])
    latch: bool = False


def check_points(options: GpioOptions, points: Sequence[tuple[Any, GpioPoint, Path]]) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    used: dict[int, str] = {}
    for tag, point, path in points:
        is_output = tag.area is Area.OUTPUT
        if is_output != (point.mode in OUTPUT_MODES):
            wanted = ", ".join(OUTPUT_MODES if is_output else INPUT_MODES)
            problems.append((path + ("mode",), f"an {'output' if is_output else 'input'} tag needs mode {wanted}"))
        if point.pin in used:
            problems.append((path + ("pin",), f"GPIO{point.pin} is already used by tag {used[point.pin]!r}"))
        used[point.pin] = tag.name
        if point.mode != "pwm" and is_output and tag.dtype.value != "bool":
            problems.append((path + ("mode",), "a digital output drives a bool tag; use mode = \"pwm\" for 0..1"))
    return problems


def make_factory(name: str, pwm: bool) -> Any:
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin) if pwm else MockFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    return None  # gpiozero's own choice


class DebouncedInput:
    """One input pin: edges recorded by gpiozero's callback thread, levels settled per poll."""

    def __init__(self, device: Any, point: GpioPoint, clock: Clock):
        self.device, self.point, self.clock = device, point, clock
        self._lock = threading.Lock()
        self._last_edge = clock.now()
        self._pressed_between = False
        self._active_since: float | None = clock.now() if device.is_active else None
        self.state = self._asserted(device.is_active)
        device.when_activated = self._edge
        device.when_deactivated = self._edge

    def _asserted(self, active: bool) -> bool:
        return not active if self.point.mode == "estop" else active  # e-stop: NC loop open = pressed

    def _edge(self) -> None:
        now = self.clock.now()
        with self._lock:
            active = self.device.is_active
            if active:
                self._active_since = now
            elif self._active_since is not None and now - self._active_since >= self.point.debounce_s:
                self._pressed_between = True  # a full press between two polls
            if not active:
                self._active_since = None
            self._last_edge = now

    def read(self, now: float) -> bool:
        with self._lock:
            asserted = self._asserted(self.device.is_active)
            settled = now - self._last_edge >= self.point.debounce_s
            if self.point.mode == "estop" and asserted:
                self.state = True  # fail-safe: pressed is reported at once
            elif settled:
                self.state = asserted
            latched = self.point.latch and self._pressed_between and self.point.mode != "estop"
            self._pressed_between = False
        return self.state or latched


class GpioDriver(Driver):
    kind = "gpio"

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, options: GpioOptions):
        super().__init__(name, inputs, outputs, clock, settings)
        self.options = options
        self.factory: Any = None
        self._inputs: list[DebouncedInput] = []
        self._outputs: list[Any] = []

    def open(self) -> None:
        from gpiozero import LED, DigitalInputDevice, OutputDevice, PWMOutputDevice

        pwm = any(p.address.mode == "pwm" for p in self.outputs)
        if self.factory is None:  # keep one factory for the driver's life (mock pins keep their state)
            self.factory = make_factory(self.options.pin_factory, pwm)
        kw = {"pin_factory": self.factory}
        self._inputs = [DebouncedInput(DigitalInputDevice(p.address.pin, pull_up=p.address.pull_up, **kw),
                                       p.address, self.clock) for p in self.inputs]
        kinds = {"led": LED, "relay": OutputDevice, "output": OutputDevice, "pwm": PWMOutputDevice}
        self._outputs = [kinds[p.address.mode](p.address.pin, active_high=p.address.active_high,
                                               initial_value=False if p.address.mode != "pwm" else 0.0, **kw)
                         for p in self.outputs]

    def close(self) -> None:
        for item in [i.device for i in self._inputs] + self._outputs:
            try:
                item.close()
            except Exception as exc:  # noqa: BLE001 - closing must not raise
                log.debug("device %s: closing a pin: %s", self.name, exc)
        self._inputs, self._outputs = [], []

    def read_inputs(self, now: float) -> Sequence[Any]:
        return [pin.read(now) for pin in self._inputs]

    def write_outputs(self, raw: Sequence[Any]) -> None:
        for device, point, value in zip(self._outputs, self.outputs, raw):
            if value is None:
                continue
            if point.address.mode == "pwm":
                device.value = min(1.0, max(0.0, float(value)))
            elif bool(value) != bool(device.value):
                device.on() if value else device.off()


KIND = DriverKind(name="gpio", driver=GpioDriver, options=GpioOptions, point=GpioPoint, check=check_points)
