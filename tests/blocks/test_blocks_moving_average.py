"""MovingAverage: exact window mean, O(1) per sample, warm-up rule."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocks import MovingAverage


def test_time_window_and_sample_period_give_the_sample_count():
    ma = MovingAverage(window_s=300.0, sample_period_s=0.1)  # 5 min at 10 Hz
    assert ma.window_n == 3000


def test_window_in_samples_fills_in_the_time_window_when_period_given():
    ma = MovingAverage(window_n=50, sample_period_s=0.02)
    assert ma.window_s == pytest.approx(1.0)
    assert MovingAverage(window_n=4).window_s is None


def test_warm_up_mean_is_the_mean_of_samples_seen_so_far():
    ma = MovingAverage(window_n=4)
    assert math.isnan(ma.mean) and ma.count == 0 and not ma.full
    assert ma.step(2.0) == 2.0
    assert ma.step(4.0) == 3.0
    assert (ma.count, ma.full) == (2, False)
    ma.step(6.0)
    assert ma.step(8.0) == 5.0
    assert (ma.count, ma.full) == (4, True)


def test_full_window_drops_the_oldest_sample():
    ma = MovingAverage(window_n=3)
    for x in (1.0, 2.0, 3.0, 10.0):
        mean = ma.step(x)
    assert mean == 5.0


def test_large_cancelling_values_leave_no_residue():
    ma = MovingAverage(window_n=3)
    for x in (1e16, 1.0, -1e16, 0.1, 0.2, 0.3):
        mean = ma.step(x)
    # the window is (0.1, 0.2, 0.3): its mean to within an ulp, although
    # values 1e17 times larger went through the running sum
    assert mean == pytest.approx(math.fsum((0.1, 0.2, 0.3)) / 3, rel=4e-16)
    xs = (1e16, 1.0, -1e16, 0.1, 0.2, 0.3)
    naive = 0.0
    for k, x in enumerate(xs):  # a plain ring-buffer running sum
        naive += x
        if k >= 3:
            naive -= xs[k - 3]
    assert abs(naive / 3 - mean) > 0.1


def test_nan_sample_recovers_after_it_has_left_the_window():
    ma = MovingAverage(window_n=4)
    for x in (1.0, math.nan, 1.0, 1.0):
        ma.step(x)
    assert math.isnan(ma.mean)
    means = [ma.step(2.0) for _ in range(8)]
    assert means[-1] == 2.0


def test_reset_empties_the_window():
    ma = MovingAverage(window_n=2)
    ma.step(5.0)
    ma.reset()
    assert ma.step(1.0) == 1.0
    assert ma.count == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window_s": 1.0, "sample_period_s": 0.3}, r"^MovingAverage: window_s must be a whole number"),
    ({"window_s": 0.05, "sample_period_s": 0.1}, r"^MovingAverage: window_s must be a whole number"),
    ({"window_s": -1.0, "sample_period_s": 0.1}, r"^MovingAverage: window_s must be > 0, got -1.0$"),
    ({"window_s": 1.0}, r"^MovingAverage: give window_n, or window_s together with sample_period_s"),
    ({"window_n": 0}, r"^MovingAverage: window_n must be >= 1, got 0$"),
    ({"window_n": 3, "window_s": 1.0}, r"^MovingAverage: give either window_n or window_s"),
])
def test_invalid_windows_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MovingAverage(**kwargs)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
)
def test_mean_equals_numpy_mean_of_the_window_at_every_sample(n, xs):
    ma = MovingAverage(window_n=n)
    for k, x in enumerate(xs):
        mean = ma.step(x)
        window = xs[max(0, k + 1 - n):k + 1]
        assert mean == pytest.approx(float(np.mean(window)), rel=0.0, abs=1e-9)
        assert ma.count == len(window)
        assert ma.full == (k + 1 >= n)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 20),
    xs=st.lists(
        st.one_of(st.floats(-1e15, 1e15), st.floats(-1.0, 1.0)),
        min_size=1, max_size=150),
)
def test_mean_is_exact_with_mixed_magnitudes(n, xs):
    # Against math.fsum (correctly rounded). The only residual is the rounding
    # of the compensation term, ~eps**2 of the largest values that went
    # through the sum: a plain running sum would be off by ~eps of them.
    ma = MovingAverage(window_n=n)
    largest = 0.0
    for k, x in enumerate(xs):
        mean = ma.step(x)
        largest = max(largest, abs(x))
        window = xs[max(0, k + 1 - n):k + 1]
        exact = math.fsum(window) / len(window)
        assert mean == pytest.approx(exact, rel=1e-12, abs=1e-20 * largest)


def test_five_minute_frequency_mean_stays_exact_over_a_million_samples():
    rng = random.Random(1)
    n = 3000
    ma = MovingAverage(window_s=300.0, sample_period_s=0.1)
    xs = [50.0 + rng.gauss(0.0, 0.05) + 0.02 * math.sin(k / 500.0) for k in range(1_000_000)]
    arr = np.array(xs)
    worst = 0.0
    for k, x in enumerate(xs):
        mean = ma.step(x)
        if k % 9973 == 0 or k > 999_000:
            worst = max(worst, abs(mean - float(np.mean(arr[max(0, k + 1 - n):k + 1]))))
    assert worst < 1e-9
    assert ma.mean == pytest.approx(math.fsum(xs[-n:]) / n, rel=0, abs=1e-12)
