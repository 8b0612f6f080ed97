"""`ems prequal` end to end: files, report, exit codes; `--live` against a unit running on the real
clock with its Modbus tag server; `ems sim` replaying a frequency profile at 10 rows per second."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.running_site import running_site
from testkit.waiting import wait_until

from ems.cli import main as ems
from ems.prequal.live import live_test
from ems.prequal.runner import TestRun
from ems.prequal.sequences import Segment, Sequence
from runtime.site import Site

ROOT = Path(__file__).resolve().parents[2]
COMMERCIAL = str(ROOT / "io_maps" / "sim_commercial.toml")


def test_prequal_writes_report_plot_result_and_tso_log_and_exits_0_when_all_pass(tmp_path, capsys):
    code = ems(["prequal", "--io-map", COMMERCIAL, "--product", "ffr", "--test", "ffr", "--ffr-level", "49.5",
                "--capacity-w", "27000", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    assert "1 of 1 tests pass" in capsys.readouterr().out
    result = json.loads((tmp_path / "ffr_ffr_49.5.json").read_text())
    assert result["passed"] and len(result["checks"]) >= 9
    assert (tmp_path / "ffr_ffr_49.5.png").stat().st_size > 10_000
    report = (tmp_path / "report.md").read_text()
    assert "| FFR first: full activation time at 49.50 Hz | 0.3 s | <= 0.7 s |" in report
    (log,) = (tmp_path / "log").glob("SIMCOMMERCIAL_Ffr_Ffr49.5_SE3_UTC_*_100ms.csv")
    assert len(log.read_text().splitlines()) > 12_000


def test_prequal_runs_the_not_ler_endurance_test_at_the_capacity_the_battery_holds_for_2_h(tmp_path, capsys):
    code = ems(["prequal", "--io-map", COMMERCIAL, "--product", "fcr-n", "--test", "endurance",
                "--out", str(tmp_path), "--quiet"])
    assert code == 0
    # the step test's 5 steps (TR v1.1 Table 3, endurance column), 3 not-LER checks, 3 for each 15 min hold, the log
    assert "PASS  FCR-N endurance: 12/12 checks" in capsys.readouterr().out
    result = json.loads((tmp_path / "fcr-n_endurance.json").read_text())
    # 80 % of 81.92 kWh is 65.5 kWh: 2 h each way is 16.4 kW, 90 % of it in whole kW
    assert result["capacity_w"] == 14_000.0
    held = next(c for c in result["checks"] if c["requirement"].startswith("not LER"))
    assert held["measured"] >= 120.0
    assert len(list((tmp_path / "log").glob("SIMCOMMERCIAL_Fcrn_Endurance_SE3_UTC_*_100ms.csv"))) == 1


def test_prequal_exits_1_when_a_requirement_fails(tmp_path):
    code = ems(["prequal", "--product", "fcr-d-up", "--test", "ramp", "--capacity-w", "27000",
                "--inverter-delay-s", "3", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    assert "**FAIL**" in (tmp_path / "out" / "report.md").read_text()


def test_a_capacity_beyond_what_the_site_can_carry_is_warned_of_and_one_it_carries_is_not():
    from ems.prequal.command import capacity_warning, carry_capacity

    site = "io_maps/sim_commercial.toml"
    carry = carry_capacity(site, "fcr-d-up", "ramp")
    assert capacity_warning(site, "fcr-d-up", "ramp", carry) is None
    warning = capacity_warning(site, "fcr-d-up", "ramp", 3 * carry)
    assert warning is not None and f"beyond what the site can carry (about {carry:g} W" in warning


def test_prequal_exits_2_for_a_test_that_does_not_apply(tmp_path, capsys):
    code = ems(["prequal", "--product", "fcr-n", "--test", "ramp", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "no test of 'ramp' applies to fcr-n" in capsys.readouterr().err


@pytest.fixture
def running_unit() -> Iterator[Site]:
    with running_site(COMMERCIAL, lambda site: site.image["site_state"].value == 1
                      and site.image["limit_discharge_w"].value >= 10_000.0,
                      "the unit in Run with at least 10 kW to discharge") as site:
        yield site


def test_live_drives_the_applied_test_frequency_of_a_running_unit(running_unit):
    site = running_unit
    port = site.mirrors[0].port
    seq = Sequence("fcr-d-up", "ramp", (Segment(0.0, 49.9), Segment(1.0, 49.5)), 5.0)
    rec = live_test(TestRun(COMMERCIAL, "fcr-d-up", "ramp", 5_000.0), seq, "127.0.0.1", port)
    assert len(rec.t) >= 45, len(rec.t)  # 10 rows a second for 5 s, each write answered once applied
    assert rec["test"][-1] == 1.0
    assert rec["applied_hz"][-1] == pytest.approx(49.5)
    assert rec["service_w"][-1] == pytest.approx(5_000.0, rel=0.05)  # 4 s after the step, 1 s filter
    assert rec["p_w"][-1] > 4_000.0
    wait_until(lambda: site.image["test_frequency_active"].value is False
               and site.image["fcr_d_up_capacity_w"].value == 0.0, 5.0, "the client's last writes applied")
    assert site.image["test_frequency_active"].value is False  # the client ended the test
    assert site.image["fcr_d_up_capacity_w"].value == 0.0  # and restored the capacity


def test_sim_replays_a_frequency_profile_at_10_rows_per_second(tmp_path):
    scenario = tmp_path / "fcr.toml"
    scenario.write_text('[scenario]\nmode = "passive"\n[tags]\nfcr_d_up_capacity_w = 20000.0\n')
    out = tmp_path / "run.csv"
    code = ems(["sim", "--io-map", COMMERCIAL, "--scenario", str(scenario), "--frequency-profile",
                str(ROOT / "sim" / "profiles" / "frequency_dip.csv"), "--sample-rate-hz", "10", "--hours", "0.05",
                "--out", str(out), "--quiet"])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1800
    at = {round(float(r["t_s"]), 1): r for r in rows}
    assert float(at[75.0]["frequency_hz"]) == pytest.approx(49.76, abs=1e-3)
    assert float(at[75.0]["service_p_w"]) == pytest.approx(20_000.0 * (49.9 - 49.76) / 0.4, rel=0.05)
    assert float(at[75.0]["filtered_frequency_hz"]) == pytest.approx(49.76, abs=0.01)


def test_prequal_refuses_a_negative_inverter_delay_in_one_line(tmp_path, capsys):
    code = ems(["prequal", "--product", "fcr-d-up", "--test", "sine", "--inverter-delay-s", "-1", "--out",
                str(tmp_path), "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "ems prequal: --inverter-delay-s must be 0..5 s, got -1"
