"""The CAN BMS driver on python-can buses, with frames encoded by cantools from our DBCs."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import can
import pytest
from io_kit import BAD, GOOD, can_driver, can_point, sample, value_of, wait_until

from runtime.io.can.dbc import load_dbc, resolve_dbc

CBMS = load_dbc(str(resolve_dbc(family="cbms", version="2.5")))
NBMS = load_dbc(str(resolve_dbc(family="nbms", version="2.5")))
V26 = {family: load_dbc(str(resolve_dbc(family=family, version="2.6"))) for family in ("cbms", "nbms")}


@pytest.fixture
def bus() -> Iterator[can.BusABC]:
    """The BMS's end of a fresh virtual bus (the driver opens its own on the same channel)."""
    channel = f"bms-{uuid.uuid4().hex[:8]}"
    end = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    yield end
    end.shutdown()


def send(bus: can.BusABC, db: Any, name: str, values: dict[str, Any], rack: int = 0, data: bytes | None = None,
         **frame: Any) -> None:
    message = db.get_message_by_name(name)
    frame_id = message.frame_id + (rack if db is CBMS and name.startswith(("Rack", "Cell")) else 0)
    payload = data if data is not None else message.encode(values)
    bus.send(can.Message(arbitration_id=frame_id, data=payload, is_extended_id=message.is_extended_frame, **frame))


RACK = {"RackVoltage": 820.0, "RackCurrent": 12.5, "RackSoc": 61.25, "RackSoh": 98}


def keep_sending(bus: can.BusABC, until: Callable[[], Any], what: str, racks: tuple[int, ...] = (0, 1),
                 timeout_s: float = 5.0) -> float:
    """Send RackStatus for `racks` every 50 ms, as a BMS does, until `until()` holds; returns the
    time of the last frames (polling the condition is the sending cycle)."""
    last = 0.0

    def cycle() -> Any:
        nonlocal last
        last = time.monotonic()
        for rack in racks:
            send(bus, CBMS, "RackStatus", {**RACK, "RackSoc": 60.0 + rack}, rack=rack)
        return until()

    wait_until(cycle, timeout_s, what, poll_s=0.05)
    return last


def test_pack_rack_and_cell_signals_reach_their_tags(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [
        can_point("soc", message="PackStatus", signal="PackSoc"),
        can_point("contactor", is_bool=True, message="PackStatus", signal="ContactorClosed"),
        can_point("rack2_soc", message="RackStatus", signal="RackSoc", rack=2),
        can_point("cell8", message="CellVoltages", signal="Cell08_V", rack=1),
    ]))
    wait_until(lambda: driver.poll_count > 0)
    send(bus, CBMS, "PackStatus", {"PackVoltage": 820.4, "PackCurrent": -20.0, "PackSoc": 72.5, "PackSoh": 99,
                                   "PackState": 2, "ContactorClosed": 1, "Alarm": 0, "Balancing": 0})
    send(bus, CBMS, "RackStatus", {**RACK, "RackSoc": 70.1}, rack=2)
    send(bus, CBMS, "CellVoltages", {"CellPage": 2, "Cell07_V": 3.3, "Cell08_V": 3.312, "Cell09_V": 3.29}, rack=1)
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert value_of(driver, "soc") == pytest.approx(72.5)
    assert value_of(driver, "contactor") is True
    assert value_of(driver, "rack2_soc") == pytest.approx(70.1)
    assert value_of(driver, "cell8") == pytest.approx(3.312)


def test_nbms_racks_are_told_apart_by_their_multiplexer(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [can_point(f"soc{r}", message="RackStatus", signal="RackSoc", rack=r)
                                          for r in range(3)], family="nbms"))
    wait_until(lambda: driver.poll_count > 0)
    for rack, soc in ((0, 40.0), (1, 50.5), (2, 60.0)):
        send(bus, NBMS, "RackStatus", {"RackId": rack, "RackVoltage": 51.0, "RackCurrent": 0.0, "RackSoc": soc,
                                       "RackSoh": 100})
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert [value_of(driver, f"soc{r}") for r in range(3)] == [40.0, 50.5, 60.0]


