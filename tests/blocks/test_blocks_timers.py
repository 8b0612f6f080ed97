"""TON, TOF, TP against the IEC 61131-3 timing diagrams.

Each table row is (in_, expected q, expected et_s) for one scan. dt = 0.25 s
(exact in binary) so elapsed times compare exactly; the float-robust rule is
tested separately with dt = 0.1 and dt = 0.01.
"""

from __future__ import annotations

import pytest

from blocks import TOF, TON, TP
from blocks.timers import reached

T, F = True, False
DT = 0.25


def run_table(block, rows, dt=DT):
    for k, (in_, q, et) in enumerate(rows):
        out = block.step(in_, dt)
        assert (out, block.q, block.et_s) == (q, q, et), f"scan {k}: in_={in_}"


# --- TON -------------------------------------------------------------------

def test_ton_follows_the_standard_timing_diagram():
    # IEC diagram: t0 rise, q at t0+PT, t1 fall (q drops at once),
    # t2..t3 pulse shorter than PT (q never rises), t4 rise, t5 fall.
    rows = [
        (F, F, 0.0),
        (T, F, 0.0),   # t0: edge scan is time zero
        (T, F, 0.25),
        (T, F, 0.5),
        (T, F, 0.75),
        (T, T, 1.0),   # t0 + PT
        (T, T, 1.0),   # et_s holds at pt_s
        (F, F, 0.0),   # t1: q and et_s drop in the same scan
        (T, F, 0.0),   # t2
        (T, F, 0.25),
        (F, F, 0.0),   # t3: shorter than PT, q never rose
        (T, F, 0.0),   # t4
        (T, F, 0.25),
        (T, F, 0.5),
        (T, F, 0.75),
        (T, T, 1.0),   # t4 + PT
        (F, F, 0.0),   # t5
    ]
    run_table(TON(pt_s=1.0), rows)


def test_ton_q_rises_on_first_scan_when_input_true_from_start():
    ton = TON(pt_s=0.5)
    run_table(ton, [(T, F, 0.0), (T, F, 0.25), (T, T, 0.5)])


def test_ton_with_zero_preset_passes_input_through_without_delay():
    run_table(TON(pt_s=0.0), [(F, F, 0.0), (T, T, 0.0), (T, T, 0.0), (F, F, 0.0)])


def test_ton_uses_a_new_preset_while_timing():
    ton = TON(pt_s=10.0)
    ton.step(True, DT)
    ton.step(True, DT)  # et 0.25
    ton.pt_s = 0.5
    assert ton.step(True, DT) is True
    assert ton.et_s == 0.5


def test_ton_ignores_preset_changes_after_it_has_fired():
    ton = TON(pt_s=0.25)
    ton.step(True, DT)
    assert ton.step(True, DT) is True
    ton.pt_s = 5.0
    assert ton.step(True, DT) is True
    assert ton.et_s == 0.25


def test_ton_reset_returns_to_idle():
    ton = TON(pt_s=0.25)
    ton.step(True, DT)
    ton.step(True, DT)
    ton.reset()
    assert (ton.q, ton.et_s) == (False, 0.0)
    assert ton.step(True, DT) is False  # a fresh start, not a continuation


# --- TOF -------------------------------------------------------------------

def test_tof_follows_the_standard_timing_diagram():
    # IEC diagram: q up with in_ at t0; after t1 (fall) q stays for PT;
    # a pulse t2..t3 restarts; after t5 q holds for PT; et_s stays at PT
    # after expiry until in_ rises again.
    rows = [
        (F, F, 0.0),   # never true: timer does not start
        (T, T, 0.0),   # t0
        (T, T, 0.0),
        (F, T, 0.0),   # t1: edge scan is time zero
        (F, T, 0.25),
        (F, T, 0.5),
        (F, F, 0.75),  # t1 + PT (pt_s = 0.75)
        (F, F, 0.75),  # et_s holds pt_s after expiry
        (T, T, 0.0),   # t2: rising input resets et_s
        (F, T, 0.0),   # t3
        (F, T, 0.25),
        (T, T, 0.0),   # t4: back before expiry, q never fell
        (T, T, 0.0),
        (F, T, 0.0),   # t5
        (F, T, 0.25),
        (F, T, 0.5),
        (F, F, 0.75),  # t5 + PT
    ]
    run_table(TOF(pt_s=0.75), rows)


