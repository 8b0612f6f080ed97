"""The Modbus driver against profile-driven pymodbus servers on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from io_kit import BAD, GOOD, NullModem, modbus_driver, point, profile, sample, value_of, wait_until
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from testkit.waiting import holds_for

from ems.devsim.modbus_device import ProfileDevice


def test_em24_values_arrive_scaled_with_lsw_first_word_order(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    meter.device.set("p_total", -1234.5)
    meter.device.set("v_l1_n", 231.2)
    meter.device.set("i_l1", 12.345)
    meter.device.set("energy_import", 98_765_400.0)
    meter.device.set("frequency", 50.1)
    driver = run(modbus_driver("carlo_gavazzi_em24", meter.port, [
        point("grid_power_w", register="p_total"), point("v1", register="v_l1_n"),
        point("i1", register="i_l1"), point("e_in", register="energy_import"), point("hz", register="frequency"),
    ]))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert value_of(driver, "grid_power_w") == pytest.approx(-1234.5)
    assert value_of(driver, "v1") == pytest.approx(231.2)
    assert value_of(driver, "i1") == pytest.approx(12.345)
    assert value_of(driver, "e_in") == pytest.approx(98_765_400.0)
    assert value_of(driver, "hz") == pytest.approx(50.1)


def test_value_changes_reach_the_driver_at_the_poll_group_rate(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    driver = run(modbus_driver("carlo_gavazzi_em24", meter.port, [point("p", register="p_total")]))
    wait_until(lambda: sample(driver, "p")[1] is GOOD)
    meter.device.set("p_total", 777.7)
    started = time.monotonic()
    wait_until(lambda: value_of(driver, "p") == pytest.approx(777.7))
    assert time.monotonic() - started < 0.2 + 0.15  # fast group: 0.2 s


def test_slow_group_is_read_less_often_than_fast_group(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em24")
    reads = meter.device.reads
    started = time.monotonic()
    run(modbus_driver("carlo_gavazzi_em24", meter.port, [
        point("p", register="p_total"), point("e", register="energy_import")]))
    wait_until(lambda: reads[(3, 0x28)] >= 6, 10.0, "six reads of the fast group")
    # and what must not happen in the 1.5 s from the start: more fast reads than its period allows, a second slow one
    holds_for(lambda: reads[(3, 0x28)] <= 9 and reads[(3, 0x34)] == 1, started + 1.5 - time.monotonic(),
              "the groups read at their own periods")
    fast = meter.device.reads[(3, 0x28)]  # p_total, 0.2 s
    slow = meter.device.reads[(3, 0x34)]  # energy_import, 10 s
    assert 6 <= fast <= 9
    assert slow == 1


def test_sunspec_scale_factors_are_applied(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    inverter.device.set("w_sf", -1)
    inverter.device.set("p_ac", -2345.6)  # stored as -23456 with W_SF = -1
    inverter.device.set("soc", 57.3)  # ChaState_SF = -1 from the profile's sim_value
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [
        point("p", register="p_ac"), point("soc", register="soc")]))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert inverter.device.peek(inverter.profile.registers["p_ac"].table, 40084, 1) == [(-23456) & 0xFFFF]
    assert value_of(driver, "p") == pytest.approx(-2345.6)
    assert value_of(driver, "soc") == pytest.approx(57.3)


def test_a_scale_factor_out_of_range_makes_only_its_registers_bad_naming_it(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    inverter.device.poke(inverter.profile.registers["w_sf"].table, inverter.profile.registers["w_sf"].address,
                         [5000])  # 10 ** 5000 overflows a float
    inverter.device.set("soc", 57.3)
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [
        point("p", register="p_ac"), point("soc", register="soc")]))
    wait_until(lambda: sample(driver, "soc")[1] is GOOD)
    assert sample(driver, "p")[1] is BAD
    assert value_of(driver, "soc") == pytest.approx(57.3)  # the rest of the device reads on
    assert any("scale factor w_sf (holding 40085) reads 5000, outside -10..10" in r.getMessage()
               for r in caplog.records)


def test_sunspec_not_implemented_value_turns_the_tag_bad(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    inverter.device.poke(inverter.profile.registers["temp_heatsink"].table, 40104, [0x8000])
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [
        point("t", register="temp_heatsink"), point("p", register="p_ac")]))
    wait_until(lambda: sample(driver, "p")[1] is GOOD)
    assert sample(driver, "t")[1] is BAD


def test_setpoint_is_written_and_verified_by_read_back(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("abb_pqstori")
    driver = run(modbus_driver("abb_pqstori", inverter.port, [point("p", register="p_ac")],
                               [point("p_set", register="set_p", scale=1000.0)]))
    driver.stage((12_500.0,))  # W in the tag, kW in the device
    wait_until(lambda: ("set_p", 12.5) in inverter.device.writes)
    assert inverter.device.get("set_p") == pytest.approx(12.5)
    assert driver.stats.verify_failures == 0
    assert driver.stats.writes >= 1


def test_unchanged_setpoint_is_not_written_again(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("abb_pqstori")
    driver = run(modbus_driver("abb_pqstori", inverter.port, [], [point("p_set", register="set_p")]))
    for _ in range(5):
        driver.stage(tuple([3.0]))  # noqa: C409 - a new tuple object every cycle, as the scan stages them
        polls = driver.poll_count
        wait_until(lambda polls=polls: driver.poll_count >= polls + 2, 5.0, "a whole poll with this tuple staged")
    assert [w for w in inverter.device.writes if w[0] == "set_p"] == [("set_p", 3.0)]


def test_write_the_device_ignores_fails_verification_is_counted_and_retried(serve, run, caplog) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("abb_pqstori")
    inverter.device.faults.ignore_writes = True
    driver = run(modbus_driver("abb_pqstori", inverter.port, [], [point("p_set", register="set_p")]))
    scan = lambda: driver.stage(tuple([5.0]))  # noqa: C409 - a new tuple each scan: the driver retries by identity
    wait_until(lambda: scan() or driver.stats.verify_failures >= 3)
    assert inverter.device.get("set_p") == 0.0
    assert sum("read back" in r.getMessage() for r in caplog.records) == 1  # logged once, not per retry
    inverter.device.faults.ignore_writes = False
    wait_until(lambda: scan() or inverter.device.get("set_p") == pytest.approx(5.0))


def test_setpoint_beyond_the_register_range_is_clamped(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [],
                               [point("rate", register="out_w_rate_pct")]))
    driver.stage((150.0,))
    wait_until(lambda: inverter.device.get("out_w_rate_pct") == pytest.approx(100.0))


def test_command_output_writes_the_start_and_stop_registers(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("abb_pqstori")
    driver = run(modbus_driver("abb_pqstori", inverter.port, [], [point("run", is_bool=True, command="run")]))
    driver.stage((True,))
    wait_until(lambda: ("start_request", 1.0) in inverter.device.writes)
    driver.stage((False,))
    wait_until(lambda: ("stop_request", 1.0) in inverter.device.writes)


def test_heartbeat_register_keeps_changing(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("abb_pqstori")
    run(modbus_driver("abb_pqstori", inverter.port, [point("p", register="p_ac")]))
    wait_until(lambda: inverter.device.get("heartbeat") == 1)
    # heartbeat_period_s is 5 s in the profile: the counter must not change faster than that; the
    # driver polls every 0.05 s, so 0.5 s (10 polls) is long enough to see it change if it did
    holds_for(lambda: inverter.device.get("heartbeat") == 1, 0.5, "the heartbeat unchanged")
    assert inverter.device.get("heartbeat") == 1


def test_bit_of_a_status_register_feeds_a_bool_tag(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("sunspec_inverter_storage")
    inverter.device.set("events_vendor_1", 0b1000)  # bit 3: over temperature in the simulator
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [
        point("overtemp", is_bool=True, register="events_vendor_1", bit=3),
        point("grid_lost", is_bool=True, register="events_vendor_1", bit=1)]))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert value_of(driver, "overtemp") is True
    assert value_of(driver, "grid_lost") is False


def test_luxpower_soc_and_soh_share_one_register(serve, run) -> None:  # type: ignore[no-untyped-def]
    inverter = serve("luxpower_lxp")
    inverter.device.set("soc", 87)
    inverter.device.set("soh", 98)
    assert inverter.device.peek(inverter.profile.registers["soc"].table, 5, 1) == [98 * 256 + 87]
    driver = run(modbus_driver("luxpower_lxp", inverter.port, [point("soc", register="soc"),
                                                               point("soh", register="soh")]))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert (value_of(driver, "soc"), value_of(driver, "soh")) == (87, 98)


def test_relay_coils_are_written_and_inputs_read(serve, run) -> None:  # type: ignore[no-untyped-def]
    module = serve("modbus_relay_io")
    module.device.set("input_3", True)
    driver = run(modbus_driver("modbus_relay_io", module.port, [point("feedback", is_bool=True, register="input_3")],
                               [point("sleep_relay", is_bool=True, register="relay_2")]))
    driver.stage((True,))
    wait_until(lambda: module.device.get("relay_2") is True)
    wait_until(lambda: value_of(driver, "feedback") is True)
    assert module.device.get("relay_1") is False


def test_rtu_framing_over_tcp(serve, run) -> None:  # type: ignore[no-untyped-def]
    meter = serve("carlo_gavazzi_em340", framer="rtu")
    meter.device.set("p_total", 4321.0)
    driver = run(modbus_driver("carlo_gavazzi_em340", meter.port, [point("p", register="p_total")],
                               transport="rtu_over_tcp"))
    wait_until(lambda: value_of(driver, "p") == pytest.approx(4321.0))


def test_rtu_on_a_serial_line(sim_loop, run) -> None:  # type: ignore[no-untyped-def]
    line = NullModem()
    device = ProfileDevice(profile("carlo_gavazzi_em340"))

    async def start():  # type: ignore[no-untyped-def]
        server = ModbusSerialServer(device.sim_device, framer=FramerType.RTU, port=line.a, baudrate=19200)
        device.attach(server)
        await server.serve_forever(background=True)
        return server

    server = sim_loop.run(start())
    try:
        device.set("v_l1_n", 229.9)
        driver = run(modbus_driver("carlo_gavazzi_em340", 1, [point("v", register="v_l1_n")], transport="rtu",
                                   serial_port=line.b, baudrate=19200, timeout_s=0.5))
        wait_until(lambda: value_of(driver, "v") == pytest.approx(229.9))
    finally:
        sim_loop.run(server.shutdown())
        line.close()


def test_a_bit_field_output_changes_only_its_bits_of_the_word(serve, run) -> None:  # type: ignore[no-untyped-def]
    """LuxPower hold 21 carries protection bits beside the forced-discharge bit: the driver reads
    the word, changes its field and writes it back (lxp-bridge does the same)."""
    inverter = serve("luxpower_lxp")
    table = inverter.profile.registers["function_enable"].table
    inverter.device.poke(table, 21, [0b1000_0010_0001_0001])  # feed-in, standby off, a protection bit, EPS
    driver = run(modbus_driver("luxpower_lxp", inverter.port, [point("soc", register="soc")],
                               [point("force", is_bool=True, register="forced_discharge_enable")]))
    driver.stage((True,))
    wait_until(lambda: inverter.device.peek(table, 21, 1) == [0b1000_0110_0001_0001], 5.0, "bit 10 set")
    driver.stage((False,))
    wait_until(lambda: inverter.device.peek(table, 21, 1) == [0b1000_0010_0001_0001], 5.0, "bit 10 cleared")
    assert driver.stats.verify_failures == 0


def test_a_setpoint_in_watts_is_written_as_a_percentage_of_the_rating_the_device_reports(serve, run) -> None:  # type: ignore[no-untyped-def]
    """SunSpec OutWRte is a percentage of WChaMax: an 8 kW unit takes 2000 W as 25 %, not the 40 %
    a fixed 5 kW scale would send."""
    inverter = serve("sunspec_inverter_storage")
    inverter.device.set("w_cha_max", 8000.0)
    driver = run(modbus_driver("sunspec_inverter_storage", inverter.port, [point("p", register="p_ac")],
                               [point("p_set", register="out_w_rate_pct", percent_of="w_cha_max")]))
    driver.stage((2000.0,))
    wait_until(lambda: ("out_w_rate_pct", pytest.approx(25.0)) in inverter.device.writes, 5.0, "25 % written")
    driver.stage((-8000.0,))
    wait_until(lambda: inverter.device.get("out_w_rate_pct") == pytest.approx(-100.0), 5.0, "-100 % written")


def test_a_group_due_between_two_polls_is_read_at_the_nearest_one_not_the_one_after(serve) -> None:  # type: ignore[no-untyped-def]
    """The EM24's fast group (0.2 s) on a driver polling every 0.1 s: the first poll came 0.5 ms
    after the grid, the next ones 0.2 ms after it (a sleep's wake-up). Due at grid + 0.5 ms, the
    group would miss every poll 0.3 ms early and be read every 0.3 s instead of every 0.2 s."""
    meter = serve("carlo_gavazzi_em24")
    driver = modbus_driver("carlo_gavazzi_em24", meter.port, [point("p", register="p_total")], poll_s=0.1)
    driver.open()
    try:
        driver.read_inputs(0.0005)
        for k in range(1, 21):
            driver.read_inputs(k * 0.1 + 0.0002)
        assert driver.stats.reads == 11  # at 0.0, then every 0.2 s up to 2.0 s
    finally:
        driver.close()


def test_a_read_a_poll_or_more_after_it_was_due_is_counted_late_for_its_group(serve) -> None:  # type: ignore[no-untyped-def]
    """The EM24's fast group (0.2 s) polled at 0.0, 0.2, then 0.5 (a poll missed: a slow device
    or a stalled thread) and 0.6 s: the read at 0.5 s is 0.1 s after it was due at 0.4 s, one late
    read; the group keeps its own time, due again at 0.6 s."""
    meter = serve("carlo_gavazzi_em24")
    driver = modbus_driver("carlo_gavazzi_em24", meter.port, [point("p", register="p_total"),
                           point("late", meta="late_reads"), point("late_fast", meta="late_reads.fast")], poll_s=0.1)
    driver.open()
    try:
        for t in (0.0, 0.2, 0.5, 0.6):
            values = driver.read_inputs(t)
        assert driver.stats.reads == 4
        assert values[1:] == [1, 1]
    finally:
        driver.close()
