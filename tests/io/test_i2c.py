"""I2C sensors. No I2C bus exists on this machine (no /dev/i2c-*), so the driver talks to
fake bus objects with smbus2's method names that behave like the chips at register level."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest

from runtime.clock import VirtualClock
from runtime.io import bme680
from runtime.io.driver import DriverSettings, Point
from runtime.io.i2c import I2cDriver, I2cOptions, I2cPoint

# A real BME680's calibration dump (pimoroni/bme680-python issue #11, their test fixture), and
# the values Bosch's integer API gives for it: 26.69 degC, 98712 Pa, 42.402 %RH, 12946860 ohm.
CAL = {"par_t1": 26041, "par_t2": 26469, "par_t3": 3, "par_p1": 36673, "par_p2": -10515, "par_p3": 88, "par_p4": 7310,
           "par_p5": -129, "par_p6": 30, "par_p7": 46, "par_p8": -3177, "par_p9": -2379, "par_p10": 30, "par_h1": 676, "par_h2": 1029,
           "par_h3": 0, "par_h4": 45, "par_h5": 20, "par_h6": 120, "par_h7": -100, "par_gh1": -30, "par_gh2": -24754, "par_gh3": 18,
           "res_heat_val": 48, "res_heat_range": 1, "range_sw_err": 0}
ADC_T, ADC_P, ADC_H = 501240, 353485, 19019


class FakeBus:
    """Register files per address; counts block reads; `absent` addresses raise like smbus2."""

    def __init__(self) -> None:
        self.regs: dict[int, list[int]] = {}
        self.block_reads: dict[tuple[int, int], int] = {}
        self.absent: set[int] = set()
        self.devices: dict[int, Any] = {}  # chips with 16-bit registers: read(register, n), write(register, data)

    def _chip(self, address: int) -> list[int]:
        if address in self.absent:
            raise OSError(121, "Remote I/O error")
        return self.regs[address]

    def read_byte_data(self, address: int, register: int) -> int:
        return self._chip(address)[register]

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self._chip(address)[register] = value

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        self.block_reads[(address, register)] = self.block_reads.get((address, register), 0) + 1
        if address in self.devices:
            return self.devices[address].read(register, length)
        return list(self._chip(address)[register:register + length])

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        if address in self.devices:
            self.devices[address].write(register, data)
            return
        self._chip(address)[register:register + len(data)] = data


def bme680_registers(adc_t: int = ADC_T, adc_p: int = ADC_P, adc_h: int = ADC_H, gas: tuple[int, int] = (0, 0)) -> list[int]:
    """The chip's register file, laid out as the datasheet says (independently of the driver)."""
    r = [0] * 256
    r[0xD0] = 0x61
    le16 = lambda v: list(struct.pack("<h" if v < 0 else "<H", v))
    s8 = lambda v: v & 0xFF
    c = CAL
    r[0x8A:0x8C], r[0x8C] = le16(c["par_t2"]), s8(c["par_t3"])
    r[0x8E:0x90], r[0x90:0x92], r[0x92] = le16(c["par_p1"]), le16(c["par_p2"]), s8(c["par_p3"])
    r[0x94:0x96], r[0x96:0x98], r[0x98], r[0x99] = le16(c["par_p4"]), le16(c["par_p5"]), s8(c["par_p7"]), s8(c["par_p6"])
    r[0x9C:0x9E], r[0x9E:0xA0], r[0xA0] = le16(c["par_p8"]), le16(c["par_p9"]), c["par_p10"]
    r[0xE1] = c["par_h2"] >> 4
    r[0xE2] = (c["par_h2"] & 0x0F) << 4 | (c["par_h1"] & 0x0F)
    r[0xE3] = c["par_h1"] >> 4
    r[0xE4], r[0xE5], r[0xE6], r[0xE7], r[0xE8] = (s8(c[k]) for k in ("par_h3", "par_h4", "par_h5", "par_h6", "par_h7"))
    r[0xE9:0xEB], r[0xEB:0xED] = le16(c["par_t1"]), le16(c["par_gh2"])
    r[0xED], r[0xEE] = s8(c["par_gh1"]), s8(c["par_gh3"])
    r[0x00], r[0x02], r[0x04] = s8(c["res_heat_val"]), c["res_heat_range"] << 4, (c["range_sw_err"] & 0x0F) << 4
    r[0x1D] = 0x80  # new data
    r[0x1F:0x22] = [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4]
    r[0x22:0x25] = [adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4]
    r[0x25:0x27] = [adc_h >> 8, adc_h & 0xFF]
    adc_g, gas_range = gas
    r[0x2A:0x2C] = [adc_g >> 2, (adc_g & 0x03) << 6 | 0x20 | 0x10 | gas_range]  # valid, heater stable
    return r


def driver_on(bus: FakeBus, *points: tuple[str, dict[str, Any]], scale: float = 1.0, offset: float = 0.0) -> I2cDriver:
    ins = [Point(tag, I2cPoint(**p), scale=scale, offset=offset) for tag, p in points]
    driver = I2cDriver("i2c", ins, [], VirtualClock(), DriverSettings(), I2cOptions(bus=1), bus_factory=lambda: bus)
    driver.open()
    return driver


