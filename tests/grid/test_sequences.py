"""The test sequences are the reference's tables (TP), played as the applied test frequency."""

from __future__ import annotations

import pytest

from ems.prequal.sequences import APPLICABLE, SINE_STATIONARY, sequence


@pytest.mark.parametrize("t_s, f_hz", [
    (0.0, 49.9), (30.0, 49.9), (31.0, 49.76), (33.3, 49.45), (34.9, 49.45), (36.0, 49.549), (39.9, 49.9),
    (90.0, 49.9), (91.0, 49.66), (92.0, 49.5), (389.0, 49.5), (391.0, 49.74), (392.0, 49.9), (690.0, 49.9),
    (693.0, 49.18), (694.0, 49.0), (749.0, 49.0), (752.0, 49.48), (755.0, 50.0), (1049.0, 50.0)])
def test_the_fcr_d_up_ramp_test_follows_the_tp_table(t_s, f_hz):
    assert sequence("fcr-d-up", "ramp").frequency(t_s) == pytest.approx(f_hz, abs=1e-9)


def test_the_fcr_d_ramp_test_lasts_1050_s():
    assert sequence("fcr-d-up", "ramp").duration_s == 1050.0


def test_fcr_d_down_mirrors_fcr_d_up_around_50_hz():
    up, down = sequence("fcr-d-up", "ramp"), sequence("fcr-d-down", "ramp")
    for t in (0.0, 31.0, 34.0, 100.0, 700.0, 760.0):
        assert down.frequency(t) == pytest.approx(100.0 - up.frequency(t), abs=1e-9)


def test_linearity_steps_are_49_9_to_49_5_then_49_91_hz_for_120_s_each():
    seq = sequence("fcr-d-up", "linearity")
    assert [seq.frequency(60.0 + 120.0 * i) for i in range(6)] == [49.9, 49.8, 49.7, 49.6, 49.5, 49.91]
    assert seq.duration_s == 720.0


def test_the_ler_test_is_05_10_25_15_15_minutes_at_49_91_and_49_5_hz():
    seq = sequence("fcr-d-up", "ler")
    starts = [s.start_s / 60.0 for s in seq.segments[:5]]
    assert starts == [0.0, 0.5, 10.5, 13.0, 28.0]
    assert [s.target_hz for s in seq.segments[:5]] == [49.91, 49.5, 49.91, 49.5, 49.91]
    assert seq.until == "ler_off"  # then held until NEM and AEM are off (ours, see notes)


def test_the_fcr_n_step_test_follows_the_tp():
    seq = sequence("fcr-n", "step")
    assert [(s.start_s / 60.0, s.target_hz) for s in seq.segments] == [
        (0.0, 50.0), (0.5, 49.95), (1.0, 50.0), (6.0, 49.9), (11.0, 50.1), (16.0, 50.0)]
    assert seq.duration_s == 21 * 60.0


@pytest.mark.parametrize("product, centre, periods", [
    ("fcr-n", 50.0, (10, 15, 25, 40, 50, 60, 70, 90, 150, 300)),
    ("fcr-d-up", 49.7, (10, 15, 25, 40, 50, 60, 70)),
    ("fcr-d-down", 50.3, (10, 15, 25, 40, 50, 60, 70))])
def test_sine_tests_swing_0_1_hz_around_their_centre_at_the_tp_periods(product, centre, periods):
    seq = sequence(product, "sine")
    sines = [s for s in seq.segments if s.sine_period_s]
    assert tuple(s.sine_period_s for s in sines) == periods
    assert all((s.target_hz, s.sine_amplitude_hz) == (centre, 0.1) for s in sines)
    first = sines[0]
    assert seq.frequency(first.start_s + 2.5) == pytest.approx(centre + 0.1)


@pytest.mark.parametrize("period, total", [(10, 20), (15, 15), (25, 10), (40, 7), (70, 7), (90, 7), (150, 4),
                                           (300, 3)])
def test_each_sine_plays_the_recommended_total_number_of_periods(period, total):
    """TR v1.1 Table 6 / TP Table 4: stationary periods (recommended total): 5 (20) at 10 s ... 5 (7) at
    90 s, 3 (4) at 150 s, 2 (3) at 300 s."""
    seq = sequence("fcr-n", "sine")
    i = next(i for i, s in enumerate(seq.segments) if s.sine_period_s == period)
    assert seq.end_of(i) - seq.segments[i].start_s == total * period


def test_the_90_s_sine_is_judged_on_5_stationary_periods():
    assert SINE_STATIONARY[90] == (5, 7)


