"""The original controller's four-threshold droop maps onto the same blocks as the products."""

from __future__ import annotations

import pytest
from grid_kit import Harness

from programs.grid.legacy import LegacyDroop, LegacyResponse, as_products
from programs.grid.products import FCR_D_UP, Product

DT = 0.1


def test_legacy_settings_equal_to_fcr_n_become_fcr_n():
    legacy = LegacyDroop(49.9, 50.0, 50.0, 50.1, p_up_w=8000.0, p_down_w=8000.0)
    assert as_products(legacy) == {Product.FCR_N: 8000.0}


def test_legacy_settings_equal_to_fcr_d_become_fcr_d_up_and_down():
    legacy = LegacyDroop(49.5, 49.9, 50.1, 50.5, p_up_w=10_000.0, p_down_w=6000.0)
    assert as_products(legacy) == {Product.FCR_D_UP: 10_000.0, Product.FCR_D_DOWN: 6000.0}


def test_a_program_given_legacy_fcr_d_settings_sells_fcr_d_with_its_exact_characteristic():
    h = Harness(legacy=LegacyDroop(49.5, 49.9, 50.1, 50.5, p_up_w=10_000.0, p_down_w=6000.0), filter_tau_s=0.0)
    assert (h["fcr_d_up_capacity_w"], h["fcr_d_down_capacity_w"]) == (10_000.0, 6000.0)
    for f in (49.95, 49.8, 49.6, 49.4):
        h.test_frequency(f, 1.0)
        assert h["service_p_w"] == pytest.approx(FCR_D_UP.droop(10_000.0).power_w(f))


def test_other_legacy_thresholds_run_as_a_four_point_droop():
    legacy = LegacyDroop(49.6, 49.85, 50.15, 50.4, p_up_w=4000.0, p_down_w=2000.0)
    assert as_products(legacy) is None
    response = LegacyResponse(legacy)
    assert response.step(49.725, DT) == pytest.approx(2000.0)
    assert response.step(50.0, DT) == 0.0
    assert response.step(50.5, DT) == pytest.approx(-2000.0)


def test_the_legacy_activation_delay_holds_the_response_back():
    response = LegacyResponse(LegacyDroop(49.6, 49.85, 50.15, 50.4, p_up_w=4000.0, activation_delay_s=0.5))
    powers = [response.step(49.6, DT) for _ in range(7)]
    assert powers[:5] == [0.0] * 5
    assert powers[5] == pytest.approx(4000.0)


def test_the_legacy_deactivation_holds_then_ramps_down():
    legacy = LegacyDroop(49.6, 49.85, 50.15, 50.4, p_up_w=4000.0, deactivation_delay_s=1.0,
                         deactivation_w_per_s=1000.0)
    response = LegacyResponse(legacy)
    response.step(49.6, DT)
    held = [response.step(50.0, DT) for _ in range(10)]  # 1 s after the frequency came back
    assert held == [4000.0] * 10
    ramp = [response.step(50.0, DT) for _ in range(41)]
    assert ramp[0] == pytest.approx(3900.0)  # then 1000 W/s
    assert ramp[39] == pytest.approx(0.0, abs=1e-9)


def test_the_legacy_5_minute_average_fades_a_sustained_deviation_while_its_aem_is_on():
    legacy = LegacyDroop(49.6, 49.85, 50.15, 50.4, p_up_w=4000.0, aem_soc_pct=(20.0, 80.0))
    response = LegacyResponse(legacy)
    for _ in range(300):
        response.second(49.6, soc_pct=15.0)
    assert response.reference_hz == pytest.approx(49.6)
    assert response.step(49.6, DT) == 0.0


def test_legacy_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="f1 < f2 <= f3 < f4"):
        LegacyDroop(49.9, 49.8, 50.1, 50.2)