def test_calibration_is_parsed_from_the_datasheet_register_layout() -> None:
    r = bme680_registers()
    cal = bme680.parse_calibration(r[0x8A:0x8A + 23], r[0xE1:0xE1 + 14], r[0x00:0x05])
    assert attrs_dict(cal) == CAL


def attrs_dict(cal: bme680.Calibration) -> dict[str, int]:
    import attrs

    return attrs.asdict(cal)


def test_bme680_compensation_matches_a_real_sensors_reference_values() -> None:
    bus = FakeBus()
    bus.regs[0x77] = bme680_registers()
    driver = driver_on(bus, *[(q, {"sensor": "bme680", "address": 0x77, "quantity": q}) for q in bme680.Bme680.QUANTITIES])
    t, h, p, gas = driver.read_inputs(0.0)
    assert t == pytest.approx(26.69, abs=0.01)
    assert p == pytest.approx(98712, abs=5)
    assert h == pytest.approx(42.40, abs=0.05)
    assert gas == pytest.approx(12_946_860, rel=1e-6)


def test_bme680_is_read_once_per_poll_whatever_the_number_of_tags() -> None:
    bus = FakeBus()
    bus.regs[0x76] = bme680_registers()
    driver = driver_on(bus, *[(q, {"sensor": "bme680", "address": 0x76, "quantity": q}) for q in bme680.Bme680.QUANTITIES])
    for _ in range(3):
        driver.read_inputs(0.0)
    assert bus.block_reads[(0x76, bme680.DATA_REG)] == 3
    assert bus.regs[0x76][bme680.CTRL_MEAS] & 0x03 == 0x01  # the next forced measurement is triggered


def test_missing_chip_turns_only_its_tags_bad_logged_once_and_recovers(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    bus = FakeBus()
    bus.regs[0x77] = bme680_registers()
    bus.regs[0x48] = [0] * 256
    bus.regs[0x48][0:2] = [0x19, 0x00]  # TMP102: 0x1900 -> 25.0 degC
    driver = driver_on(bus, ("t_enclosure", {"sensor": "bme680", "address": 0x77, "quantity": "temperature_degc"}),
                       ("t_board", {"sensor": "register", "address": 0x48, "register": 0x00, "dtype": "int16"}))
    bus.absent.add(0x77)
    for _ in range(3):
        values = driver.read_inputs(0.0)
        assert values[0] is None and values[1] == 0x1900
    assert sum("I2C 0x77" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    bus.absent.clear()
    assert driver.read_inputs(0.0)[0] == pytest.approx(26.69, abs=0.01)  # set up again, then read
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_custom_register_sensor_with_io_scaling() -> None:
    bus = FakeBus()
    bus.regs[0x48] = [0] * 256
    bus.regs[0x48][0:2] = [0xE7, 0x00]  # TMP102 -25.0 degC: 12-bit left aligned, 1/16 degC per count
    driver = driver_on(bus, ("t", {"sensor": "register", "address": 0x48, "register": 0x00, "dtype": "int16"}),
                       scale=1 / 256)
    point = driver.inputs[0]
    assert point.to_engineering(driver.read_inputs(0.0)[0]) == pytest.approx(-25.0)


class FakeAds1115:
    """16-bit registers 0 (conversion) and 1 (config); a single-shot start converts the
    voltage set for the selected channel at the selected full-scale range."""

    def __init__(self, volts: list[float]):
        self.volts = volts
        self.registers = {0x00: 0, 0x01: 0x8583}  # the chip's reset values

    def read(self, register: int, length: int) -> list[int]:
        return list(self.registers[register].to_bytes(2, "big"))[:length]

    def write(self, register: int, data: list[int]) -> None:
        config = data[0] << 8 | data[1]
        if register == 0x01 and config & 0x8000:
            channel = (config >> 12 & 0x7) - 4
            fsr = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256}[config >> 9 & 0x7]
            code = max(-32768, min(32767, round(self.volts[channel] / fsr * 32768)))
            self.registers[0x00] = code & 0xFFFF
        self.registers[register] = config | 0x8000  # OS bit reads 1: conversion done


def test_analog_4_20ma_sensor_through_the_ads1115() -> None:
    bus = FakeBus()
    bus.devices[0x48] = FakeAds1115([0.0, 1.2, 0.0, 0.0])  # 12 mA across a 100 ohm shunt
    # 4..20 mA on 100 ohm is 0.4..2.0 V; the sensor spans 0..10 bar: bar = (V - 0.4) * 6.25
    driver = driver_on(bus, ("pressure_bar", {"sensor": "ads1115", "address": 0x48, "channel": 1, "full_scale_v": 2.048}),
                       scale=6.25, offset=-2.5)
    volts = driver.read_inputs(0.0)[0]
    assert volts == pytest.approx(1.2, abs=1e-4)
    assert driver.inputs[0].to_engineering(volts) == pytest.approx(5.0, abs=1e-3)
