"""CTU, CTD, CTUD: counting rising edges, as the standard defines."""

from __future__ import annotations

import pytest

from blocks import CTD, CTU, CTUD

T, F = True, False


def test_ctu_counts_rising_edges_not_levels():
    ctu = CTU(pv=3)
    cu = [T, T, F, T, F, F, T, T]
    cvs = []
    for x in cu:
        ctu.step(x)
        cvs.append(ctu.cv)
    assert cvs == [1, 1, 1, 2, 2, 2, 3, 3]
    assert ctu.q is True


def test_ctu_q_is_cv_at_least_pv():
    ctu = CTU(pv=2)
    assert [ctu.step(x) for x in [T, F, T, F, T]] == [F, F, T, T, T]


def test_ctu_reset_dominates_and_still_tracks_the_edge_memory():
    ctu = CTU(pv=5)
    ctu.step(T)
    ctu.step(T, r=T)          # reset while cu is high
    assert ctu.cv == 0
    ctu.step(T)               # still high: no new edge
    assert ctu.cv == 0
    ctu.step(F)
    ctu.step(T)
    assert ctu.cv == 1


def test_ctu_stops_at_cv_max():
    ctu = CTU(pv=2, cv_max=2)
    for _ in range(5):
        ctu.step(T)
        ctu.step(F)
    assert ctu.cv == 2


def test_ctu_with_zero_preset_is_done_at_once():
    assert CTU(pv=0).step(F) is True


def test_ctd_loads_pv_and_counts_down_to_q():
    ctd = CTD(pv=2)
    ctd.step(F, ld=T)
    assert (ctd.cv, ctd.q) == (2, False)
    assert [ctd.step(x) for x in [T, F, T, F]] == [F, F, T, T]
    assert ctd.cv == 0


def test_ctd_goes_below_zero_down_to_cv_min():
    ctd = CTD(pv=0, cv_min=-1)
    for _ in range(3):
        ctd.step(T)
        ctd.step(F)
    assert ctd.cv == -1
    assert ctd.q is True


def test_ctud_counts_both_ways():
    c = CTUD(pv=2)
    c.step(T, F)
    c.step(F, F)
    c.step(T, F)
    assert (c.cv, c.qu, c.qd) == (2, True, False)
    c.step(F, T)
    assert (c.cv, c.qu, c.qd) == (1, False, False)
    c.step(F, F)
    c.step(F, T)
    assert (c.cv, c.qu, c.qd) == (0, False, True)


def test_ctud_simultaneous_edges_cancel():
    c = CTUD(pv=5)
    assert c.step(T, T) == 0
    c.step(F, F)
    c.step(T, F)
    assert c.step(F, F) == 1


def test_ctud_reset_dominates_load():
    c = CTUD(pv=4)
    assert c.step(F, F, r=T, ld=T) == 0
    assert c.step(F, F, ld=T) == 4
    assert c.qu is True


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (CTU, {"pv": -1}, r"^CTU: pv must be >= 0, got -1$"),
    (CTD, {"pv": 1.5}, r"^CTD: pv must be an integer, got 1.5$"),
    (CTUD, {"pv": True}, r"^CTUD: pv must be an integer, got True$"),
    (CTU, {"pv": 10, "cv_max": 5}, r"^CTU: pv must be <= cv_max \(5\), got 10$"),
    (CTD, {"pv": 1, "cv_min": 3}, r"^CTD: cv_min must be <= 0, got 3$"),
])
def test_invalid_counter_parameters_are_rejected(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)
