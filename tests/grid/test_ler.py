"""LER energy management as TR 3.5 defines it: NEM inside its frequency window, AEM by SOC alone with
its moving reference, endurance and unavailability. One second per step, as the reference samples."""

from __future__ import annotations

import pytest
from grid_kit import Harness

from programs.grid.ler import Energy, LerManager
from programs.grid.products import FCR_D_DOWN, FCR_D_UP, FCR_N

C = 20_000.0
MIN_WH = C / 60.0  # one minute of full activation


def minutes(low: float = 60.0, high: float = 60.0) -> Energy:
    return Energy(low * MIN_WH, high * MIN_WH)


def run(ler: LerManager, seconds: int, f_hz: float, energy: Energy) -> LerManager:
    for _ in range(seconds):
        ler.second(f_hz, energy)
    return ler


# --- NEM -------------------------------------------------------------------------------------------

def test_nem_charges_fcr_d_up_below_20_minutes_left_inside_the_window():
    ler = run(LerManager(FCR_D_UP, C), 1, 49.95, minutes(low=19.0))
    assert ler.nem_allowed == -1


def test_nem_is_not_allowed_outside_49_9_to_50_1_hz():
    for f in (49.9, 49.5, 50.1, 50.3):
        ler = run(LerManager(FCR_D_UP, C), 1, f, minutes(low=19.0))
        assert ler.nem_allowed == 0, f


def test_nem_current_is_the_mean_of_300_one_second_values_so_it_ramps_over_5_minutes():
    ler = run(LerManager(FCR_D_UP, C), 150, 49.95, minutes(low=19.0))
    assert ler.nem_current == pytest.approx(-0.5)
    run(ler, 150, 49.95, minutes(low=19.0))
    assert ler.nem_current == pytest.approx(-1.0)
    assert ler.nem_w == pytest.approx(-0.2 * C)


def test_nem_for_fcr_n_is_0_34_c_and_works_at_both_ends():
    low = run(LerManager(FCR_N, C), 300, 50.0, minutes(low=29.0, high=60.0))
    high = run(LerManager(FCR_N, C), 300, 50.0, minutes(low=60.0, high=29.0))
    assert (low.nem_w, high.nem_w) == (pytest.approx(-0.34 * C), pytest.approx(0.34 * C))


def test_fcr_n_nem_switches_off_only_above_57_5_minutes():
    ler = run(LerManager(FCR_N, C), 5, 50.0, minutes(low=29.0))
    assert run(ler, 1, 50.0, minutes(low=57.0)).nem_state == -1
    assert run(ler, 1, 50.0, minutes(low=57.6)).nem_state == 0


def test_fcr_d_down_nem_discharges_when_the_battery_is_nearly_full():
    ler = run(LerManager(FCR_D_DOWN, C), 1, 50.05, minutes(high=19.0))
    assert ler.nem_allowed == 1


def test_fcr_d_up_never_uses_nem_at_the_top_of_the_battery():
    ler = run(LerManager(FCR_D_UP, C), 1, 50.0, minutes(low=60.0, high=1.0))
    assert ler.nem_allowed == 0


def test_nem_ramps_out_through_its_300_s_mean_when_the_frequency_leaves_the_window():
    h = Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0)
    h.set(soc_pct=14.0)  # 4 % of 80 kWh = 3.2 kWh = 9.6 min of 20 kW: NEM on (and AEM off)
    h.test_frequency(49.95, 320.0)  # the 300 s mean full of NEM_allowed = -1
    inside = h["nem_p_w"]
    assert inside == pytest.approx(-0.2 * C)
    h.test_frequency(49.85, 1.0)
    assert h["nem_allowed_fcr_d_up"] == 0
    assert h["nem_p_w"] == pytest.approx(inside, rel=0.02)  # no step at the crossing
    h.test_frequency(49.85, 60.0)
    assert inside < h["nem_p_w"] < 0.0  # on its way out, one 300th per second
    h.test_frequency(49.85, 300.0)
    assert h["nem_p_w"] == 0.0


# --- AEM -------------------------------------------------------------------------------------------

def test_aem_switches_on_below_5_minutes_left_whatever_the_frequency():
    ler = run(LerManager(FCR_D_UP, C), 1, 50.0, minutes(low=4.9))
    assert ler.aem and ler.aem_side == -1


