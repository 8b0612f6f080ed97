"""GPIO through gpiozero's mock pin factory: debounce, latch, fail-safe e-stop, outputs."""

from __future__ import annotations

import pytest

from runtime.clock import VirtualClock
from runtime.config.io_map import parse_io_map
from runtime.config.structure import ConfigErrors
from runtime.io.driver import DriverSettings, Point
from runtime.io.gpio import GpioDriver, GpioOptions, GpioPoint


def gpio(clock: VirtualClock, ins: list[Point], outs: list[Point] = []) -> GpioDriver:  # noqa: B006
    driver = GpioDriver("io", ins, outs, clock, DriverSettings(), GpioOptions(pin_factory="mock"))
    driver.open()
    return driver


def test_button_press_counts_once_it_has_held_for_the_debounce_time() -> None:
    clock = VirtualClock()
    driver = gpio(clock, [Point("start_button", GpioPoint(pin=5, mode="button", debounce_s=0.05), is_bool=True)])
    pin = driver.factory.pin(5)
    assert driver.read_inputs(clock.now()) == [False]
    pin.drive_low()  # pressed: pulled-up input shorted to ground
    clock.advance(0.02)
    assert driver.read_inputs(clock.now()) == [False]  # not settled yet
    clock.advance(0.04)
    assert driver.read_inputs(clock.now()) == [True]


def test_contact_bounce_shorter_than_the_debounce_time_is_ignored() -> None:
    clock = VirtualClock()
    driver = gpio(clock, [Point("b", GpioPoint(pin=6, mode="button", debounce_s=0.05), is_bool=True)])
    pin = driver.factory.pin(6)
    for _ in range(5):  # 10 ms chatter
        pin.drive_low()
        clock.advance(0.005)
        pin.drive_high()
        clock.advance(0.005)
        assert driver.read_inputs(clock.now()) == [False]
    clock.advance(0.1)
    assert driver.read_inputs(clock.now()) == [False]


def test_latched_button_shows_a_press_that_came_and_went_between_polls() -> None:
    clock = VirtualClock()
    driver = gpio(clock, [Point("b", GpioPoint(pin=7, mode="button", debounce_s=0.02, latch=True), is_bool=True)])
    pin = driver.factory.pin(7)
    driver.read_inputs(clock.now())
    pin.drive_low()
    clock.advance(0.06)
    pin.drive_high()
    clock.advance(0.05)
    assert driver.read_inputs(clock.now()) == [True]  # seen although released before the poll
    clock.advance(0.1)
    assert driver.read_inputs(clock.now()) == [False]


def test_estop_is_fail_safe_pressed_at_once_released_after_debounce() -> None:
    clock = VirtualClock()
    driver = gpio(clock, [Point("estop", GpioPoint(pin=17, mode="estop", debounce_s=0.1), is_bool=True)])
    pin = driver.factory.pin(17)
    assert driver.read_inputs(clock.now()) == [True]  # loop open at power-up (or wire cut): stop
    pin.drive_low()  # normally-closed loop made
    clock.advance(0.15)
    assert driver.read_inputs(clock.now()) == [False]
    pin.drive_high()  # button pressed: loop opens
    assert driver.read_inputs(clock.now()) == [True]  # no debounce delay on the way to "stop"
    pin.drive_low()
    clock.advance(0.05)
    assert driver.read_inputs(clock.now()) == [True]  # release waits for the debounce time
    clock.advance(0.1)
    assert driver.read_inputs(clock.now()) == [False]


def test_led_relay_and_pwm_outputs_drive_their_pins() -> None:
    clock = VirtualClock()
    driver = gpio(clock, [], [Point("fault_led", GpioPoint(pin=20, mode="led"), is_bool=True),
                              Point("contactor", GpioPoint(pin=21, mode="relay", active_high=False), is_bool=True),
                              Point("fan", GpioPoint(pin=12, mode="pwm"))])
    driver.write_outputs([True, True, 0.4])
    assert driver.factory.pin(20).state == 1  # PWM-capable mock pins report levels as numbers
    assert driver.factory.pin(21).state == 0  # active-low relay board: on = pin low
    assert driver.factory.pin(12).state == pytest.approx(0.4)
    driver.write_outputs([False, False, 1.7])
    assert (driver.factory.pin(20).state, driver.factory.pin(21).state) == (0, 1)
    assert driver.factory.pin(12).state == pytest.approx(1.0)  # clamped to 0..1


SITE = """\
[site]
id = "gpio"

[[devices]]
name = "io"
driver = "gpio"
[devices.gpio]
pin_factory = "mock"

[[tags]]
name = "estop_pressed"
dtype = "bool"
area = "input"
io = { device = "io", pin = 17, mode = "estop" }

[[tags]]
name = "run_led"
dtype = "bool"
area = "output"
safe_value = false
io = { device = "io", pin = 17, mode = "button" }
"""


def test_io_map_refuses_a_pin_used_twice_and_an_input_mode_on_an_output() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(SITE, "gpio.toml")
    found = [str(e) for e in exc.value.errors]
    assert any(m.startswith("gpio.toml:21: tags[1].io.mode: an output tag needs mode led, relay, output, pwm")
               for m in found), found
    assert any(m.startswith("gpio.toml:21: tags[1].io.pin: GPIO17 is already used by tag 'estop_pressed'")
               for m in found), found
