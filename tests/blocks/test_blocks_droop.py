"""Droop: frequency -> power, Nordic products, four-threshold form."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocks import Curve, Droop

C = 1_000_000.0  # 1 MW


# --- FCR-D up: P = C * (49.9 - f) / 0.4, 0 at/above 49.9, C at/below 49.5 -------------

def test_fcr_d_up_is_zero_at_exactly_49_9():
    assert Droop.fcr_d_up(C).step(49.9) == 0.0


def test_fcr_d_up_is_full_at_exactly_49_5():
    assert Droop.fcr_d_up(C).step(49.5) == C


def test_fcr_d_up_at_49_88_is_five_percent():
    assert Droop.fcr_d_up(C).step(49.88) == pytest.approx(0.05 * C, rel=1e-9)


@pytest.mark.parametrize("f", [49.9, 49.95, 50.0, 50.5, 55.0])
def test_fcr_d_up_is_zero_at_and_above_49_9(f):
    assert Droop.fcr_d_up(C).step(f) == 0.0


@pytest.mark.parametrize("f", [49.8, 49.7, 49.6, 49.55])
def test_fcr_d_up_follows_its_formula_in_the_band(f):
    assert Droop.fcr_d_up(C).step(f) == pytest.approx(C * (49.9 - f) / 0.4, rel=1e-9)


def test_fcr_d_up_saturates_below_49_5_without_clamping_the_frequency():
    droop = Droop.fcr_d_up(C)
    assert droop.step(47.0) == C
    assert droop.f_hz == 47.0


# --- FCR-D down: mirrored above 50.1 ------------------------------------------------------

def test_fcr_d_down_edges():
    droop = Droop.fcr_d_down(C)
    assert droop.step(50.1) == 0.0
    assert droop.step(50.5) == -C
    assert droop.step(50.12) == pytest.approx(-0.05 * C, rel=1e-9)
    assert droop.step(49.0) == 0.0
    assert droop.step(52.0) == -C


@pytest.mark.parametrize("f", [50.2, 50.3, 50.45])
def test_fcr_d_down_follows_its_formula_in_the_band(f):
    assert Droop.fcr_d_down(C).step(f) == pytest.approx(-C * (f - 50.1) / 0.4, rel=1e-9)


# --- FCR-N: P = C * (50 - f) / 0.1 clamped to +-C, no deadband ----------------------------

@pytest.mark.parametrize("f", [49.85, 49.9, 49.93, 49.99, 50.0, 50.001, 50.05, 50.1, 50.3])
def test_fcr_n_matches_its_formula(f):
    expected = max(-C, min(C, C * (50.0 - f) / 0.1))
    assert Droop.fcr_n(C).step(f) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_fcr_n_is_exactly_zero_at_nominal_and_has_no_deadband():
    droop = Droop.fcr_n(C)
    assert droop.step(50.0) == 0.0
    assert droop.step(50.001) == pytest.approx(-0.01 * C, rel=1e-6)


# --- generic forms ----------------------------------------------------------------------

def test_four_point_has_separate_up_and_down_capacities_and_a_deadband():
    droop = Droop.four_point(49.0, 49.8, 50.2, 51.0, p_up_w=400.0, p_down_w=200.0)
    assert droop.step(48.0) == 400.0
    assert droop.step(49.4) == pytest.approx(200.0)
    assert droop.step(49.8) == 0.0
    assert droop.step(50.0) == 0.0
    assert droop.step(50.6) == pytest.approx(-100.0)
    assert droop.step(51.5) == -200.0
    assert (droop.p_max_w, droop.p_min_w) == (400.0, -200.0)


def test_four_point_without_deadband_merges_the_middle_points():
    droop = Droop.four_point(49.9, 50.0, 50.0, 50.1, p_up_w=C, p_down_w=C)
    assert len(droop.curve.points) == 3
    assert droop.step(49.95) == pytest.approx(Droop.fcr_n(C).step(49.95))


def test_symmetric_droop_with_deadband():
    droop = Droop.symmetric(100.0, full_activation_dev_hz=0.5, deadband_hz=0.1, f_nominal_hz=60.0)
    assert droop.step(60.1) == 0.0
    assert droop.step(59.5) == 100.0
    assert droop.step(60.3) == pytest.approx(-50.0)


def test_from_points_accepts_any_non_increasing_characteristic():
    droop = Droop.from_points([(49.0, 10.0), (49.5, 10.0), (50.5, -3.0)])
    assert droop.step(50.0) == pytest.approx(3.5)


def test_nan_frequency_gives_nan_power():
    assert math.isnan(Droop.fcr_n(C).step(math.nan))


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Droop.four_point(50.0, 49.9, 50.1, 50.5, 1.0, 1.0),
     r"^Droop: f1_hz must be < f2_hz, got f1_hz=50.0, f2_hz=49.9$"),
    (lambda: Droop.four_point(49.5, 50.2, 50.1, 50.5, 1.0, 1.0),
     r"^Droop: f2_hz must be <= f3_hz, got f2_hz=50.2, f3_hz=50.1$"),
    (lambda: Droop.four_point(49.5, 49.9, 50.1, 50.1, 1.0, 1.0),
     r"^Droop: f3_hz must be < f4_hz, got f3_hz=50.1, f4_hz=50.1$"),
    (lambda: Droop.fcr_n(-5.0), r"^Droop: capacity_w must be >= 0, got -5.0$"),
    (lambda: Droop.four_point(49.5, 49.9, 50.1, 50.5, 1.0, -1.0),
     r"^Droop: p_down_w must be >= 0, got -1.0$"),
    (lambda: Droop.symmetric(1.0, full_activation_dev_hz=0.1, deadband_hz=0.2),
     r"^Droop: deadband_hz must be < full_activation_dev_hz, got deadband_hz=0.2"),
    (lambda: Droop(Curve([(49.0, -1.0), (51.0, 1.0)])),
     r"^Droop: power must not increase with frequency"),
])
def test_invalid_droop_parameters_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@settings(max_examples=100, deadline=None)
@given(fs=st.lists(st.floats(45.0, 55.0), min_size=1, max_size=50))
def test_droop_adds_no_delay_output_depends_only_on_present_frequency(fs):
    droop = Droop.fcr_d_up(C)
    reference = Droop.fcr_d_up(C)
    for f in fs:
        assert droop.step(f) == reference.power_w(f)
        assert droop.f_hz == f  # input not clamped


@settings(max_examples=100, deadline=None)
@given(f=st.floats(45.0, 55.0), g=st.floats(45.0, 55.0))
def test_droop_power_never_rises_with_frequency(f, g):
    droop = Droop.fcr_n(C)
    lo, hi = sorted((f, g))
    assert droop.power_w(hi) <= droop.power_w(lo)
