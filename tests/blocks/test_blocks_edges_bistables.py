"""R_TRIG, F_TRIG, SR, RS: the standard's bodies, scan by scan."""

from __future__ import annotations

import pytest

from blocks import F_TRIG, R_TRIG, RS, SR

T, F = True, False


def outputs(block, inputs):
    return [block.step(*args) if isinstance(args, tuple) else block.step(args) for args in inputs]


def test_r_trig_is_true_for_one_scan_per_rising_edge():
    clk = [F, T, T, T, F, F, T, F, T]
    assert outputs(R_TRIG(), clk) == [F, T, F, F, F, F, T, F, T]


def test_r_trig_fires_on_first_scan_when_clk_starts_true():
    assert outputs(R_TRIG(), [T, T]) == [T, F]


def test_f_trig_is_true_for_one_scan_per_falling_edge():
    clk = [T, T, F, F, T, F, T, T, F]
    assert outputs(F_TRIG(), clk) == [F, F, T, F, F, T, F, F, T]


def test_f_trig_fires_on_first_scan_when_clk_starts_false_as_the_standard_says():
    # Q := NOT CLK AND NOT M with M initially FALSE.
    assert outputs(F_TRIG(), [F, F]) == [T, F]


def test_f_trig_memory_true_suppresses_the_first_scan_edge():
    assert outputs(F_TRIG(m=True), [F, F, T, F]) == [F, F, F, T]


def test_edge_outputs_are_readable_as_attribute_and_accept_dt():
    trig = R_TRIG()
    trig.step(True, 0.1)
    assert trig.q is True


def test_edge_memory_must_be_a_bool():
    with pytest.raises(ValueError, match=r"^F_TRIG: m must be a bool, got 1$"):
        F_TRIG(m=1)


# SR: Q1 := S1 OR (NOT R AND Q1)
SR_TRUTH = [
    # (s1, r, q1 before, q1 after)
    (F, F, F, F), (F, F, T, T),
    (T, F, F, T), (T, F, T, T),
    (F, T, F, F), (F, T, T, F),
    (T, T, F, T), (T, T, T, T),   # set dominates
]

# RS: Q1 := NOT R1 AND (S OR Q1)
RS_TRUTH = [
    (F, F, F, F), (F, F, T, T),
    (T, F, F, T), (T, F, T, T),
    (F, T, F, F), (F, T, T, F),
    (T, T, F, F), (T, T, T, F),   # reset dominates
]


@pytest.mark.parametrize(("s1", "r", "before", "after"), SR_TRUTH)
def test_sr_truth_table_is_set_dominant(s1, r, before, after):
    latch = SR(q1=before)
    assert latch.step(s1, r) is after
    assert latch.q1 is after and latch.q is after


@pytest.mark.parametrize(("s", "r1", "before", "after"), RS_TRUTH)
def test_rs_truth_table_is_reset_dominant(s, r1, before, after):
    latch = RS(q1=before)
    assert latch.step(s, r1) is after
    assert latch.q is after


def test_sr_latches_a_set_pulse_until_reset():
    latch = SR()
    seq = [(T, F), (F, F), (F, F), (F, T), (F, F)]
    assert outputs(latch, seq) == [T, T, T, F, F]
