"""`ems sim`'s summary: how long each limit was binding, and self-consumption, as docs/scenario.md
defines them. Short runs of the default site (5 kW inverter) in external control, and the
definitions on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems.scenario import load_scenario
from ems.simulate import Summary, limit_binds, simulate

ROOT = Path(__file__).resolve().parents[2]
HOME = str(ROOT / "io_maps" / "sim_home.toml")


def external_run(tmp_path: Path, hours: float, events: list[tuple[float, float]], start_of_day_s: float = 0.0,
                 pv_peak_w: float = 5000.0) -> Summary:
    """The default site in external control, its SCADA writing `ext_p_setpoint_w` at the given
    (t_s, watts) with a heartbeat every second; the plant starting at `start_of_day_s`."""
    lines = ['[scenario]', 'mode = "external"', '[tags]', 'schedule_enabled = false',
             '[plant]', f'start_time_of_day_s = {start_of_day_s}', 'battery = { initial_soc_pct = 50.0 }',
             f'pv = {{ peak_power_w = {pv_peak_w} }}',
             '[[heartbeats]]', 'tag = "ext_heartbeat"', 'period_s = 1.0']
    for t_s, watts in events:
        lines += ['[[events]]', f't_s = {t_s}', 'tag = "ext_p_setpoint_w"', f'value = {watts}']
    path = tmp_path / "run.toml"
    path.write_text("\n".join(lines) + "\n")
    return simulate(HOME, hours, str(tmp_path / "run.csv"), load_scenario(path))


def test_a_run_whose_setpoints_stay_inside_the_limits_reports_no_binding_time(tmp_path):
    s = external_run(tmp_path, 0.25, [(0.0, 2000.0), (300.0, -3000.0), (600.0, 1500.0)])
    assert s.limit_time_s == {}
    assert "time each limit was binding: none" in s.text()


def test_a_request_beyond_the_inverter_limit_binds_it_for_the_time_it_is_cut(tmp_path):
    """8 kW asked of a 5 kW inverter from 300 s to 900 s: the discharge limit cuts it for those
    600 s (less the baseline's ramp of about 1 s from 2 kW), and for no other time."""
    s = external_run(tmp_path, 0.3, [(0.0, 2000.0), (300.0, 8000.0), (900.0, 2000.0)])
    assert set(s.limit_time_s) == {"discharge: inverter"}
    assert s.limit_time_s["discharge: inverter"] == pytest.approx(600.0, abs=3.0)


def test_self_consumption_stays_within_0_and_100_pct_when_the_battery_exports(tmp_path):
    """At noon the battery discharges 5 kW onto a 4 kW PV day's grid: the site exports more than
    its PV made, all of its PV among it (PV exported is min(export, PV) each scan)."""
    s = external_run(tmp_path, 0.25, [(0.0, 5000.0)], start_of_day_s=43200.0, pv_peak_w=4000.0)
    assert s.export_wh > s.pv_wh > 500.0
    assert 0.0 <= s.self_consumption < 0.02


def test_self_consumption_is_the_share_of_pv_energy_not_exported():
    s = Summary(pv_wh=8000.0, pv_export_wh=2000.0, export_wh=5000.0)
    assert s.self_consumption == pytest.approx(0.75)
    assert "self-consumption       75.0 %" in s.text()


def test_a_request_within_half_a_percent_of_the_limit_holds_it():
    assert limit_binds(4980.0, 4980.0, 5000.0, side=1)
    assert not limit_binds(4900.0, 4900.0, 5000.0, side=1)


def test_a_charge_request_at_the_charge_limit_binds_the_charge_side_only():
    assert limit_binds(-3000.0, -3000.0, 3000.0, side=-1)
    assert not limit_binds(-3000.0, -3000.0, 3000.0, side=1)


def test_a_limit_of_0_w_binds_a_real_request_but_not_an_idle_one():
    assert limit_binds(-2000.0, 0.0, 0.0, side=-1)  # battery full: the charge limit cuts to 0 W
    assert not limit_binds(0.0, 0.0, 0.0, side=-1)
    assert not limit_binds(-0.5, 0.0, 0.0, side=-1)


def test_a_setpoint_forced_to_0_w_outside_run_is_not_the_limits_doing():
    assert not limit_binds(5000.0, 0.0, 5000.0, side=1)
