"""Bosch BME680 (temperature, humidity, pressure, gas) over I2C: registers and compensation.

Compensation follows the BME680 datasheet (section 3.3, floating-point formulas) and the
calibration layout of Bosch's BME68x API (0x8A..0xA0, 0xE1..0xEE, 0x00..0x04). One
measurement per poll in forced mode: the driver reads the previous result and triggers
the next, so it never waits for the conversion or the gas heater.
"""

from __future__ import annotations

from typing import Any

import attrs

CHIP_ID_REG, CHIP_ID = 0xD0, 0x61
RESET_REG, RESET_CMD = 0xE0, 0xB6
STATUS_REG = 0x1D  # meas_status_0: bit 7 new_data_0, bit 6 gas_measuring, bit 5 measuring
DATA_REG = 0x1F  # press_msb .. gas_r_lsb, 13 bytes
CTRL_GAS_0, CTRL_GAS_1, CTRL_HUM, CTRL_MEAS, CONFIG = 0x70, 0x71, 0x72, 0x74, 0x75
RES_HEAT_0, GAS_WAIT_0 = 0x5A, 0x64

_GAS_K1 = (1.0, 1.0, 1.0, 1.0, 1.0, 0.99, 1.0, 0.992, 1.0, 1.0, 0.998, 0.995, 1.0, 0.99, 1.0, 1.0)
_GAS_K2 = (8000000.0, 4000000.0, 2000000.0, 1000000.0, 499500.4995, 248262.1648, 125000.0, 63004.03226,
           31281.28128, 15625.0, 7812.5, 3906.25, 1953.125, 976.5625, 488.28125, 244.140625)


def _s8(v: int) -> int:
    return v - 256 if v > 127 else v


def _s16(lo: int, hi: int) -> int:
    v = lo | hi << 8
    return v - 65536 if v > 32767 else v


@attrs.frozen
class Calibration:
    par_t1: int
    par_t2: int
    par_t3: int
    par_p1: int
    par_p2: int
    par_p3: int
    par_p4: int
    par_p5: int
    par_p6: int
    par_p7: int
    par_p8: int
    par_p9: int
    par_p10: int
    par_h1: int
    par_h2: int
    par_h3: int
    par_h4: int
    par_h5: int
    par_h6: int
    par_h7: int
    par_gh1: int
    par_gh2: int
    par_gh3: int
    res_heat_val: int
    res_heat_range: int
    range_sw_err: int


def parse_calibration(c1: list[int], c2: list[int], c3: list[int]) -> Calibration:
    """c1: 23 bytes from 0x8A, c2: 14 bytes from 0xE1, c3: 5 bytes from 0x00."""
    return Calibration(
        par_t1=c2[8] | c2[9] << 8, par_t2=_s16(c1[0], c1[1]), par_t3=_s8(c1[2]),
        par_p1=c1[4] | c1[5] << 8, par_p2=_s16(c1[6], c1[7]), par_p3=_s8(c1[8]),
        par_p4=_s16(c1[10], c1[11]), par_p5=_s16(c1[12], c1[13]), par_p6=_s8(c1[15]), par_p7=_s8(c1[14]),
        par_p8=_s16(c1[18], c1[19]), par_p9=_s16(c1[20], c1[21]), par_p10=c1[22],
        par_h1=c2[2] << 4 | (c2[1] & 0x0F), par_h2=c2[0] << 4 | c2[1] >> 4, par_h3=_s8(c2[3]),
        par_h4=_s8(c2[4]), par_h5=_s8(c2[5]), par_h6=c2[6], par_h7=_s8(c2[7]),
        par_gh1=_s8(c2[12]), par_gh2=_s16(c2[10], c2[11]), par_gh3=_s8(c2[13]),
        res_heat_val=_s8(c3[0]), res_heat_range=(c3[2] & 0x30) >> 4, range_sw_err=_s8(c3[4] & 0xF0) // 16,
    )


def temperature(cal: Calibration, adc_t: int) -> tuple[float, float]:
    """(degC, t_fine)."""
    var1 = (adc_t / 16384.0 - cal.par_t1 / 1024.0) * cal.par_t2
    var2 = (adc_t / 131072.0 - cal.par_t1 / 8192.0) ** 2 * (cal.par_t3 * 16.0)
    t_fine = var1 + var2
    return t_fine / 5120.0, t_fine