def test_a_silent_rack_goes_stale_then_bad_while_the_others_stay_good(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [
        can_point("soc0", message="RackStatus", signal="RackSoc", rack=0),
        can_point("soc1", message="RackStatus", signal="RackSoc", rack=1),
        can_point("online1", is_bool=True, meta="rack_online", rack=1)], bad_after_s=1.0))
    silent_from = keep_sending(bus, lambda: value_of(driver, "online1") is True, "rack 1 online")
    assert value_of(driver, "online1") is True
    keep_sending(bus, lambda: value_of(driver, "online1") is False, "rack 1 offline", racks=(0,))  # rack 1 silent
    # RackStatus cycle 0.2 s x 3 = 0.6 s fresh; then soc1 is no longer refreshed (its stamp falls behind
    # soc0's, which rack 0 keeps fresh)
    keep_sending(bus, lambda: sample(driver, "soc1")[2] < sample(driver, "soc0")[2], "soc1 no longer refreshed",
                 racks=(0,))
    frozen = sample(driver, "soc1")
    assert value_of(driver, "online1") is False

    def frozen_until_bad() -> bool:
        now = sample(driver, "soc1")
        if now[1] is BAD:
            return True
        assert now == frozen  # unchanged: the scan ages it into STALE
        return False

    keep_sending(bus, frozen_until_bad, "soc1 BAD after 1 s of silence", racks=(0,))
    assert time.monotonic() - silent_from >= 0.9  # not BAD before its bad_after_s of 1 s
    assert sample(driver, "soc1")[1] is BAD
    assert value_of(driver, "soc0") == pytest.approx(60.0)
    keep_sending(bus, lambda: value_of(driver, "soc1") == pytest.approx(61.0), "soc1 back")
    assert value_of(driver, "soc1") == pytest.approx(61.0)


def test_unknown_ids_are_counted_and_logged_once(bus, run, caplog) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [can_point("n", meta="unknown_ids")]))
    wait_until(lambda: driver.poll_count > 0)
    for _ in range(5):
        bus.send(can.Message(arbitration_id=0x7A5, data=bytes(8), is_extended_id=False))
    bus.send(can.Message(arbitration_id=0x123, data=bytes(2), is_extended_id=False))
    wait_until(lambda: driver.stats.unknown_ids == 6)
    assert sum("0x7A5 is not in the DBC" in r.getMessage() for r in caplog.records) == 1
    assert sum("0x123 is not in the DBC" in r.getMessage() for r in caplog.records) == 1
    wait_until(lambda: value_of(driver, "n") == 6)


def test_wrong_length_frame_turns_that_racks_tags_bad_and_recovers(bus, run, caplog) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [can_point("soc0", message="RackStatus", signal="RackSoc", rack=0),
                                          can_point("soc1", message="RackStatus", signal="RackSoc", rack=1)]))
    keep_sending(bus, lambda: all(s[1] is GOOD for s in driver.latest), "both racks GOOD")
    good = CBMS.get_message_by_name("RackStatus").encode(RACK)
    for _ in range(3):
        send(bus, CBMS, "RackStatus", {}, rack=1, data=good[:6])
    wait_until(lambda: sample(driver, "soc1")[1] is BAD)
    assert sample(driver, "soc0")[1] is GOOD
    assert driver.stats.bad_frames == 3
    assert sum("wrong length" in r.getMessage() for r in caplog.records) == 1
    keep_sending(bus, lambda: value_of(driver, "soc1") == pytest.approx(61.0), "soc1 back")
    assert value_of(driver, "soc1") == pytest.approx(61.0)


