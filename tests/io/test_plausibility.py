"""A reading the device cannot physically report is BAD, not a command (issue 22).

A meter saying 2e8 W on a house connection has a wrong word order, scale or CT setting; the
driver marks the tag BAD (its comm interlock then stops the battery, it is not driven to its
limits), logs it once, and takes the value again once it is plausible. A real EM24 simulator
serves the readings over Modbus TCP.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from io_kit import BAD, em24, sample, value_of, wait_until

from runtime.config.structure import ConfigErrors
from runtime.io.modbus.plausible import plausible_range
from runtime.io.modbus.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_a_power_reading_beyond_twice_the_rating_is_bad_and_logged_once(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run, rated_power_w=17250.0)  # 3 x 25 A at 230 V
    meter.device.set("p_total", 2e8)
    wait_until(lambda: sample(driver, "p")[1] is BAD, 2.0, "p_total BAD")
    wait_until(lambda: driver.stats.reads >= 10)
    assert sample(driver, "p")[1] is BAD and value_of(driver, "v") == pytest.approx(230.0)  # only that register
    assert warnings(caplog, "register p_total reads 2e+08 W, outside its plausible range -34500..34500 W") == 1


def test_a_reading_within_the_range_again_is_good_again(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    meter, driver = em24(serve, run, rated_power_w=17250.0)
    meter.device.set("p_total", -40000.0)
    wait_until(lambda: sample(driver, "p")[1] is BAD, 2.0, "p_total BAD")
    meter.device.set("p_total", -30000.0)  # a large export, but within twice the rating
    wait_until(lambda: value_of(driver, "p") == pytest.approx(-30000.0), 2.0, "p_total GOOD at -30 kW")
    assert any("register p_total plausible again" in r.getMessage() for r in caplog.records)


def test_a_voltage_beyond_low_voltage_is_bad_without_any_rating(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run)
    meter.device.set("v_l1_n", 5000.0)
    wait_until(lambda: sample(driver, "v")[1] is BAD, 3.0, "v_l1_n BAD at 5 kV")
    assert value_of(driver, "p") == pytest.approx(1500.0)


def test_without_a_rating_power_has_no_range_but_voltage_frequency_and_temperature_do() -> None:
    em24 = load_profile(ROOT / "io_maps" / "devices" / "carlo_gavazzi_em24.toml")
    regs = em24.registers
    assert plausible_range(regs["p_total"], None, None) is None
    assert plausible_range(regs["v_l1_n"], None, None) == (-1500.0, 1500.0)
    assert plausible_range(regs["frequency"], None, None) == (0.0, 100.0)
    assert plausible_range(regs["i_l1"], None, 65.0) == (-130.0, 130.0)


def test_a_profile_plausible_range_upside_down_is_a_named_error(tmp_path: Path) -> None:
    text = (ROOT / "io_maps" / "devices" / "carlo_gavazzi_em24.toml").read_text().replace(
        'description = "Active power L1 (+ import)", plant_var = "meter.p_l1_w"',
        'description = "Active power L1 (+ import)", plant_var = "meter.p_l1_w", plausible = [5000.0, -5000.0]')
    path = tmp_path / "em24.toml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as errors:
        load_profile(str(path))
    assert any("registers.p_l1.plausible: [5000.0, -5000.0] is not a range" in str(e) for e in errors.value.errors)
