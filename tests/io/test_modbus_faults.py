"""Bad input from Modbus devices: each case turns the right tags bad, is counted, is logged
once per change, and recovers by itself when the device behaves again."""

from __future__ import annotations

import logging
import time

import pytest
from io_kit import BAD, GOOD, em24, sample, value_of, wait_until
from testkit.waiting import holds_for

from runtime.clock import RealClock
from runtime.config.io_map import parse_io_map
from runtime.site import build_site


def warnings(caplog, text: str) -> int:  # type: ignore[no-untyped-def]
    return sum(text in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_exception_reply_turns_only_that_blocks_tags_bad_logged_once(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    meter, driver = em24(serve, run)
    meter.device.faults.exception_code = 2  # illegal data address
    meter.device.faults.exception_addresses = frozenset({0x0000})  # the voltage block only
    wait_until(lambda: sample(driver, "v")[1] is BAD)
    wait_until(lambda: driver.stats.exceptions >= 3, 10.0, "two more reads of the 1 s group, still failing")
    assert sample(driver, "v")[1] is BAD
    assert sample(driver, "p")[1] is GOOD
    assert driver.stats.exceptions >= 3
    assert warnings(caplog, "exception 2 (illegal data address)") == 1
    meter.device.faults.exception_code = 0
    wait_until(lambda: value_of(driver, "v") == pytest.approx(230.0), timeout_s=2.0)
    assert any("recovered" in r.getMessage() for r in caplog.records)


def test_silent_device_goes_stale_then_bad_then_recovers(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run, bad_after_s=0.8)
    meter.device.faults.silent = True
    silenced = time.monotonic()
    wait_until(lambda: driver.stats.timeouts >= 1)
    frozen = sample(driver, "p")

    def frozen_until_bad() -> bool:
        now = sample(driver, "p")
        if now[1] is BAD:
            return True
        assert now == frozen  # unchanged: its age makes it STALE in the scan
        return False

    wait_until(frozen_until_bad, 2.0, "p BAD after 0.8 s of silence")
    assert time.monotonic() - silenced >= 0.8
    assert driver.stats.timeouts >= 3
    assert warnings(caplog, "no answer") == 1
    meter.device.faults.silent = False
    wait_until(lambda: value_of(driver, "p") == pytest.approx(1500.0), timeout_s=3.0)


def test_reply_with_fewer_registers_is_bad_at_once_and_counted(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run)
    meter.device.faults.short = True
    wait_until(lambda: sample(driver, "p")[1] is BAD, timeout_s=1.0)
    wait_until(lambda: driver.stats.bad_responses >= 5)
    assert warnings(caplog, "malformed reply: 1 registers for 2 requested") <= 2  # one per block
    meter.device.faults.short = False
    wait_until(lambda: value_of(driver, "p") == pytest.approx(1500.0), timeout_s=2.0)


def test_truncated_reply_is_a_timeout_then_bad_and_recovers(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run, bad_after_s=0.5)
    meter.device.faults.truncated = True
    wait_until(lambda: sample(driver, "p")[1] is BAD, timeout_s=2.0)
    assert driver.stats.timeouts >= 2
    assert warnings(caplog, "no answer") == 1
    meter.device.faults.truncated = False
    wait_until(lambda: value_of(driver, "p") == pytest.approx(1500.0), timeout_s=3.0)


def test_garbled_reply_turns_tags_bad_and_the_driver_reconnects(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run)
    meter.device.faults.garbled = True
    wait_until(lambda: sample(driver, "p")[1] is BAD, timeout_s=2.0)
    wait_until(lambda: driver.fault_count >= 2, 10.0, "a second garbled reply, after the reconnect")
    faults = driver.fault_count
    assert faults >= 2
    assert warnings(caplog, "the connection was closed") == 1
    meter.device.faults.garbled = False
    wait_until(lambda: value_of(driver, "p") == pytest.approx(1500.0), timeout_s=3.0)
    assert driver.stats.reconnects >= 1


def test_disconnect_mid_poll_reconnects_by_itself(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run)
    meter.device.faults.disconnect = True  # the next request closes the connection unanswered
    wait_until(lambda: driver.fault_count >= 1, timeout_s=2.0)
    meter.device.set("p_total", -800.0)
    wait_until(lambda: value_of(driver, "p") == pytest.approx(-800.0), timeout_s=3.0)
    assert driver.stats.reconnects >= 1
    assert meter.connections == 1


def test_device_that_refuses_connections_is_retried_with_backoff(serve, sim_loop, run, caplog) -> None:  # type: ignore[no-untyped-def]
    meter, driver = em24(serve, run)
    sim_loop.run(meter.stop())
    wait_until(lambda: sample(driver, "p")[1] is BAD, timeout_s=3.0)
    bad_at = time.monotonic()
    wait_until(lambda: driver.fault_count >= 2, 10.0, "a second connection attempt")
    # and what must not happen: a tight loop, more than 8 attempts in the 1.5 s after the tags went BAD
    holds_for(lambda: driver.fault_count <= 8, bad_at + 1.5 - time.monotonic(), "backoff between attempts")
    attempts = driver.fault_count
    assert 2 <= attempts <= 8  # backoff 0.1 s doubling to 0.5 s, not a tight loop
    assert warnings(caplog, "cannot connect") == 1
    sim_loop.run(meter.start())
    meter.device.set("p_total", 1500.0)
    wait_until(lambda: value_of(driver, "p") == pytest.approx(1500.0), timeout_s=3.0)


SITE = """\
[site]
id = "two-devices"
scan_period_s = 0.05

[supervisor]
enabled = false

[[devices]]
name = "meter"
driver = "modbus"
poll_period_s = 0.05
stale_after_s = 0.5
[devices.modbus]
model = "carlo_gavazzi_em24"
port = {meter}
timeout_s = 0.3
retries = 1
bad_after_s = 1.0

[[devices]]
name = "inverter"
driver = "modbus"
poll_period_s = 0.05
stale_after_s = 0.5
[devices.modbus]
model = "abb_pqstori"
port = {inverter}
timeout_s = 0.3

[[tags]]
name = "grid_power_w"
dtype = "float32"
area = "input"
io = {{ device = "meter", register = "p_total" }}

[[tags]]
name = "inverter_p_w"
dtype = "float32"
area = "input"
io = {{ device = "inverter", register = "p_ac", scale = 1000.0 }}
"""


def test_silent_device_never_slows_the_scan_or_the_other_device(serve) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    inverter = serve("abb_pqstori")
    meter.device.faults.silent = True  # 0.3 s timeout x 2 tries per poll
    site = build_site(parse_io_map(SITE.format(meter=meter.port, inverter=inverter.port)), RealClock())
    seen: list[tuple[float, object, float]] = []
    site.engine.after_scan.append(lambda ctx: seen.append(
        (site.image["inverter_p_w"].value or 0.0, site.image["inverter_p_w"].quality, ctx.t_s)))
    site.start()
    try:
        import threading

        runner = threading.Thread(target=site.engine.run, args=(2.5,))
        runner.start()
        for kw in (1.0, 2.0, 3.0, 4.0):
            inverter.device.set("p_ac", kw)
            wait_until(lambda kw=kw: any(q is GOOD and round(v) == kw * 1000.0 for v, q, _ in seen), 2.5,
                       f"the scan sees the inverter at {kw} kW")
        runner.join(5.0)
    finally:
        site.stop()
    stats = site.engine.stats.summary()
    assert stats["overruns"] == 0
    assert stats["duration_p99_s"] < 0.005
    assert site.image["grid_power_w"].quality is BAD
    values = [v for v, q, _ in seen if q is GOOD]
    assert {1000.0, 2000.0, 3000.0, 4000.0} <= {round(v) for v in values}  # the inverter kept updating
    assert all(q is GOOD for _, q, t in seen if t > seen[0][2] + 0.3)