def test_value_outside_the_dbc_range_makes_only_that_signal_bad(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [can_point("vmin", message="PackCells", signal="MinCellV"),
                                          can_point("vmax", message="PackCells", signal="MaxCellV")]))
    wait_until(lambda: driver.poll_count > 0)
    message = CBMS.get_message_by_name("PackCells")
    data = bytearray(message.encode({"MinCellV": 3.2, "MaxCellV": 3.31, "MinCellT": 20, "MaxCellT": 22,
                                     "MinCellVNum": 3, "MaxCellVNum": 9}))
    data[0:2] = (65535).to_bytes(2, "little")  # 65.535 V, the DBC range is [0|5]
    send(bus, CBMS, "PackCells", {}, data=bytes(data))
    wait_until(lambda: sample(driver, "vmin")[1] is BAD)
    assert value_of(driver, "vmax") == pytest.approx(3.31)
    assert driver.stats.out_of_range == 1


def test_error_frames_are_counted(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [can_point("errors", meta="error_frames")]))
    wait_until(lambda: driver.poll_count > 0)
    for _ in range(4):
        bus.send(can.Message(arbitration_id=0x004, is_error_frame=True, data=bytes(8)))  # controller problem
    wait_until(lambda: value_of(driver, "errors") == 4)


def test_bus_off_reopens_the_bus_and_the_values_come_back(bus, run, caplog) -> None:  # type: ignore[no-untyped-def]
    driver = run(can_driver(bus.channel_id, [can_point("soc0", message="RackStatus", signal="RackSoc", rack=0)]))
    keep_sending(bus, lambda: sample(driver, "soc0")[1] is GOOD, "soc0 GOOD", racks=(0,))
    bus.send(can.Message(arbitration_id=0x040, is_error_frame=True, data=bytes(8)))  # CAN_ERR_BUSOFF
    wait_until(lambda: sample(driver, "soc0")[1] is BAD)
    assert driver.stats.bus_off_count == 1
    assert any("bus off" in r.getMessage() for r in caplog.records)
    keep_sending(bus, lambda: value_of(driver, "soc0") == pytest.approx(60.0), "soc0 back after the bus reopened",
                 racks=(0,))
    assert value_of(driver, "soc0") == pytest.approx(60.0)
    assert driver.restart_count == 0 and driver.fault_count >= 1


