"""The grid operator's log in the Nordic TSOs' format (TR 6.2.1 / Table 18; TP 11.1 / Table 19): file
names, ASCII and CRLF, the table's headers and units, one file per sine period, 10 Hz in tests and
1 Hz in operation, 14 days kept, written by its own thread."""

from __future__ import annotations

import csv
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from grid_kit import Harness

from ems.prequal.runner import log_plan
from ems.prequal.sequences import sequence
from runtime.grid_log import SIGNALS, GridLog, Session, TestSession, file_name, stamp, tz_token

START = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC).timestamp()
STAMP = re.compile(r"^\d{8}T\d{6}\.\d{3}$")
UNIT = {"inverter_p_w": 12_345.6, "inverter_p_setpoint_w": 12_000.0}  # what the inverter reports
RAMP = TestSession("FcrdUp", "Ramp")


def scans(h: Harness, log: GridLog, seconds: float, test: bool = False, wall0: float = START) -> float:
    wall = wall0
    for _ in range(int(round(seconds / h.period_s))):
        if test:
            h.test_frequency(49.8)
        else:
            h.scan()
        h.ctx.wall_s = wall
        log(h.ctx)
        wall += h.period_s
    return wall


def make(tmp_path: Path, h: Harness, **kw) -> GridLog:  # type: ignore[no-untyped-def]
    return GridLog(h.image, tmp_path, "BESS7", "SE3", UTC, **kw)


def ramp_file(tmp_path: Path, seconds: float = 2.0) -> Path:
    """An FCR-D up ramp test's file (20 kW sold, the inverter at 12 345.6 W, 49.8 Hz applied)."""
    h = Harness(fcr_d_up_capacity_w=20_000.0, inputs=UNIT)
    log = make(tmp_path, h, test_session=RAMP)
    log.start()
    scans(h, log, seconds, test=True)
    log.stop()
    (path,) = tmp_path.glob("*_Ramp_*.csv")
    return path


def operation_file(tmp_path: Path) -> Path:
    h = Harness(fcr_d_up_capacity_w=20_000.0, inputs=UNIT)
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 5.0)
    log.stop()
    (path,) = tmp_path.glob("*_Operation_*.csv")
    return path


def test_the_file_name_of_an_fcr_d_up_ramp_test_at_10_hz_follows_the_convention():
    start = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    end = datetime(2026, 1, 1, 0, 17, 41, 900_000, tzinfo=UTC)
    name = file_name(Session("SIMCOMMERCIAL", "FcrdUp", "Ramp", "SE3", 100), start, end)
    assert name == "SIMCOMMERCIAL_FcrdUp_Ramp_SE3_UTC_20260101T0000-20260101T0017_100ms.csv"


def test_timestamps_are_yyyymmddthhmmss_nnn_and_the_zone_is_named():
    when = datetime(2026, 7, 1, 12, 3, 4, 56_000, tzinfo=ZoneInfo("Europe/Stockholm"))
    assert stamp(when) == "20260701T120304.056"
    assert tz_token(when) == "UTC+0200"


def test_every_line_ends_with_crlf_and_the_file_is_pure_ascii(tmp_path):
    data = ramp_file(tmp_path).read_bytes()
    data.decode("ascii")  # raises on any other byte
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == 1 + 20
    assert data.count(b"\r") == data.count(b"\r\n")


def test_the_header_row_of_a_test_file_is_the_table_18_names_then_ours(tmp_path):
    header = ramp_file(tmp_path).read_bytes().decode("ascii").split("\r\n")[0].split(",")
    products = ("Fcrn", "FcrdUp", "FcrdDo")
    table = ["DateTime", "InsAcPow", "GridFreq", "ApplFreqSig", *(f"ContMode_{p}" for p in products),
             *(f"Cap_{p}" for p in products), *(f"ContStatus_{p}" for p in products), "Pmin", "Pmax",
             "CalcBaseline", "ContOutSig", *(f"ResSize_{p}" for p in products), *(f"NEM_MW_{p}" for p in products),
             *(f"NEM_{p}" for p in products), *(f"AEM_{p}" for p in products), "SOC"]
    ours = [s.header for s in SIGNALS if s.ours]
    assert header == table + ours
    assert "FiltFreq" in ours and "NEMCurrent_FcrdUp" in ours and "InsAcPow" not in ours


def test_a_power_of_12_345_6_w_reads_as_0_0123456_mw(tmp_path):
    header, first = ramp_file(tmp_path).read_bytes().decode("ascii").split("\r\n")[:2]
    cells = dict(zip(header.split(","), first.split(",")))
    assert cells["InsAcPow"] == "0.0123456"
    assert cells["InvSetP"] == "0.0120000"
    assert cells["SoldCap_FcrdUp"] == "0.0200000"