def test_the_ffr_test_dips_below_the_activation_level_three_times():
    seq = sequence("ffr", "ffr", 49.6)
    dips = [s for s in seq.segments if s.target_hz < 49.6]
    assert [(s.start_s, s.target_hz) for s in dips] == [(30.0, 49.5), (330.0, 49.5), (990.0, 49.5)]


def test_the_fcr_n_ler_test_alternates_50_09_50_11_then_49_91_49_89_hz_for_173_min():
    """TR Table 12: about 173 min; 50.09 / 49.91 Hz inside NEM's window, 50.11 / 49.89 Hz outside it."""
    seq = sequence("fcr-n", "ler")
    assert seq.duration_s == 173 * 60.0
    rows = [(s.start_s / 60.0, s.target_hz) for s in seq.segments]
    assert rows[0] == (0.0, 50.0)
    assert rows[1:7] == [(3.0 + 10 * i, (50.09, 50.11)[i % 2]) for i in range(6)]
    assert rows[7:] == [(63.0 + 10 * i, (49.91, 49.89)[i % 2]) for i in range(11)]
    assert all(s.rate_hz_per_s is None for s in seq.segments)  # steps
    inside = [s for s in seq.segments if s.label.endswith(":window")]
    assert {s.target_hz for s in inside} == {50.09, 49.91}
    assert all(49.9 < s.target_hz < 50.1 for s in inside)
    assert all(not 49.9 < s.target_hz < 50.1 for s in seq.segments if s.label.endswith(":outside"))


@pytest.mark.parametrize("t_s, f_hz", [
    (0.0, 49.9), (31.0, 49.76), (92.0, 49.5), (694.0, 49.0), (755.0, 50.0), (1049.0, 50.0),  # rows 0-6: the ramp
    (1050.0, 50.0), (1051.0, 49.76), (1052.0, 49.7), (1349.0, 49.7),  # ramp 7: 0.24 Hz/s to 49.7 Hz
    (1350.0, 49.7), (1350.5, 49.82), (1351.0, 49.89), (1649.0, 49.89)])  # ramp 8: 0.24 Hz/s to 49.89 Hz
def test_the_combined_fcr_n_and_fcr_d_test_is_the_fast_ramp_then_ramps_7_and_8(t_s, f_hz):
    """TR v1.1 Table 4 / TP Table 6: ramp 7 to 49.7 Hz, ramp 8 to 49.89 Hz, both at 0.24 Hz/s."""
    assert sequence("fcr-d-up", "combined").frequency(t_s) == pytest.approx(f_hz, abs=1e-9)


def test_the_combined_test_keeps_the_ramp_tests_rows_and_holds_ramps_7_and_8_for_300_s():
    combined, ramp = sequence("fcr-d-up", "combined"), sequence("fcr-d-up", "ramp")
    assert combined.segments[:7] == ramp.segments  # the settling hold and ramps 1-6
    assert [(s.start_s, s.target_hz, s.rate_hz_per_s) for s in combined.segments[7:]] == [
        (1050.0, 49.7, 0.24), (1350.0, 49.89, 0.24)]
    assert combined.duration_s == 1650.0


def test_the_combined_test_down_ramps_to_50_3_then_50_11_hz():
    """TR v1.1 Table 4: the down column of ramps 7 and 8."""
    assert [s.target_hz for s in sequence("fcr-d-down", "combined").segments[7:]] == [50.3, 50.11]


@pytest.mark.parametrize("product, holds", [
    ("fcr-n", [49.9, 50.1]), ("fcr-d-up", [49.5]), ("fcr-d-down", [50.5])])
def test_the_endurance_test_of_a_unit_that_is_not_ler_is_15_min_of_full_activation_each_way(product, holds):
    seq = sequence(product, "endurance")
    full = [(i, s) for i, s in enumerate(seq.segments) if s.label == "endurance"]
    assert [s.target_hz for _, s in full] == holds
    assert all(seq.end_of(i) - s.start_s == 15 * 60.0 for i, s in full)
    rest = {"fcr-n": 50.0, "fcr-d-up": 49.9, "fcr-d-down": 50.1}[product]
    assert {s.target_hz for s in seq.segments if s.label == "rest"} == {rest}  # no activation between


def test_a_test_that_does_not_apply_to_a_product_is_refused():
    assert APPLICABLE["fcr-n"] == ("step", "sine", "ler", "endurance")
    assert "combined" in APPLICABLE["fcr-d-up"] and "combined" not in APPLICABLE["fcr-n"]
    with pytest.raises(ValueError, match="does not apply"):
        sequence("fcr-n", "ramp")