def test_commands_go_out_at_their_cycle_and_at_once_on_change(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = can_driver(bus.channel_id, [], [can_point("sleep", is_bool=True, message="BmsCommand",
                                                       signal="SleepRequest"),
                                             can_point("balance", is_bool=True, message="BmsCommand",
                                                       signal="BalancingEnable")])
    driver.stage((False, True))  # staged before the first poll, as the scan does
    run(driver)
    message = CBMS.get_message_by_name("BmsCommand")
    frames = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        frame = bus.recv(0.05)
        if frame is not None and frame.arbitration_id == message.frame_id:
            frames.append((time.monotonic(), message.decode(bytes(frame.data))))
    assert 4 <= len(frames) <= 8  # 200 ms cycle (plus the first frame, sent at once)
    assert all(f[1]["BalancingEnable"] == 1 and f[1]["SleepRequest"] == 0 for f in frames)
    beats = [f[1]["Heartbeat"] for f in frames]
    assert all((b - a) % 256 == 1 for a, b in itertools.pairwise(beats))
    driver.stage((True, True))
    staged = time.monotonic()
    while True:
        frame = bus.recv(1.0)
        assert frame is not None
        if frame.arbitration_id == message.frame_id and message.decode(bytes(frame.data))["SleepRequest"] == 1:
            break
    assert time.monotonic() - staged < 0.15  # on change (next 20 ms poll), not at the next 200 ms cycle


def test_kernel_filters_pass_the_dbc_ids_and_rack_ranges_only() -> None:
    driver = can_driver("unused", [], interface="socketcan")
    filters = driver._filters()
    assert {"can_id": 0x360, "can_mask": 0x7F0, "extended": False} in filters  # RackStatus, any rack
    assert {"can_id": 0x350, "can_mask": 0x7FF, "extended": False} in filters  # PackStatus
    assert len(filters) == len(CBMS.messages)


def test_all_racks_log_once_per_problem_kind(bus, run, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    driver = run(can_driver(bus.channel_id, [can_point("soc0", message="RackStatus", signal="RackSoc", rack=0)]))
    wait_until(lambda: driver.poll_count > 0)
    message = CBMS.get_message_by_name("RackStatus")
    for _ in range(10):
        bus.send(can.Message(arbitration_id=0x360, data=message.encode(RACK)[:5], is_extended_id=False))
    wait_until(lambda: driver.stats.bad_frames == 10)
    assert len([r for r in caplog.records if "wrong length" in r.getMessage()]) == 1


def test_no_command_goes_out_before_every_output_of_the_message_has_a_value(bus, run) -> None:  # type: ignore[no-untyped-def]
    driver = can_driver(bus.channel_id, [], [can_point("sleep", is_bool=True, message="BmsCommand",
                                                       signal="SleepRequest"),
                                             can_point("contactor", is_bool=True, message="BmsCommand",
                                                       signal="ContactorRequest")])
    message = CBMS.get_message_by_name("BmsCommand")
    driver.stage((False, None))  # the contactor is in doubt (a restarted controller): no command for it
    run(driver)
    wait_until(lambda: driver.poll_count >= 10, 5.0, "ten polls")
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # the command cycle is 200 ms: two cycles of silence
        frame = bus.recv(0.05)
        assert frame is None or frame.arbitration_id != message.frame_id, "a ContactorRequest nobody decided"
    driver.stage((False, True))
    while True:
        frame = bus.recv(1.0)
        assert frame is not None
        if frame.arbitration_id == message.frame_id:
            break
    assert message.decode(bytes(frame.data))["ContactorRequest"] == 1


@pytest.mark.parametrize("family", ["cbms", "nbms"])
def test_v2_6_every_cell_of_a_400_cell_rack_reaches_its_tag(bus, run, family: str) -> None:  # type: ignore[no-untyped-def]
    cells = {n: round(2.9 + 0.001 * n, 3) for n in range(1, 401)}  # 2.901 V ... 3.300 V: each cell its own
    driver = run(can_driver(bus.channel_id, [can_point(f"cell{n}", message="CellVoltages", signal=f"Cell{n:02d}_V",
                                                       rack=1) for n in cells], family=family, version="2.6"))
    wait_until(lambda: driver.poll_count > 0)
    message = V26[family].get_message_by_name("CellVoltages")
    frame_id = message.frame_id + (1 if family == "cbms" else 0)  # CBMS: rack in the id; NBMS: RackId
    for page in range(134):  # cells 1..402: the last page's 401 and 402 are not this rack's
        values = {"CellPage": page, **{f"Cell{n:02d}_V": cells.get(n, 0.0) for n in range(3 * page + 1, 3 * page + 4)}}
        if family == "nbms":
            values["RackId"] = 1
        bus.send(can.Message(arbitration_id=frame_id, data=message.encode(values),
                             is_extended_id=message.is_extended_frame))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert {n: value_of(driver, f"cell{n}") for n in cells} == pytest.approx(cells)
    assert driver.stats.frames == 134 and driver.stats.bad_frames == 0


@pytest.mark.parametrize("family", ["cbms", "nbms"])
def test_v2_6_cell_numbers_above_255_reach_their_tags(bus, run, family: str) -> None:  # type: ignore[no-untyped-def]
    name = {"cbms": "PackCellNumbers", "nbms": "NbmsCellNumbers"}[family]
    numbers = {"MinCellVNum": 400, "MaxCellVNum": 256, "MinCellTNum": 65535, "MaxCellTNum": 1}
    driver = run(can_driver(bus.channel_id, [can_point(signal, message=name, signal=signal) for signal in numbers],
                            family=family, version="2.6"))
    wait_until(lambda: driver.poll_count > 0)
    message = V26[family].get_message_by_name(name)
    bus.send(can.Message(arbitration_id=message.frame_id, data=message.encode(numbers),
                         is_extended_id=message.is_extended_frame))
    wait_until(lambda: all(s[1] is GOOD for s in driver.latest))
    assert {signal: value_of(driver, signal) for signal in numbers} == numbers