def test_the_test_rows_hold_the_applied_frequency_the_test_mode_and_the_timestamp(tmp_path):
    header, first = ramp_file(tmp_path).read_bytes().decode("ascii").split("\r\n")[:2]
    cells = dict(zip(header.split(","), first.split(",")))
    assert STAMP.match(cells["DateTime"])
    assert cells["ApplFreqSig"] == "49.8000"
    assert cells["TestMode"] == "1"
    assert cells["ContStatus_FcrdUp"] == "1"
    assert cells["ContStatus_Fcrn"] == "0"
    assert cells["ResSize_Fcrn"] == ""  # FCR-N not sold
    assert re.match(r"^-?\d+\.\d{3,}$", cells["SOC"])


def test_operation_logs_have_regstr_pmin_pmax_and_activated_columns(tmp_path):
    path = operation_file(tmp_path)
    with path.open(newline="", encoding="ascii") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["RegStr_FcrdUp"] == "0.0500000"  # 20 kW over FCR-D's 0.4 Hz: 0.05 MW/Hz
    assert row["Pmin"] == "-0.0300000"  # the 30 kW charge limit
    assert row["Pmax"] == "0.0300000"
    assert row["Activated_FcrdUp"] == "0.0000000"  # 50 Hz: nothing activated
    assert {"Activated_Fcrn", "Activated_FcrdDo", "RegStr_Fcrn", "RegStr_FcrdDo"} <= set(row)
    assert "ApplFreqSig" not in row  # a test column only


def test_a_reader_with_only_the_csv_module_reads_power_frequency_and_capacity_back(tmp_path):
    with ramp_file(tmp_path).open(newline="", encoding="ascii") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    last = rows[-1]
    assert float(last["InsAcPow"]) == pytest.approx(0.0123456, abs=1e-9)  # MW
    assert float(last["GridFreq"]) == pytest.approx(50.0)  # Hz, measured
    assert float(last["ApplFreqSig"]) == pytest.approx(49.8)  # Hz, applied
    assert float(last["Cap_FcrdUp"]) == pytest.approx(0.02)  # MW maintained


def test_operation_is_logged_at_1_hz_in_a_file_per_day(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 30.0)
    log.stop()
    (path,) = tmp_path.glob("*.csv")
    assert path.name == "BESS7_FcrdUp_Operation_SE3_UTC_20260302T0000-20260302T2359_1s.csv"
    rows = path.read_bytes().decode("ascii").split("\r\n")[1:-1]
    assert len(rows) == 30


def test_the_products_sold_together_name_the_operation_file(tmp_path):
    h = Harness(fcr_n_capacity_w=10_000.0, fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 2.0)
    log.stop()
    assert [p.name for p in tmp_path.glob("*.csv")] == [
        "BESS7_Fcrn-FcrdUp_Operation_SE3_UTC_20260302T0000-20260302T2359_1s.csv"]


def test_a_test_is_logged_at_10_hz_in_its_own_file_from_first_to_last_row(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h, test_session=RAMP)
    log.start()
    wall = scans(h, log, 5.0)
    wall = scans(h, log, 70.0, test=True, wall0=wall)
    h.set(test_frequency_active=False)  # the test client ends the test
    scans(h, log, 5.0, wall0=wall)
    log.stop()
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    test_file = "BESS7_FcrdUp_Ramp_SE3_UTC_20260302T1000-20260302T1001_100ms.csv"  # 10:00:05.0 to 10:01:14.9
    assert test_file in names
    rows = (tmp_path / test_file).read_bytes().decode("ascii").split("\r\n")[1:-1]
    assert len(rows) == 700
    assert not list(tmp_path.glob("*.part"))


def test_the_sine_test_gives_one_file_per_period_named_and_headed_with_it(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0, inputs=UNIT)
    log = make(tmp_path, h, test_session=TestSession("FcrdUp", "Sine10", "10"))
    wall = scans(h, log, 80.0, test=True)
    log.name_test(TestSession("FcrdUp", "Sine15", "15"))  # what ems prequal does at the next sine segment
    scans(h, log, 110.0, test=True, wall0=wall)
    log.start()
    log.stop()
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == ["BESS7_FcrdUp_Sine10_SE3_UTC_20260302T1000-20260302T1001_100ms.csv",
                     "BESS7_FcrdUp_Sine15_SE3_UTC_20260302T1001-20260302T1003_100ms.csv"]
    ten, fifteen = (tmp_path / n for n in names)
    assert ten.read_bytes().decode("ascii").split("\r\n")[0].startswith("DateTime10,InsAcPow10,GridFreq10,")
    assert fifteen.read_bytes().decode("ascii").split("\r\n")[0].startswith("DateTime15,InsAcPow15,GridFreq15,")
    assert len(ten.read_bytes().decode("ascii").split("\r\n")) == 1 + 800 + 1
    assert len(fifteen.read_bytes().decode("ascii").split("\r\n")) == 1 + 1100 + 1


def test_ems_prequal_splits_the_sine_test_at_the_start_of_each_sine_segment():
    plan = log_plan("fcr-d-up", sequence("fcr-d-up", "sine"), 49.5)
    # 20 s at the centre, then TR v1.1 Table 6's recommended total: 20 x 10 s, 15 x 15 s, 10 x 25 s, 7 x 40..70 s
    assert [(t, s.test_type, s.suffix) for t, s in plan] == [
        (0.0, "Sine10", "10"), (240.0, "Sine15", "15"), (485.0, "Sine25", "25"), (755.0, "Sine40", "40"),
        (1055.0, "Sine50", "50"), (1425.0, "Sine60", "60"), (1865.0, "Sine70", "70")]
    assert {s.service for _, s in plan} == {"FcrdUp"}


