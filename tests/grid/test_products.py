"""The products' figures are the reference's (../shared/reference/grid_services.md, TR 3 and 3.5)."""

from __future__ import annotations

import pytest

from programs.grid.products import FCR_D_DOWN, FCR_D_UP, FCR_N, FFR_LEVELS_HZ, ffr_full_activation_s
from programs.grid.reserve import endurance_min, fcr_reserve, ffr_reserve, total

C = 10_000.0


@pytest.mark.parametrize("f_hz, expected", [(50.0, 0.0), (49.95, 0.5 * C), (49.9, C), (49.8, C), (50.05, -0.5 * C),
                                             (50.1, -C), (50.3, -C)])
def test_fcr_n_is_c_times_50_minus_f_over_0_1_within_plus_minus_c(f_hz, expected):
    assert FCR_N.droop(C).power_w(f_hz) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("f_hz, expected", [(50.0, 0.0), (49.9, 0.0), (49.8, 0.25 * C), (49.7, 0.5 * C),
                                             (49.5, C), (49.0, C)])
def test_fcr_d_up_is_c_times_49_9_minus_f_over_0_4_below_49_9(f_hz, expected):
    assert FCR_D_UP.droop(C).power_w(f_hz) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("f_hz, expected", [(50.0, 0.0), (50.1, 0.0), (50.2, -0.25 * C), (50.5, -C), (51.0, -C)])
def test_fcr_d_down_is_minus_c_times_f_minus_50_1_over_0_4_above_50_1(f_hz, expected):
    assert FCR_D_DOWN.droop(C).power_w(f_hz) == pytest.approx(expected, abs=1e-6)


def test_fcr_d_up_has_no_response_at_its_deadband_edge_and_a_small_one_just_below():
    droop = FCR_D_UP.droop(C)
    assert droop.power_w(49.9) == 0.0
    assert droop.power_w(49.899) == pytest.approx(C * 0.001 / 0.4)


def test_fcr_d_down_has_no_response_at_its_deadband_edge_and_a_small_one_just_above():
    droop = FCR_D_DOWN.droop(C)
    assert droop.power_w(50.1) == 0.0
    assert droop.power_w(50.101) == pytest.approx(-C * 0.001 / 0.4)


def test_the_power_reservation_follows_the_table():
    assert (fcr_reserve(FCR_N, C, ler=True).up_w, fcr_reserve(FCR_N, C, ler=True).down_w) == (1.34 * C, 1.34 * C)
    assert (fcr_reserve(FCR_D_UP, C, ler=True).up_w, fcr_reserve(FCR_D_UP, C, ler=True).down_w) == (C, 0.2 * C)
    assert (fcr_reserve(FCR_D_DOWN, C, ler=True).up_w, fcr_reserve(FCR_D_DOWN, C, ler=True).down_w) == (0.2 * C, C)


def test_without_energy_management_no_nem_headroom_is_reserved():
    assert (fcr_reserve(FCR_N, C, ler=False).up_w, fcr_reserve(FCR_N, C, ler=False).down_w) == (C, C)
    assert (fcr_reserve(FCR_D_UP, C, ler=False).up_w, fcr_reserve(FCR_D_UP, C, ler=False).down_w) == (C, 0.0)


def test_the_energy_reservation_is_one_hour_for_fcr_n_and_20_minutes_for_fcr_d():
    n, up, down = (fcr_reserve(s, C, ler=True) for s in (FCR_N, FCR_D_UP, FCR_D_DOWN))
    assert (n.up_wh, n.down_wh) == (C, C)
    assert (up.up_wh, up.down_wh) == (pytest.approx(C / 3), 0.0)
    assert (down.up_wh, down.down_wh) == (0.0, pytest.approx(C / 3))


def test_several_products_reserve_the_sum():
    both = total([fcr_reserve(FCR_N, C, True), fcr_reserve(FCR_D_UP, 2 * C, True), ffr_reserve(C, 30.0, 25.0)])
    assert both.up_w == pytest.approx(1.34 * C + 2 * C + C)
    assert both.down_w == pytest.approx(1.34 * C + 0.4 * C + 0.25 * C)


@pytest.mark.parametrize("spec, aem_on, aem_off, nem_on, nem_off, gain", [
    (FCR_N, 5.0, 10.0, 30.0, 57.5, 0.34), (FCR_D_UP, 5.0, 10.0, 20.0, 20.0, 0.20),
    (FCR_D_DOWN, 5.0, 10.0, 20.0, 20.0, 0.20)])
def test_ler_thresholds_and_nem_power_are_the_references(spec, aem_on, aem_off, nem_on, nem_off, gain):
    assert (spec.aem_on_min, spec.aem_off_min, spec.nem_on_min, spec.nem_off_min, spec.nem_gain) == \
        (aem_on, aem_off, nem_on, nem_off, gain)


def test_ffr_full_activation_times_per_level():
    assert FFR_LEVELS_HZ == {49.7: 1.3, 49.6: 1.0, 49.5: 0.7}
    assert ffr_full_activation_s(49.6) == 1.0


def test_endurance_is_energy_over_setpoint_plus_capacity_minus_inflow_in_minutes():
    assert endurance_min(10_000.0, 0.0, 20_000.0) == pytest.approx(30.0)
    assert endurance_min(10_000.0, 10_000.0, 20_000.0) == pytest.approx(20.0)
    assert endurance_min(10_000.0, 0.0, 20_000.0, inflow_w=10_000.0) == pytest.approx(60.0)
    assert endurance_min(10_000.0, -30_000.0, 20_000.0) == 9999.0  # charging faster than the service drains
