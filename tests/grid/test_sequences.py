"""The test sequences are the reference's tables (TP), played as the applied test frequency."""

from __future__ import annotations

import pytest

from ems.prequal.sequences import APPLICABLE, SINE_STATIONARY, HeldPlay, sequence


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
    assert seq.until == "ler_off"  # then held until NEM and AEM are off (TP Tables 16-17)


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


def test_the_fcr_n_ler_test_is_tr_table_12():
    """TR v1.1 Table 12 / TP Table 15: 2 min at 50.0 Hz, then steps 1-11, 173.5 min in all (minimums)."""
    seq = sequence("fcr-n", "ler")
    assert [(s.start_s / 60.0, s.target_hz) for s in seq.segments] == [
        (0.0, 50.0), (2.0, 50.09), (30.0, 50.11), (36.0, 50.09), (38.5, 50.11), (46.0, 50.09),
        (56.0, 49.91), (116.0, 49.89), (121.0, 49.91), (123.5, 49.89), (133.5, 49.91), (143.5, 50.0)]
    assert seq.duration_s == 173.5 * 60.0
    assert all(s.rate_hz_per_s is None for s in seq.segments)  # steps


def test_the_fcr_n_ler_steps_expect_the_tables_nem_and_aem_states():
    seq = sequence("fcr-n", "ler")
    assert [(s.nem, s.aem) for s in seq.segments] == [
        ("off", "off"), ("on", "off"), ("off", "off"), ("on", "off"), ("off", "on"), ("on", "on"),
        ("off/on", "off"), ("off", "off"), ("on", "off"), ("off", "on"), ("on", "on"), ("off", "off")]


def test_the_fcr_n_ler_steps_with_an_objective_are_held_until_it_is_met():
    """TP 8.1: "The durations given in the table are minimum durations"; steps 1 and 6 until NEM has been
    fully activated for a minute, 4 and 9 until 5 min after AEM activates, 11 until NEM and AEM are off."""
    seq = sequence("fcr-n", "ler")
    assert {s.label: s.hold_until for s in seq.segments if s.hold_until} == {
        "step 1": "nem_full", "step 4": "aem_5min", "step 6": "off_then_nem_full", "step 9": "aem_5min",
        "step 11": "ler_off"}
    assert seq.held


def test_a_held_step_moves_on_at_its_table_end_when_its_objective_is_met_by_then():
    play = HeldPlay(sequence("fcr-n", "ler"))
    assert play.frequency(119.9) == 50.0 and play.frequency(120.0) == 50.09  # the rest has no objective
    play.observe(600.0, 1, 1.0, False)
    play.observe(660.0, 1, 1.0, False)  # NEM fully activated for a minute
    assert play.frequency(1799.9) == 50.09 and play.frequency(1800.0) == 50.11  # step 2 at 30 min
    assert play.starts[2] == 1800.0


def test_a_held_step_waits_for_its_objective_and_the_later_steps_move_with_it():
    play = HeldPlay(sequence("fcr-n", "ler"))
    play.frequency(120.0)
    play.observe(1800.0, 1, 0.5, False)  # NEM on but not yet fully activated at the table's end
    assert play.frequency(1800.0) == 50.09
    play.observe(2000.0, 1, 1.0, False)
    play.observe(2060.0, 1, 1.0, False)
    assert play.frequency(2060.1) == 50.11  # step 2 starts once the objective is met
    assert play.starts[2] == 2060.1 and play.starts[3] == pytest.approx(36 * 60.0 + 260.1)
    assert play.played().segments[3].start_s == pytest.approx(2420.1)


def test_the_last_step_is_done_once_nem_and_aem_are_off_after_its_30_min():
    play = HeldPlay(sequence("fcr-n", "ler"))
    play.i = len(play.starts) - 1
    play.observe(143.5 * 60.0 + 60.0, 0, 0.0, False)  # off, but before its 30 min
    assert play.done_at is None
    play.observe(173.5 * 60.0, 0, 0.0, False)
    assert play.done_at == 173.5 * 60.0


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


def test_the_fcr_n_endurance_test_is_the_step_test_with_15_min_steps():
    """TR v1.1 Table 3 / TP Table 3, "Start time endurance test for non-LER": 0, 0.5, 1, 6, 21, 36 min, end 41."""
    seq = sequence("fcr-n", "endurance")
    assert [(s.start_s / 60.0, s.target_hz) for s in seq.segments] == [
        (0.0, 50.0), (0.5, 49.95), (1.0, 50.0), (6.0, 49.9), (21.0, 50.1), (36.0, 50.0)]
    assert seq.duration_s == 41 * 60.0
    assert [s.target_hz for s in seq.segments if s.label == "endurance"] == [49.9, 50.1]


@pytest.mark.parametrize("product, hold_hz", [("fcr-d-up", 49.5), ("fcr-d-down", 50.5)])
def test_the_fcr_d_endurance_test_is_the_fast_ramp_with_ramp_3_held_900_s(product, hold_hz):
    """TR v1.1 Table 4 note / TP Table 6: "The waiting time between ramp 3 and ramp 4 should be increased to
    900 seconds when the endurance is tested"; ramps 4-6 follow 600 s later."""
    seq, ramp = sequence(product, "endurance"), sequence(product, "ramp")
    assert [(s.start_s, s.target_hz, s.rate_hz_per_s) for s in seq.segments] == [
        (s.start_s + (600.0 if i > 3 else 0.0), s.target_hz, s.rate_hz_per_s) for i, s in enumerate(ramp.segments)]
    held = [(i, s) for i, s in enumerate(seq.segments) if s.label == "endurance"]
    assert [(s.target_hz, seq.end_of(i) - s.start_s, s.rate_hz_per_s) for i, s in held] == [(hold_hz, 900.0, 0.24)]
    assert seq.duration_s == 1650.0


def test_a_test_that_does_not_apply_to_a_product_is_refused():
    assert APPLICABLE["fcr-n"] == ("step", "sine", "ler", "endurance")
    assert "combined" in APPLICABLE["fcr-d-up"] and "combined" not in APPLICABLE["fcr-n"]
    with pytest.raises(ValueError, match="does not apply"):
        sequence("fcr-n", "ramp")