def pressure(cal: Calibration, adc_p: int, t_fine: float) -> float:
    """Pa."""
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * (cal.par_p6 / 131072.0)
    var2 = var2 + var1 * cal.par_p5 * 2.0
    var2 = var2 / 4.0 + cal.par_p4 * 65536.0
    var1 = ((cal.par_p3 * var1 * var1) / 16384.0 + cal.par_p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.par_p1
    if var1 == 0:
        raise ValueError("pressure compensation divides by zero (calibration not read?)")
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.par_p9 * p * p / 2147483648.0
    var2 = p * (cal.par_p8 / 32768.0)
    var3 = (p / 256.0) ** 3 * (cal.par_p10 / 131072.0)
    return p + (var1 + var2 + var3 + cal.par_p7 * 128.0) / 16.0


def humidity(cal: Calibration, adc_h: int, t_fine: float) -> float:
    """%RH, clamped to 0..100."""
    temp = t_fine / 5120.0
    var1 = adc_h - (cal.par_h1 * 16.0 + cal.par_h3 / 2.0 * temp)
    var2 = var1 * (cal.par_h2 / 262144.0 * (1.0 + cal.par_h4 / 16384.0 * temp + cal.par_h5 / 1048576.0 * temp * temp))
    var3 = cal.par_h6 / 16384.0
    var4 = cal.par_h7 / 2097152.0
    return min(100.0, max(0.0, var2 + (var3 + var4 * temp) * var2 * var2))


def gas_resistance(cal: Calibration, adc_g: int, gas_range: int) -> float:
    """Ohm (BME680; the BME688 uses a different formula)."""
    var1 = (1340.0 + 5.0 * cal.range_sw_err) * _GAS_K1[gas_range]
    return var1 * _GAS_K2[gas_range] / (adc_g - 512.0 + var1)


def heater_resistance(cal: Calibration, target_degc: float, ambient_degc: float) -> int:
    """The res_heat_0 code that heats the plate to `target_degc`."""
    var1 = cal.par_gh1 / 16.0 + 49.0
    var2 = cal.par_gh2 / 32768.0 * 0.0005 + 0.00235
    var3 = cal.par_gh3 / 1024.0
    var4 = var1 * (1.0 + var2 * target_degc)
    var5 = var4 + var3 * ambient_degc
    code = 3.4 * (var5 * (4.0 / (4.0 + cal.res_heat_range)) * (1.0 / (1.0 + cal.res_heat_val * 0.002)) - 25.0)
    return max(0, min(255, int(code)))


def gas_wait_code(duration_ms: int) -> int:
    """gas_wait_0 encoding: 6-bit value times a factor of 1, 4, 16 or 64."""
    if duration_ms >= 0xFC0:
        return 0xFF
    factor = 0
    while duration_ms > 0x3F:
        duration_ms //= 4
        factor += 1
    return duration_ms + factor * 64


class Bme680:
    """One BME680 on a bus object with smbus2's read/write methods."""

    QUANTITIES = ("temperature_degc", "humidity_pct", "pressure_pa", "gas_ohm")

    def __init__(self, address: int, heater_degc: float = 320.0, heater_ms: int = 150):
        self.address = address
        self.heater_degc = heater_degc
        self.heater_ms = heater_ms
        self.cal: Calibration | None = None
        self.last: dict[str, float | None] = {}
        self._ambient = 25.0

    def setup(self, bus: Any) -> None:
        chip = bus.read_byte_data(self.address, CHIP_ID_REG)
        if chip != CHIP_ID:
            raise OSError(f"no BME680 at 0x{self.address:02X} (chip id 0x{chip:02X}, expected 0x{CHIP_ID:02X})")
        self.cal = parse_calibration(bus.read_i2c_block_data(self.address, 0x8A, 23),
                                     bus.read_i2c_block_data(self.address, 0xE1, 14),
                                     bus.read_i2c_block_data(self.address, 0x00, 5))
        bus.write_byte_data(self.address, CTRL_HUM, 0b010)  # humidity x2
        bus.write_byte_data(self.address, CONFIG, 0b010 << 2)  # IIR filter 3
        self.trigger(bus)

    def trigger(self, bus: Any) -> None:
        """Start one forced-mode measurement (temperature x8, pressure x4) with the gas heater."""
        assert self.cal is not None
        bus.write_byte_data(self.address, RES_HEAT_0, heater_resistance(self.cal, self.heater_degc, self._ambient))
        bus.write_byte_data(self.address, GAS_WAIT_0, gas_wait_code(self.heater_ms))
        bus.write_byte_data(self.address, CTRL_GAS_1, 0x10)  # run_gas, heater profile 0
        bus.write_byte_data(self.address, CTRL_MEAS, 0b100 << 5 | 0b011 << 2 | 0b01)

    def poll(self, bus: Any) -> dict[str, float | None] | None:
        """The result of the last measurement (None while it runs), then trigger the next."""
        assert self.cal is not None
        status = bus.read_byte_data(self.address, STATUS_REG)
        if not status & 0x80:
            return None
        d = bus.read_i2c_block_data(self.address, DATA_REG, 13)
        adc_p = d[0] << 12 | d[1] << 4 | d[2] >> 4
        adc_t = d[3] << 12 | d[4] << 4 | d[5] >> 4
        adc_h = d[6] << 8 | d[7]
        adc_g = d[11] << 2 | d[12] >> 6
        gas_valid, heat_stable, gas_range = d[12] & 0x20, d[12] & 0x10, d[12] & 0x0F
        t, t_fine = temperature(self.cal, adc_t)
        self._ambient = t
        self.last = {
            "temperature_degc": t,
            "pressure_pa": pressure(self.cal, adc_p, t_fine),
            "humidity_pct": humidity(self.cal, adc_h, t_fine),
            "gas_ohm": gas_resistance(self.cal, adc_g, gas_range) if gas_valid and heat_stable else None,
        }
        self.trigger(bus)
        return self.last