def test_aem_stays_on_until_10_minutes_then_switches_off():
    ler = run(LerManager(FCR_D_UP, C), 1, 49.5, minutes(low=4.9))
    assert run(ler, 10, 49.95, minutes(low=9.9)).aem
    assert not run(ler, 1, 49.95, minutes(low=10.1)).aem


def test_the_aem_reference_is_the_5_minute_mean_of_the_saturated_frequency():
    ler = run(LerManager(FCR_D_UP, C), 150, 49.0, minutes(low=4.0))  # 49.0 saturates at 49.5 Hz
    assert ler.f_ref_hz == pytest.approx((150 * 49.9 + 150 * 49.5) / 300)
    run(ler, 150, 49.0, minutes(low=4.0))
    assert ler.f_ref_hz == pytest.approx(49.5)


def test_aem_fades_a_sustained_response_out_over_5_minutes():
    ler = run(LerManager(FCR_D_UP, C), 300, 49.5, minutes(low=4.0))
    droop = FCR_D_UP.droop(C).power_w(49.5)
    assert droop + ler.offset_w == pytest.approx(0.0, abs=1e-6)


def test_at_rest_the_aem_reference_leaves_the_exact_characteristic():
    ler = run(LerManager(FCR_D_UP, C), 600, 49.7, minutes(low=60.0))
    assert ler.offset_w == 0.0
    assert ler.f_ref_hz == 49.9


def test_after_aem_the_reference_returns_to_the_band_edge_over_5_minutes():
    ler = run(LerManager(FCR_D_UP, C), 300, 49.5, minutes(low=4.0))
    run(ler, 1, 49.95, minutes(low=10.5))  # AEM off
    run(ler, 299, 49.95, minutes(low=10.5))
    assert ler.f_ref_hz == pytest.approx(49.9)


def test_the_program_reports_a_product_in_aem_unavailable_with_endurance_zero():
    h = Harness(fcr_d_up_capacity_w=C).run_s(3.0, soc_pct=11.0)  # 1 % = 800 Wh = 2.4 min: AEM
    assert h["aem_active_fcr_d_up"]
    assert h["endurance_up_min"] == 0.0
    assert h["fcr_d_up_maintained_w"] == 0.0
    assert h["service_reason"] == "fcr_d_up AEM: battery low"


def test_in_aem_a_full_activation_fades_to_nothing_in_5_minutes():
    h = Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0)
    h.set(soc_pct=11.0)
    h.test_frequency(49.5, 1.0)
    assert h["service_p_w"] == pytest.approx(C, rel=0.01)
    h.test_frequency(49.5, 150.0)
    assert h["service_p_w"] == pytest.approx(0.5 * C, rel=0.02)
    h.test_frequency(49.5, 151.0)
    assert h["service_p_w"] == pytest.approx(0.0, abs=1e-6)


def test_aem_switches_off_in_the_program_once_the_battery_is_recharged():
    h = Harness(fcr_d_up_capacity_w=C).run_s(3.0, soc_pct=11.0)
    assert h["aem_active_fcr_d_up"]
    h.run_s(3.0, soc_pct=14.5)  # 4.5 % = 3.6 kWh = 10.8 min left
    assert not h["aem_active_fcr_d_up"]
    assert h["fcr_d_up_maintained_w"] == pytest.approx(C)
    assert h["endurance_up_min"] == pytest.approx(10.8)


def test_without_ler_there_is_neither_nem_nor_aem():
    h = Harness(fcr_d_up_capacity_w=C, ler=False).run_s(5.0, soc_pct=11.0)
    assert not h["aem_active_fcr_d_up"]
    assert h["nem_allowed_fcr_d_up"] == 0
    assert h["service_reserve_down_w"] == 0.0


def test_a_capacity_change_carries_nem_on_instead_of_restarting_it():
    """NEM's 300 s mean carries on through a capacity write: 10 -> 11 kW scales its power by 1.1,
    it does not drop to 0 and ramp again."""
    h = Harness(fcr_n_capacity_w=10_000.0)
    h.scan(1000, soc_pct=12.0, grid_frequency_hz=50.0)  # 100 s of NEM charging at a low SOC
    before_current, before_w = h["nem_current_fcr_n"], h["service_p_w"]
    assert before_current < -0.3
    h.scan(1, soc_pct=12.0, grid_frequency_hz=50.0, fcr_n_capacity_w=11_000.0)
    assert h["nem_current_fcr_n"] == pytest.approx(before_current, abs=0.01)
    assert h["service_p_w"] == pytest.approx(before_w * 1.1, rel=0.02)