def test_tof_with_zero_preset_drops_in_the_falling_scan():
    run_table(TOF(pt_s=0.0), [(T, T, 0.0), (F, F, 0.0), (F, F, 0.0)])


# --- TP --------------------------------------------------------------------

def test_tp_follows_the_standard_timing_diagram():
    # IEC diagram: t0 rise -> pulse PT long while in_ stays high past it
    # (et_s holds PT until t1 fall); t2 bursts of short pulses inside PT are
    # ignored and et_s returns to 0 at t2+PT because in_ is already low;
    # t4 rise with in_ high beyond PT.
    rows = [
        (F, F, 0.0),
        (T, T, 0.0),   # t0
        (T, T, 0.25),
        (T, T, 0.5),
        (T, F, 0.75),  # t0 + PT: pulse ends, in_ still high -> et_s = PT
        (T, F, 0.75),
        (F, F, 0.0),   # t1
        (T, T, 0.0),   # t2
        (F, T, 0.25),
        (T, T, 0.5),   # retrigger inside the pulse: ignored
        (F, F, 0.0),   # t2 + PT with in_ low: et_s back to 0 at once
        (F, F, 0.0),
        (T, T, 0.0),   # t4
        (T, T, 0.25),
        (T, T, 0.5),
        (T, F, 0.75),
        (F, F, 0.0),   # t5
    ]
    run_table(TP(pt_s=0.75), rows)


def test_tp_needs_a_new_rising_edge_after_the_pulse():
    tp = TP(pt_s=0.25)
    run_table(tp, [(T, T, 0.0), (T, F, 0.25), (T, F, 0.25), (T, F, 0.25)])


def test_tp_with_zero_preset_emits_no_pulse():
    run_table(TP(pt_s=0.0), [(T, F, 0.0), (T, F, 0.0), (F, F, 0.0), (T, F, 0.0)])


# --- float-robust "reached" rule -----------------------------------------------

@pytest.mark.parametrize(("dt", "pt_s", "scans"), [(0.1, 1.0, 10), (0.01, 0.3, 30)])
def test_ton_rises_exactly_pt_after_the_rising_edge(dt, pt_s, scans):
    ton = TON(pt_s=pt_s)
    outputs = [ton.step(True, dt) for _ in range(scans + 3)]
    assert outputs.index(True) == scans
    assert ton.et_s == pt_s


@pytest.mark.parametrize(("dt", "pt_s", "scans"), [(0.1, 1.0, 10), (0.01, 0.3, 30)])
def test_tp_pulse_lasts_exactly_pt(dt, pt_s, scans):
    tp = TP(pt_s=pt_s)
    outputs = [tp.step(True, dt) for _ in range(scans + 3)]
    assert outputs.index(False) == scans
    assert tp.et_s == pt_s


@pytest.mark.parametrize(("dt", "pt_s", "scans"), [(0.1, 1.0, 10), (0.01, 0.3, 30)])
def test_tof_falls_exactly_pt_after_the_falling_edge(dt, pt_s, scans):
    tof = TOF(pt_s=pt_s)
    tof.step(True, dt)
    outputs = [tof.step(False, dt) for _ in range(scans + 3)]
    assert outputs.index(False) == scans
    assert tof.et_s == pt_s


def test_float_sums_of_dt_do_not_make_the_timer_late():
    total = 0.0
    for _ in range(10):
        total += 0.1
    assert total < 1.0  # 0.9999999999999999: a bare >= would be one scan late
    assert reached(total, 1.0)
    assert not reached(0.9, 1.0)


def test_an_hour_of_10_ms_scans_times_out_on_the_right_scan():
    ton = TON(pt_s=3600.0)
    ton.step(True, 0.01)
    n = 0
    while not ton.step(True, 0.01):
        n += 1
    assert n + 1 == 360_000


# --- validation --------------------------------------------------------------------

@pytest.mark.parametrize("cls", [TON, TOF, TP])
def test_negative_preset_is_rejected_with_a_clear_message(cls):
    with pytest.raises(ValueError, match=rf"^{cls.__name__}: pt_s must be >= 0, got -1.0$"):
        cls(pt_s=-1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1.0", True, None])
def test_non_numeric_or_non_finite_presets_are_rejected(bad):
    with pytest.raises(ValueError, match=r"^TON: pt_s must (not )?be"):
        TON(pt_s=bad)


def test_integer_preset_is_stored_as_float():
    assert TON(pt_s=2).pt_s == 2.0
    assert isinstance(TON(pt_s=2).pt_s, float)
