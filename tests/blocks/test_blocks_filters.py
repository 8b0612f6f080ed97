"""LowPass and RateOfChange."""

from __future__ import annotations

import math

import pytest

from blocks import LowPass, RateOfChange


def test_low_pass_step_response_is_exact_at_any_scan_rate():
    for dt in (0.01, 0.1, 0.5):
        lp = LowPass(tau_s=2.0, y0=0.0)
        n = round(4.0 / dt)
        for _ in range(n):
            y = lp.step(1.0, dt)
        assert y == pytest.approx(1.0 - math.exp(-4.0 / 2.0), rel=1e-12)


def test_low_pass_starts_at_the_first_sample_without_y0():
    lp = LowPass(tau_s=10.0)
    assert lp.step(50.0, 0.1) == 50.0


def test_low_pass_with_zero_time_constant_passes_through():
    lp = LowPass(tau_s=0.0, y0=0.0)
    assert lp.step(3.0, 0.1) == 3.0


def test_low_pass_follows_a_changed_time_constant():
    lp = LowPass(tau_s=1.0, y0=0.0)
    lp.step(1.0, 0.1)
    lp.tau_s = 0.0
    assert lp.step(5.0, 0.1) == 5.0


def test_low_pass_holds_on_nan():
    lp = LowPass(tau_s=1.0, y0=2.0)
    assert lp.step(math.nan, 0.1) == 2.0
    assert lp.step(2.0, 0.1) == 2.0


def test_low_pass_rejects_negative_time_constant():
    with pytest.raises(ValueError, match=r"^LowPass: tau_s must be >= 0, got -1$"):
        LowPass(tau_s=-1)


def test_rate_of_change_of_a_ramp():
    roc = RateOfChange()
    assert roc.step(50.0, 0.1) == 0.0  # first sample: no rate yet
    assert roc.step(49.99, 0.1) == pytest.approx(-0.1)
    assert roc.rate_per_s == pytest.approx(-0.1)


def test_rate_of_change_bridges_nan_gaps_over_the_elapsed_time():
    roc = RateOfChange()
    roc.step(0.0, 0.1)
    roc.step(math.nan, 0.1)
    assert roc.step(2.0, 0.1) == pytest.approx(10.0)  # 2.0 over 0.2 s


def test_rate_of_change_filter_smooths_with_its_time_constant():
    roc = RateOfChange(tau_s=1.0)
    roc.step(0.0, 0.1)
    for k in range(1, 11):
        rate = roc.step(float(k) * 0.1, 0.1)  # true rate 1/s
    # first filtered sample starts from 0 and rises like 1 - exp(-t/tau)
    assert rate == pytest.approx(1.0 - math.exp(-1.0), rel=1e-12)


def test_rate_of_change_reset_forgets_the_previous_sample():
    roc = RateOfChange()
    roc.step(0.0, 0.1)
    roc.step(1.0, 0.1)
    roc.reset()
    assert roc.step(100.0, 0.1) == 0.0
