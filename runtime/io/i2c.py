"""The `i2c` driver: sensors on an I2C bus through smbus2.

Sensor kinds (a tag's `sensor` key):
  * `bme680` - temperature, humidity, pressure, gas resistance (runtime/io/bme680.py);
  * `ads1115` - a 16-bit ADC channel in volts, for analog sensors (scale/offset in the io
    table turn volts into the sensor's unit, e.g. 4-20 mA across a shunt);
  * `register` - a custom sensor described by its register: address, length, type, byte order.
Each chip is read once per poll whatever the number of tags on it. A chip that does not
answer (OSError from the bus) turns its own tags BAD and is set up again on a later poll;
the other chips on the bus carry on.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
from attrs import validators as v

from plc.tags import Area
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.io.bme680 import Bme680
from runtime.io.driver import UNCHANGED, Driver, DriverSettings, Point
from runtime.io.registry import DriverKind

log = logging.getLogger(__name__)

_FORMATS = {"uint8": ">B", "int8": ">b", "uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i",
            "float32": ">f"}
_ADS_FSR = {6.144: 0, 4.096: 1, 2.048: 2, 1.024: 3, 0.512: 4, 0.256: 5}


@attrs.frozen
class I2cOptions:
    """`[devices.i2c]`: the bus number (/dev/i2c-N)."""

    bus: int = attrs.field(default=1, validator=v.ge(0))


@attrs.frozen
class I2cPoint:
    sensor: Literal["bme680", "ads1115", "register"]
    address: int = attrs.field(validator=[v.ge(0x03), v.le(0x77)])
    quantity: str = ""  # bme680
    channel: int = attrs.field(default=0, validator=[v.ge(0), v.le(3)])  # ads1115 single-ended AIN0..3
    full_scale_v: float = 4.096  # ads1115 programmable gain: 6.144, 4.096, 2.048, 1.024, 0.512, 0.256
    register: int = attrs.field(default=0, validator=[v.ge(0), v.le(255)])  # register sensor
    dtype: Literal["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32"] = "uint16"
    byte_order: Literal["big", "little"] = "big"


def check_points(options: I2cOptions, points: Sequence[tuple[Any, I2cPoint, Path]]) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    kinds: dict[int, str] = {}
    for tag, point, path in points:
        if tag.area is Area.OUTPUT:
            problems.append((path, "I2C sensors are inputs"))
        if point.sensor == "bme680" and point.quantity not in Bme680.QUANTITIES:
            problems.append((path + ("quantity",), f"a bme680 gives one of {', '.join(Bme680.QUANTITIES)}"))
        if point.sensor == "ads1115" and point.full_scale_v not in _ADS_FSR:
            problems.append((path + ("full_scale_v",), f"the ADS1115 ranges are {sorted(_ADS_FSR)} V"))
        other = kinds.setdefault(point.address, point.sensor)
        if other != point.sensor:
            problems.append((path + ("address",), f"0x{point.address:02X} is already a {other}"))
    return problems


class Ads1115:
    """TI ADS1115: one single-shot conversion per channel (128 samples/s, about 8 ms each)."""

    def __init__(self, address: int):
        self.address = address

    def setup(self, bus: Any) -> None:
        bus.read_i2c_block_data(self.address, 0x01, 2)  # answers: the chip is there

    def read(self, bus: Any, channel: int, full_scale_v: float) -> float:
        config = 0x8000 | (0x4 + channel) << 12 | _ADS_FSR[full_scale_v] << 9 | 0x0100 | 0b100 << 5 | 0b11
        bus.write_i2c_block_data(self.address, 0x01, [config >> 8, config & 0xFF])
        for _ in range(10):
            time.sleep(0.0085)
            hi, _lo = bus.read_i2c_block_data(self.address, 0x01, 2)
            if hi & 0x80:  # conversion done
                break
        else:
            raise OSError(f"ADS1115 at 0x{self.address:02X}: conversion did not finish")
        msb, lsb = bus.read_i2c_block_data(self.address, 0x00, 2)
        code = struct.unpack(">h", bytes((msb, lsb)))[0]
        return code * full_scale_v / 32768.0


def read_register(bus: Any, point: I2cPoint) -> float:
    fmt = _FORMATS[point.dtype]
    size = struct.calcsize(fmt)
    data = bytes(bus.read_i2c_block_data(point.address, point.register, size))
    if point.byte_order == "little":
        data = data[::-1]
    return float(struct.unpack(fmt, data)[0])


class I2cDriver(Driver):
    kind = "i2c"

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, options: I2cOptions, bus_factory: Callable[[], Any] | None = None):
        super().__init__(name, inputs, outputs, clock, settings)
        self.options = options
        self.bus_factory = bus_factory or self._smbus
        self.bus: Any = None
        self.chips: dict[int, Any] = {}
        self._ready: dict[int, bool] = {}
        self._errors: dict[int, str] = {}

    def _smbus(self) -> Any:
        from smbus2 import SMBus

        return SMBus(self.options.bus)

    def open(self) -> None:
        self.bus = self.bus_factory()
        self.chips = {}
        for point in self.inputs:
            p: I2cPoint = point.address
            if p.address not in self.chips:
                self.chips[p.address] = {"bme680": Bme680, "ads1115": Ads1115}.get(p.sensor, lambda a: None)(p.address)
        self._ready = {address: False for address in self.chips}

    def close(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None and hasattr(bus, "close"):
            bus.close()

    def read_inputs(self, now: float) -> Sequence[Any]:
        results: dict[int, Any] = {}
        for address, chip in self.chips.items():
            if chip is None:
                continue
            try:
                if not self._ready[address]:
                    chip.setup(self.bus)
                    self._ready[address] = True
                results[address] = chip.poll(self.bus) if isinstance(chip, Bme680) else chip
                self._ok(address)
            except OSError as exc:
                self._ready[address] = False
                results[address] = exc
                self._fail(address, str(exc))
        return [self._value(point.address, results) for point in self.inputs]

    def _value(self, p: I2cPoint, results: dict[int, Any]) -> Any:
        try:
            if p.sensor == "register":
                value = read_register(self.bus, p)
                self._ok(p.address)
                return value
            result = results.get(p.address)
            if isinstance(result, Exception):
                return None
            if p.sensor == "ads1115":
                assert result is not None, "check_points: an ads1115 address has no other kind, so has its chip"
                return result.read(self.bus, p.channel, p.full_scale_v)
            return UNCHANGED if result is None else result.get(p.quantity)
        except OSError as exc:
            self._fail(p.address, str(exc))
            return None

    def _fail(self, address: int, message: str) -> None:
        self.fault_count += 1
        if self._errors.get(address) != message:
            log.warning("device %s: I2C 0x%02X: %s", self.name, address, message)
            self._errors[address] = message

    def _ok(self, address: int) -> None:
        if self._errors.pop(address, None) is not None:
            log.info("device %s: I2C 0x%02X answers again", self.name, address)


KIND = DriverKind(name="i2c", driver=I2cDriver, options=I2cOptions, point=I2cPoint, check=check_points)
