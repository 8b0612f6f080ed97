"""PV/load profiles: CSV interpolation and errors, seeded generators."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import run

from sim import LoadConfig, Plant, PlantConfig, ProfileError, PvConfig
from sim.profiles import bad_samples, csv_series, load_series, pv_series


def _csv(tmp_path: Path, text: str, name: str = "profile.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_profile_is_interpolated_for_pv_and_load(tmp_path: Path) -> None:
    path = _csv(tmp_path, "t_s,pv_power_w,load_power_w\n0,0,100\n100,1000,300\n200,0,100\n")
    cfg = PlantConfig.home(pv=PvConfig(source="csv", csv_path=path),
                           load=LoadConfig(source="csv", csv_path=path),
                           start_time_of_day_s=40.0)
    plant = Plant(cfg)
    run(plant, 10.0)  # time of day 50 s
    assert plant.pv.power_w == pytest.approx(500.0)
    assert plant.load.power_w == pytest.approx(200.0)
    assert plant.meter.p_w == pytest.approx(200.0 - 500.0)
    run(plant, 25.5)  # 75.5 s
    assert plant.pv.power_w == pytest.approx(755.0)


def test_csv_loops_with_period_last_t_or_holds_the_last_value(tmp_path: Path) -> None:
    path = _csv(tmp_path, "t_s,pv_power_w\n0,0\n100,1000\n")
    looped = csv_series(path, "pv_power_w", "loop")
    held = csv_series(path, "pv_power_w", "hold")
    assert looped.at(99.5) == pytest.approx(995.0)
    assert looped.at(130.0) == pytest.approx(300.0)  # 130 s = 30 s into the second period
    assert held.at(130.0) == 1000.0 and held.at(1e6) == 1000.0


def test_bundled_example_profile_is_found_by_relative_name() -> None:
    series = csv_series("home_day_15min.csv", "pv_power_w", "loop")
    assert series.at(3600.0) == 0.0 and series.at(12 * 3600.0) > 1000.0


@pytest.mark.parametrize("text, line, words", [
    ("t_s,pv_power_w\n0,1\n10,x\n", 3, "not a number"),
    ("# comment\nt_s,pv_power_w\n0,1\n10,2\n10,3\n", 5, "increase strictly"),
    ("t_s,load_power_w\n0,1\n", 1, "missing column 'pv_power_w'"),
    ("t_s,pv_power_w\n0,1\n5,2,3\n", 3, "expected 2 fields"),
    ("t_s,pv_power_w\n-5,1\n", 2, "must be >= 0"),
    ("t_s,pv_power_w\n0,nan\n", 2, "not finite"),
    ("t_s,pv_power_w\n", 1, "no data rows"),
    ("", 1, "empty file"),
])
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(ProfileError) as err:
        csv_series(path, "pv_power_w", "loop")
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert words in str(err.value)


def test_missing_csv_file_is_named_in_the_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.csv")
    with pytest.raises(ProfileError, match="nope.csv:0: cannot read file"):
        Plant(PlantConfig.home(pv=PvConfig(source="csv", csv_path=path)))


_GENERATED = [
    ("cloudy pv", lambda rng: pv_series(PvConfig(source="cloudy"), 86400, rng)),
    ("residential", lambda rng: load_series(LoadConfig(), 86400, rng)),
    ("commercial", lambda rng: load_series(PlantConfig.commercial().load, 86400, rng)),
]


@pytest.mark.parametrize("name, make", _GENERATED, ids=[g[0] for g in _GENERATED])
def test_generators_are_deterministic_per_seed_and_differ_between_seeds(name: str, make) -> None:
    a = make(np.random.default_rng([1, 2])).array()
    b = make(np.random.default_rng([1, 2])).array()
    c = make(np.random.default_rng([2, 2])).array()
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 100.0


def test_clear_day_is_zero_at_night_and_peaks_at_noon_scaled_to_kwp() -> None:
    p = pv_series(PvConfig(peak_power_w=6000.0), 86400, np.random.default_rng(0)).array()
    assert p[: 5 * 3600].max() == 0.0 and p[19 * 3600:].max() == 0.0
    assert abs(int(p.argmax()) - 12 * 3600) <= 60
    assert p.max() == pytest.approx(6000.0 * 0.85, rel=1e-4)


def test_cloudy_day_stays_under_clear_sky_with_fast_transients() -> None:
    cfg = PvConfig(source="cloudy", cloud_cover_pct=50.0)
    clear = pv_series(PvConfig(), 86400, np.random.default_rng(0)).array()
    cloudy = pv_series(cfg, 86400, np.random.default_rng(0)).array()
    assert np.all(cloudy <= 1.1 * clear + 1e-9)
    assert 0.3 < cloudy.sum() / clear.sum() < 0.8
    five_s = np.abs(cloudy[5:] - cloudy[:-5])
    assert (five_s > 1000.0).sum() > 20  # many cloud edges of >1 kW within 5 s


def test_residential_load_has_evening_peak_and_kettle_spikes() -> None:
    cfg = LoadConfig(spikes_per_day=6.0, spike_power_w=2000.0)
    p = load_series(cfg, 2 * 86400, np.random.default_rng(3)).array()
    hour = p[:86400].reshape(24, 3600).mean(axis=1)
    assert hour[19] > hour[3] + 1000.0 and hour[7] > hour[3] + 500.0
    jumps = np.diff(p) > 1500.0
    assert 4 <= jumps.sum() <= 30  # a kettle switching on, a few times a day
    assert p.min() >= 0.3 * cfg.base_w


def test_commercial_load_has_working_hours_plateau() -> None:
    cfg = PlantConfig.commercial().load
    p = load_series(cfg, 86400, np.random.default_rng(4)).array()
    assert p[10 * 3600:16 * 3600].mean() == pytest.approx(cfg.peak_w, rel=0.15)
    assert p[0:5 * 3600].mean() == pytest.approx(cfg.base_w, rel=0.25)


def test_generated_profiles_repeat_after_the_horizon() -> None:
    series = load_series(LoadConfig(), 2 * 86400, np.random.default_rng(5))
    assert series.at(2 * 86400 + 1234.5) == series.at(1234.5)
    assert series.at(86400 + 1234.5) != series.at(1234.5)  # day 2 differs from day 1


def test_a_frequency_profile_keeps_its_own_10_hz_resolution(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("t_s,frequency_hz\n" + "".join(f"{k / 10:.1f},{50.0 - 0.01 * (k % 2):.2f}\n" for k in range(21)))
    series = csv_series(str(path), "frequency_hz", "hold", own_resolution=True)
    assert [series.at(k / 10) for k in range(4)] == pytest.approx([50.0, 49.99, 50.0, 49.99])
    assert csv_series(str(path), "frequency_hz", "hold").at(0.1) == pytest.approx(50.0)  # PV/load keep 1 s


def test_a_nan_frequency_sample_is_a_bad_sample_reported_with_its_line(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("t_s,frequency_hz\n0.0,50.0\n0.1,nan\n0.2,49.9\n0.3,49.9\n")
    series = csv_series(str(path), "frequency_hz", "hold", own_resolution=True)
    assert series.at(0.0) == pytest.approx(50.0)
    assert math.isnan(series.at(0.1))
    assert series.at(0.2) == pytest.approx(49.9)
    assert bad_samples(str(path), "frequency_hz") == [3]


def test_a_nan_in_a_pv_profile_is_still_refused_naming_the_line(tmp_path):
    path = _csv(tmp_path, "t_s,pv_power_w\n0,1\n1,nan\n")
    with pytest.raises(ProfileError, match=r"profile.csv:3: pv_power_w is not finite: 'nan'"):
        csv_series(path, "pv_power_w", "hold")
