"""Sine fits and the Nyquist margin against the grid model of the Nordic FCR requirements."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest

from ems.prequal.stability import GRID_FCR_D, GRID_FCR_N, fit_sine, sine_point

C = 20_000.0


def synthetic(period: float, gain: float, delay_s: float = 0.0, tau_s: float = 0.0, band: float = 0.4):
    """Applied frequency and the power of a droop with that gain, a dead time and a first-order lag."""
    w = 2 * math.pi / period
    t = np.arange(0.0, 5 * period, 0.1)
    lag = 1 / (1 + 1j * w * tau_s)
    h = -gain * C / band * lag * cmath.exp(-1j * w * delay_s)
    f = 49.7 + 0.1 * np.sin(w * t)
    p = (0.1 * h * np.exp(1j * w * t)).imag  # the response to 0.1 sin(wt)
    return t, f, p


def test_the_fit_returns_amplitude_and_phase_of_a_sine():
    t = np.arange(0.0, 50.0, 0.1)
    x = 3.0 + 2.0 * np.sin(2 * math.pi * t / 10.0 - 0.5)
    phasor = fit_sine(t, x, 10.0)
    assert abs(phasor) == pytest.approx(2.0)
    assert cmath.phase(phasor) == pytest.approx(-0.5 - math.pi / 2)  # sin = cos shifted by -90 deg


def test_an_ideal_droop_normalises_to_one():
    t, f, p = synthetic(25.0, 1.0)
    point = sine_point(t, f, p, 25.0, 0.4, C, GRID_FCR_D)
    assert point.f_norm == pytest.approx(1.0 + 0j)


def test_a_1_s_filter_gives_its_gain_and_phase_at_10_s():
    t, f, p = synthetic(10.0, 1.0, tau_s=1.0)
    point = sine_point(t, f, p, 10.0, 0.4, C, GRID_FCR_D)
    w = 2 * math.pi / 10.0
    assert point.gain == pytest.approx(1 / math.sqrt(1 + w * w))
    assert point.phase_deg == pytest.approx(-math.degrees(math.atan(w)))


def test_the_grid_model_is_the_technical_requirements_equation_11():
    # FCR-D: (1450 / 0.4) x (50 / 23000) / (2 x 120000 / 23000 x s + 0.01 x 50), at s = 0
    assert GRID_FCR_D.g(0.0) == pytest.approx(1450 / 0.4 * 50 / 23000 / 0.5)
    assert GRID_FCR_N.g(0.0) == pytest.approx(600 / 0.1 * 50 / 42000 / 0.5)
    w = 2 * math.pi / 60.0
    assert GRID_FCR_N.g(w) == pytest.approx(600 / 0.1 * 50 / 42000 / (2j * 190000 / 42000 * w + 0.5))


def test_a_fast_unit_keeps_well_outside_the_043_circle():
    t, f, p = synthetic(10.0, 1.0, delay_s=0.2, tau_s=1.0)
    assert sine_point(t, f, p, 10.0, 0.4, C, GRID_FCR_D).margin > 0.9


def test_a_unit_with_3_s_of_delay_fails_the_stability_margin():
    t, f, p = synthetic(10.0, 1.0, delay_s=3.0)
    assert sine_point(t, f, p, 10.0, 0.4, C, GRID_FCR_D).margin < 0.43
