"""`ems sim --plot`: the PNG is written, and its figure has one labelled panel per quantity the
run has (power, SOC, price, frequency, mode, state), limits dashed, events as labelled lines."""

from __future__ import annotations

from pathlib import Path

from ems.plot import build_figure
from ems.scenario import load_scenario
from ems.simulate import event_labels, simulate

ROOT = Path(__file__).resolve().parents[2]


def rows(n: int = 7, price: float = 0.0) -> dict[str, list]:
    """Seven rows 600 s apart of a commercial site shaving its import to 15 kW."""
    return {
        "t_s": [600.0 * i for i in range(n)],
        "grid_power_w": [12000.0, 15000.0, 15000.0, 14000.0, 9000.0, 8000.0, 7000.0][:n],
        "battery_power_w": [0.0, 3000.0, 6000.0, 2000.0, -4000.0, -4000.0, 0.0][:n],
        "pv_power_w": [0.0, 0.0, 1000.0, 2000.0, 3000.0, 2000.0, 1000.0][:n],
        "load_power_w": [12000.0, 18000.0, 22000.0, 18000.0, 8000.0, 6000.0, 8000.0][:n],
        "soc_pct": [60.0, 59.0, 57.0, 55.0, 56.0, 57.0, 57.0][:n],
        "frequency_hz": [50.0, 50.02, 49.98, 50.0, 50.01, 49.99, 50.0][:n],
        "mode": ["peak_shaving"] * 3 + ["self_consumption"] * 4,
        "state": ["init", "run", "run", "run", "run", "idle", "run"][:n],
        "import_limit_w": [15000.0] * n,
        "export_limit_w": [1e7] * n,  # the default: no export limit
        "price": [price] * n,
    }


def ylabels(figure) -> list[str]:
    return [ax.get_ylabel() for ax in figure.axes]


def test_a_run_without_price_or_frequency_has_power_soc_mode_and_state_panels():
    assert ylabels(build_figure(rows())) == ["power (kW)", "SOC (%)", "mode", "state"]


def test_a_run_with_a_price_and_frequency_gets_their_panels_too():
    figure = build_figure(rows(price=0.25), frequency=True)
    assert ylabels(figure) == ["power (kW)", "SOC (%)", "price", "frequency (Hz)", "mode", "state"]


def test_mode_and_state_are_step_traces_with_their_labels_as_y_ticks():
    figure = build_figure(rows())
    mode, state = figure.axes[-2], figure.axes[-1]
    assert [t.get_text() for t in mode.get_yticklabels()] == ["peak_shaving", "self_consumption"]
    assert [t.get_text() for t in state.get_yticklabels()] == ["init", "run", "idle"]
    assert list(state.lines[0].get_ydata()) == [0, 1, 1, 1, 1, 2, 1]
    assert len(mode.texts) == len(state.texts) == 0  # no annotations over the traces


def test_the_import_limit_is_a_dashed_line_and_an_off_scale_export_limit_is_left_out():
    power = build_figure(rows()).axes[0]
    limits = {line.get_label(): line for line in power.lines if "limit" in line.get_label()}
    assert list(limits) == ["import limit"]
    assert limits["import limit"].get_linestyle() == "--"
    assert set(limits["import limit"].get_ydata()) == {15.0}


def test_each_event_is_a_vertical_line_on_every_panel_labelled_once_on_the_top_one():
    figure = build_figure(rows(), events=[(1200.0, "mode = self_consumption"), (3000.0, "grid.outage = true")])
    at = ([1200.0 / 3600.0] * 2, [3000.0 / 3600.0] * 2)  # hours
    for ax in figure.axes:
        assert len([line for line in ax.lines if list(line.get_xdata()) in at]) == 2
    assert [t.get_text().strip() for t in figure.axes[0].texts] == ["mode = self_consumption", "grid.outage = true"]


def test_the_scenarios_events_and_heartbeat_stops_become_plot_labels():
    scenario = load_scenario(ROOT / "scenarios" / "external_control.toml")
    assert event_labels(scenario, 4 * 3600.0) == [
        (600.0, "ext_p_setpoint_w = -3000"), (3600.0, "ext_p_setpoint_w = 2500"),
        (7200.0, "ext_q_setpoint_var = 1000"), (9000.0, "ext_p_setpoint_w = 4000"), (10800.0, "ext_heartbeat stops")]
    assert event_labels(scenario, 3000.0) == [(600.0, "ext_p_setpoint_w = -3000")]


def test_ems_sim_writes_the_png_of_the_peak_shaving_scenario_with_its_import_limit(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "peak_shaving.toml")
    png = tmp_path / "run.png"
    s = simulate(str(ROOT / "io_maps" / "sim_commercial.toml"), 0.05, str(tmp_path / "run.csv"), scenario,
                 plot=str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert s.rows is not None and set(s.rows["import_limit_w"]) == {15000.0}
    figure = build_figure(s.rows)
    assert ylabels(figure) == ["power (kW)", "SOC (%)", "mode", "state"]
    assert [line.get_label() for line in figure.axes[0].lines if "limit" in line.get_label()] == ["import limit"]
