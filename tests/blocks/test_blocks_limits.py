"""Clamp, Deadband, Hysteresis, Debounce."""

from __future__ import annotations

import math
import random

import pytest

from blocks import TON, Clamp, Deadband, Debounce, Hysteresis, clamp

T, F = True, False


# --- Clamp -----------------------------------------------------------------------

def test_clamp_function_limits_both_sides():
    assert [clamp(x, -1.0, 2.0) for x in (-5.0, 0.5, 7.0)] == [-1.0, 0.5, 2.0]


def test_clamp_block_flags_the_limit_it_hit():
    c = Clamp(lo=0.0, hi=100.0)
    assert (c.step(150.0), c.at_hi, c.at_lo) == (100.0, True, False)
    assert (c.step(-3.0), c.at_hi, c.at_lo) == (0.0, False, True)
    assert (c.step(42.0), c.at_hi, c.at_lo) == (42.0, False, False)


def test_clamp_limits_can_change_between_scans():
    c = Clamp(lo=-10.0, hi=10.0)
    c.set_limits(-2.0, 3.0)
    assert c.step(5.0) == 3.0


def test_clamp_propagates_nan():
    assert math.isnan(Clamp(lo=0.0, hi=1.0).step(math.nan))


def test_clamp_rejects_inverted_limits():
    with pytest.raises(ValueError, match=r"^Clamp: lo must be <= hi, got lo=2.0, hi=1.0$"):
        Clamp(lo=2.0, hi=1.0)


# --- Deadband ------------------------------------------------------------------------

def test_deadband_zeroes_deviations_inside_the_band_including_edges():
    db = Deadband(half_width=0.25, center=50.0)
    assert db.step(50.1) == 0.0 and db.in_band
    assert db.step(50.25) == 0.0 and db.in_band
    assert db.step(49.75) == 0.0 and db.in_band
    assert db.step(50.5) == 0.25 and not db.in_band


def test_continuous_deadband_shifts_the_output_so_it_has_no_jump():
    db = Deadband(half_width=1.0)
    assert db.step(3.0) == 2.0
    assert db.step(-3.0) == -2.0
    assert db.step(1.0 + 1e-9) == pytest.approx(1e-9)
    assert db.in_band is False


def test_gate_deadband_passes_the_deviation_unchanged_outside():
    db = Deadband(half_width=1.0, continuous=False)
    assert db.step(3.0) == 3.0
    assert db.step(-1.5) == -1.5
    assert db.step(0.5) == 0.0


def test_deadband_propagates_nan():
    db = Deadband(half_width=1.0)
    assert math.isnan(db.step(math.nan))
    assert db.in_band is False


def test_deadband_rejects_negative_width():
    with pytest.raises(ValueError, match=r"^Deadband: half_width must be >= 0, got -0.1$"):
        Deadband(half_width=-0.1)


# --- Hysteresis ------------------------------------------------------------------------

def test_high_active_hysteresis_switches_at_its_thresholds():
    fan = Hysteresis(on_threshold=40.0, off_threshold=35.0)
    temps = [30.0, 39.9, 40.0, 37.0, 35.1, 35.0, 38.0, 40.5]
    assert [fan.step(t) for t in temps] == [F, F, T, T, T, F, F, T]


def test_low_active_hysteresis_for_soc_charging():
    charge = Hysteresis(on_threshold=20.0, off_threshold=25.0)
    socs = [30.0, 21.0, 20.0, 22.0, 24.9, 25.0, 23.0]
    assert [charge.step(s) for s in socs] == [F, F, T, T, T, F, F]


def test_hysteresis_initial_state_and_nan_hold():
    h = Hysteresis(on_threshold=1.0, off_threshold=0.0, initial=True)
    assert h.step(0.5) is True
    assert h.step(math.nan) is True


def test_hysteresis_rejects_equal_thresholds():
    with pytest.raises(ValueError, match=r"^Hysteresis: on_threshold and off_threshold must differ"):
        Hysteresis(on_threshold=1.0, off_threshold=1.0)


def test_hysteresis_set_thresholds_can_flip_direction():
    h = Hysteresis(on_threshold=10.0, off_threshold=5.0)
    h.set_thresholds(on_threshold=5.0, off_threshold=10.0)
    assert h.step(4.0) is True


# --- Debounce ------------------------------------------------------------------------

def test_debounce_rises_only_after_the_input_held_on_s():
    db = Debounce(on_s=0.5)
    seq = [T, T, F, T, T, T, T, T, T]
    out = [db.step(x, 0.25) for x in seq]
    # edge scan is time 0; q at the scan where 0.5 s is reached
    assert out == [F, F, F, F, F, T, T, T, T]


def test_debounce_with_zero_off_time_is_a_ton():
    db, ton = Debounce(on_s=1.0, off_s=0.0), TON(pt_s=1.0)
    rng = random.Random(3)
    rises = 0
    for k in range(300):
        x = rng.random() < 0.93  # irregular pattern with long and short runs
        q = db.step(x, 0.1)
        assert q == ton.step(x, 0.1), f"scan {k}"
        rises += q
    assert rises > 0


def test_debounce_uses_off_s_to_fall():
    db = Debounce(on_s=0.0, off_s=0.75, initial=False)
    assert db.step(T, 0.25) is True  # zero on-time: immediate
    out = [db.step(F, 0.25) for _ in range(5)]
    assert out == [T, T, T, F, F]


def test_debounce_short_glitch_does_not_switch_and_resets_the_count():
    db = Debounce(on_s=0.5, initial=True)
    out = [db.step(x, 0.25) for x in [F, F, T, F, F, F]]
    assert out == [T, T, T, T, T, F]
    assert db.et_s == 0.0


def test_debounce_rejects_negative_times():
    with pytest.raises(ValueError, match=r"^Debounce: off_s must be >= 0, got -1.0$"):
        Debounce(on_s=1.0, off_s=-1.0)


def test_hysteresis_and_debounce_reset_to_their_initial_state():
    h = Hysteresis(on_threshold=1.0, off_threshold=0.0, initial=True)
    h.step(-1.0)
    h.reset()
    assert h.q is True
    db = Debounce(on_s=1.0)
    db.step(True, 0.5)
    db.step(True, 0.5)
    db.reset()
    assert (db.q, db.et_s) == (False, 0.0)
