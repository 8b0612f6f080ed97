"""Sine fits, the stability margin (requirement 8), the performance (requirement 9, FCR-N and FCR-D)
and the dynamic linearity (requirement 10) against the grid models of the Nordic FCR requirements.

The expected figures are written out from the requirements' parameters (TR v1.1 Table 7: stability
S_n 23 000 MW, E_k 120 000 MWs for both products; performance 42 000 MW, 190 000 MWs for both;
T_FME 1 s; the 95 % acceptance margin; requirement 10 of section 3.4.1 below 1), not taken from the
module under test.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest

from ems.prequal.stability import (
    ACCEPTED_RADIUS,
    PERFORMANCE_FCR_D,
    PERFORMANCE_FCR_N,
    STABILITY_FCR_D,
    STABILITY_FCR_N,
    fit_sine,
    sine_point,
    stability_model,
)

C = 20_000.0


def synthetic(period: float, gain: float, delay_s: float = 0.0, tau_s: float = 0.0, band: float = 0.4,
              centre: float = 49.7, cycles: int = 5):
    """Applied frequency and the power of a droop with that gain, a dead time and a first-order lag."""
    w = 2 * math.pi / period
    t = np.arange(0.0, cycles * period, 0.1)
    lag = 1 / (1 + 1j * w * tau_s)
    h = -gain * C / band * lag * cmath.exp(-1j * w * delay_s)
    f = centre + 0.1 * np.sin(w * t)
    p = (0.1 * h * np.exp(1j * w * t)).imag  # the response to 0.1 sin(wt)
    return t, f, p


def fcr_d_point(period: float, **kw):
    t, f, p = synthetic(period, kw.pop("gain", 1.0), **kw)
    return sine_point(t, f, p, period, 0.4, C, "fcr-d-up")


def test_the_fit_returns_amplitude_and_phase_of_a_sine():
    t = np.arange(0.0, 50.0, 0.1)
    x = 3.0 + 2.0 * np.sin(2 * math.pi * t / 10.0 - 0.5)
    phasor = fit_sine(t, x, 10.0)
    assert abs(phasor) == pytest.approx(2.0)
    assert cmath.phase(phasor) == pytest.approx(-0.5 - math.pi / 2)  # sin = cos shifted by -90 deg


def test_an_ideal_droop_is_judged_with_the_1_s_measurement_equipment():
    point = fcr_d_point(25.0)
    w = 2 * math.pi / 25.0
    assert point.f_unit == pytest.approx(1.0 + 0j)
    assert point.gain == pytest.approx(1 / math.sqrt(1 + w * w))  # F_FME = 1 / (1 s x s + 1)
    assert point.phase_deg == pytest.approx(-math.degrees(math.atan(w)))


def test_without_the_measurement_equipment_an_ideal_droop_normalises_to_one():
    t, f, p = synthetic(25.0, 1.0)
    assert sine_point(t, f, p, 25.0, 0.4, C, "fcr-d-up", t_fme_s=0.0).f_norm == pytest.approx(1.0 + 0j)


def test_both_products_are_judged_for_stability_on_the_23000_mw_model():
    assert STABILITY_FCR_D.g(0.0) == pytest.approx(1450 / 0.4 * 50 / 23000 / 0.5)
    assert STABILITY_FCR_N.g(0.0) == pytest.approx(600 / 0.1 * 50 / 23000 / 0.5)
    w = 2 * math.pi / 60.0
    assert STABILITY_FCR_N.g(w) == pytest.approx(600 / 0.1 * 50 / 23000 / (2j * 120000 / 23000 * w + 0.5))
    assert stability_model("fcr-n") is STABILITY_FCR_N


def test_the_performance_model_is_the_42000_mw_one():
    w = 2 * math.pi / 60.0
    assert PERFORMANCE_FCR_N.g(w) == pytest.approx(600 / 0.1 * 50 / 42000 / (2j * 190000 / 42000 * w + 0.5))


def test_the_95_percent_acceptance_accepts_a_radius_of_0_4085():
    assert ACCEPTED_RADIUS == pytest.approx(0.4085)


def test_a_1_s_filter_in_the_unit_leaves_fcr_d_about_0_47_at_10_s():
    # the first independent estimate of the issue: 1 s filter + a 0.07 s scan, with F_FME
    assert fcr_d_point(10.0, tau_s=1.0, delay_s=0.07).margin == pytest.approx(0.47, abs=0.01)


def test_0_2_s_more_delay_takes_that_unit_to_0_36_and_below_the_limit():
    margin = fcr_d_point(10.0, tau_s=1.0, delay_s=0.27).margin
    assert margin == pytest.approx(0.36, abs=0.01)
    assert margin < ACCEPTED_RADIUS


def test_a_unit_with_2_s_of_delay_fails_the_stability_margin():
    assert fcr_d_point(10.0, delay_s=2.0).margin < ACCEPTED_RADIUS


def test_an_ideal_fcr_n_unit_meets_the_performance_requirement_at_300_s():
    t, f, p = synthetic(300.0, 1.0, band=0.1, centre=50.0, cycles=3)
    point = sine_point(t, f, p, 300.0, 0.1, C, "fcr-n")
    w = 2 * math.pi / 300.0
    g = 600 / 0.1 * 50 / 42000 / (2j * 190000 / 42000 * w + 0.5)
    f_norm = 1 / (1 + 1j * w)
    assert point.performance == pytest.approx(abs(g / (1 + f_norm * g) / (70j * w + 1)))
    assert point.performance < 1.0


def test_an_fcr_n_unit_at_40_percent_of_its_gain_fails_the_performance_requirement():
    t, f, p = synthetic(300.0, 0.4, band=0.1, centre=50.0, cycles=3)
    assert sine_point(t, f, p, 300.0, 0.1, C, "fcr-n").performance > 1 / 0.95


def test_the_fcr_d_performance_model_is_table_7s_1450_mw_over_0_4_hz_on_42000_mw():
    w = 2 * math.pi / 150.0
    assert PERFORMANCE_FCR_D.g(w) == pytest.approx(1450 / 0.4 * 50 / 42000 / (2j * 190000 / 42000 * w + 0.5))


def test_fcr_d_is_judged_for_performance_too_and_an_ideal_unit_meets_it_at_300_s():
    """TR v1.1 section 3.3: "FCR-N and FCR-D shall also fulfil a frequency domain performance requirement"."""
    t, f, p = synthetic(300.0, 1.0, cycles=3)
    point = sine_point(t, f, p, 300.0, 0.4, C, "fcr-d-up")
    w = 2 * math.pi / 300.0
    g = 1450 / 0.4 * 50 / 42000 / (2j * 190000 / 42000 * w + 0.5)
    f_norm = 1 / (1 + 1j * w)
    assert point.performance == pytest.approx(abs(g / (1 + f_norm * g) / (70j * w + 1)))
    assert point.performance == pytest.approx(0.505, abs=0.001)


def test_an_fcr_d_unit_at_20_percent_of_its_gain_fails_the_performance_requirement_at_300_s():
    t, f, p = synthetic(300.0, 0.2, cycles=3)
    assert sine_point(t, f, p, 300.0, 0.4, C, "fcr-d-up").performance == pytest.approx(1.771, abs=0.001)  # > 1/0.95


def test_a_linear_response_has_no_error_against_the_fitted_sine_in_any_period():
    point = fcr_d_point(25.0, tau_s=1.0)
    assert len(point.linearity) == 5
    assert point.linearity_ratio == pytest.approx(0.0, abs=1e-9)


def test_a_response_clipped_at_a_fifth_of_its_swing_still_meets_requirement_10():
    """RMS error over the fitted sine's standard deviation: 0.38, below the TR's 1."""
    t, f, p = synthetic(25.0, 1.0)
    clipped = np.clip(p, -0.2 * abs(p).max(), 0.2 * abs(p).max())
    assert sine_point(t, f, clipped, 25.0, 0.4, C, "fcr-d-up").linearity_ratio == pytest.approx(0.380, abs=0.001)


def test_a_square_wave_response_meets_requirement_10_at_0_48():
    """A relay answering the sign of the deviation: its fundamental is 4/pi of it, the rest 0.435 of it."""
    t, f, p = synthetic(25.0, 1.0)
    relay = np.sign(p) * abs(p).max()
    assert sine_point(t, f, relay, 25.0, 0.4, C, "fcr-d-up").linearity_ratio == pytest.approx(0.48, abs=0.01)


def test_a_response_at_twice_the_test_frequency_fails_requirement_10():
    """|P|: no component at the test frequency, so the fitted sine is flat and the ratio far above 1."""
    t, f, p = synthetic(25.0, 1.0)
    assert sine_point(t, f, np.abs(p), 25.0, 0.4, C, "fcr-d-up").linearity_ratio > 1e3


def test_a_response_with_noise_one_and_a_half_times_the_sine_fails_requirement_10():
    t, f, p = synthetic(25.0, 1.0)
    noisy = p + np.random.default_rng(1).normal(0.0, 1.5 * np.std(p), len(p))
    assert sine_point(t, f, noisy, 25.0, 0.4, C, "fcr-d-up").linearity_ratio > 1.0