def test_ems_prequal_names_the_other_tests_with_one_file_each():
    assert log_plan("fcr-d-down", sequence("fcr-d-down", "ramp"), 49.5) == [(0.0, TestSession("FcrdDo", "Ramp"))]
    assert log_plan("fcr-n", sequence("fcr-n", "step"), 49.5) == [(0.0, TestSession("Fcrn", "Step"))]
    assert log_plan("ffr", sequence("ffr", "ffr", 49.6), 49.6) == [(0.0, TestSession("Ffr", "Ffr49.6"))]


def test_files_older_than_the_kept_days_are_deleted(tmp_path):
    old = tmp_path / "BESS7_Fcrn_Operation_SE3_UTC_20260210T0000-20260210T2359_1s.csv"
    written_before = tmp_path / "BESS7_FCR-N_OPERATION_SE3_UTC_20260210T000000-20260211T000000_1Hz.csv"
    recent = tmp_path / "BESS7_Fcrn_Operation_SE3_UTC_20260220T0000-20260220T2359_1s.csv"
    for path in (old, written_before, recent):
        path.write_text("x\r\n")
    h = Harness(fcr_n_capacity_w=10_000.0)
    log = make(tmp_path, h, keep_days=14.0)
    log.start()
    scans(h, log, 2.0)
    log.stop()
    assert not old.exists()
    assert not written_before.exists()  # the names of the format before are still purged
    assert recent.exists()


def test_the_scan_hook_only_queues_the_writer_thread_writes(tmp_path):
    h = Harness(fcr_d_up_capacity_w=20_000.0)
    log = make(tmp_path, h)
    scans(h, log, 10.0)  # writer not started: the hook must not have touched the disk
    assert len(log.rows) == 10
    assert list(tmp_path.iterdir()) == []
    log.start()
    log.stop()
    assert log.written == 10
    assert not any(t.name == "grid-log" for t in threading.enumerate())


def test_nothing_is_logged_while_no_product_is_sold_and_no_test_runs(tmp_path):
    h = Harness()
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 10.0)
    log.stop()
    assert log.written == 0
    assert list(tmp_path.glob("*.csv")) == []


def test_a_test_file_is_closed_and_named_when_the_test_ends_and_nothing_is_sold(tmp_path):
    h = Harness()
    log = make(tmp_path, h, test_session=TestSession("FcrdUp", "Linearity"))
    wall = scans(h, log, 3.0, test=True)
    h.set(test_frequency_active=False)
    scans(h, log, 2.0, wall0=wall)
    log._drain()  # what the writer thread does every 0.5 s (not started here: one thread)
    assert [p.name for p in tmp_path.iterdir()] == [
        "BESS7_FcrdUp_Linearity_SE3_UTC_20260302T1000-20260302T1000_100ms.csv"]
    log.stop()


def test_a_test_frequency_from_another_client_is_named_test_and_the_products_sold(tmp_path):
    h = Harness(fcr_n_capacity_w=10_000.0)
    log = make(tmp_path, h)
    log.start()
    scans(h, log, 1.0, test=True)
    log.stop()
    assert [p.name for p in tmp_path.glob("*.csv")] == [
        "BESS7_Fcrn_Test_SE3_UTC_20260302T1000-20260302T1000_100ms.csv"]


def test_at_least_14_days_are_kept():
    from programs.grid.params import LogParams

    with pytest.raises(ValueError):
        LogParams(keep_days=7.0)


def test_no_file_is_deleted_while_the_clock_is_not_synchronized(tmp_path):
    old = tmp_path / "BESS7_Fcrn_Operation_SE3_UTC_20260210T0000-20260210T2359_1s.csv"
    old.write_text("x\r\n")
    h = Harness(fcr_n_capacity_w=10_000.0)
    log = make(tmp_path, h, keep_days=14.0, clock_synced=lambda: False)
    log.start()
    scans(h, log, 2.0, wall0=START + 400 * 86400.0)  # booted 400 days ahead, NTP not there yet
    log.stop()
    assert old.exists()


def test_no_file_is_deleted_by_a_synchronized_clock_behind_the_newest_file(tmp_path):
    old = tmp_path / "BESS7_Fcrn_Operation_SE3_UTC_20260210T0000-20260210T2359_1s.csv"
    ahead = tmp_path / "BESS7_Fcrn_Operation_SE3_UTC_20270406T0000-20270406T2359_1s.csv"  # written 400 days ahead
    for path in (old, ahead):
        path.write_text("x\r\n")
    h = Harness(fcr_n_capacity_w=10_000.0)
    log = make(tmp_path, h, keep_days=14.0, clock_synced=lambda: True)
    log.start()
    scans(h, log, 2.0)  # 2026-03-02: the clock or the files' times are wrong
    log.stop()
    assert old.exists() and ahead.exists()
