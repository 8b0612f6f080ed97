"""The grid_services program scan by scan: signs, deadband edges, the chain's timing, the frequency
input, the sum of products, headroom, availability and the energy guard."""

from __future__ import annotations

import math

import pytest
from grid_kit import Harness

from plc.tags import Quality
from programs.enums import SiteState
from programs.grid.frequency import FrequencySource

C = 20_000.0


def settled(h: Harness, f_hz: float, seconds: float = 15.0) -> Harness:
    return h.test_frequency(f_hz, seconds)


# --- sign and characteristic -------------------------------------------------------------------

def test_fcr_d_up_discharges_when_the_frequency_drops_below_49_9_hz():
    h = settled(Harness(fcr_d_up_capacity_w=C), 49.7)
    assert h["service_p_w"] == pytest.approx(0.5 * C, rel=1e-6)
    assert h["fcr_d_up_p_w"] > 0


def test_fcr_d_down_charges_when_the_frequency_rises_above_50_1_hz():
    h = settled(Harness(fcr_d_down_capacity_w=C), 50.3)
    assert h["service_p_w"] == pytest.approx(-0.5 * C, rel=1e-6)


def test_fcr_n_discharges_below_and_charges_above_50_hz():
    assert settled(Harness(fcr_n_capacity_w=C), 49.95)["service_p_w"] == pytest.approx(0.5 * C, rel=1e-6)
    assert settled(Harness(fcr_n_capacity_w=C), 50.05)["service_p_w"] == pytest.approx(-0.5 * C, rel=1e-6)


def test_fcr_d_up_gives_nothing_at_its_deadband_edge_49_9_hz():
    h = settled(Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0), 49.9)
    assert h["service_p_w"] == 0.0


def test_fcr_d_up_responds_10_mhz_inside_its_band():
    h = settled(Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0), 49.89)
    assert h["service_p_w"] == pytest.approx(C * 0.01 / 0.4, rel=1e-4)


def test_fcr_d_down_gives_nothing_at_50_1_hz_and_responds_at_50_11_hz():
    h = Harness(fcr_d_down_capacity_w=C, filter_tau_s=0.0)
    assert settled(h, 50.1)["service_p_w"] == 0.0
    assert settled(h, 50.11)["service_p_w"] == pytest.approx(-C * 0.01 / 0.4, rel=1e-4)


def test_products_sold_together_deliver_the_sum():
    h = Harness(fcr_n_capacity_w=10_000.0, fcr_d_up_capacity_w=C)
    h.set(limit_discharge_w=50_000.0, limit_charge_w=50_000.0)  # room for 1.34 x 10 kW + 20 kW
    settled(h, 49.8)
    assert h["service_p_w"] == pytest.approx(10_000.0 + 0.25 * C, rel=1e-6)


def test_products_that_do_not_fit_the_headroom_are_scaled_down_together():
    h = settled(Harness(fcr_n_capacity_w=10_000.0, fcr_d_up_capacity_w=C), 49.8)  # 33.4 kW reserved, 30 kW there
    assert h["service_p_w"] == pytest.approx((10_000.0 + 0.25 * C) * 30_000.0 / 33_400.0, rel=1e-6)


# --- timing: no delay anywhere in the chain --------------------------------------------------------

def test_without_filter_a_frequency_step_gives_the_full_response_in_the_same_scan():
    h = settled(Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0), 49.9)
    h.test_frequency(49.5)
    assert h["service_p_w"] == pytest.approx(C)


def test_the_1_s_filter_is_the_only_lag_a_step_is_exactly_first_order():
    h = settled(Harness(fcr_d_up_capacity_w=C), 49.9)
    h.test_frequency(49.7)  # one scan of 0.1 s after the step
    assert h["service_p_w"] == pytest.approx(0.5 * C * (1 - math.exp(-0.1)), rel=1e-9)
    h.test_frequency(49.7, 0.9)
    assert h["service_p_w"] == pytest.approx(0.5 * C * (1 - math.exp(-1.0)), rel=1e-9)


def test_the_filter_time_constant_is_a_writable_setting():
    h = settled(Harness(fcr_d_up_capacity_w=C), 49.9)
    h.scan(frequency_filter_tau_s=0.5)
    h.test_frequency(49.7)
    assert h["service_p_w"] == pytest.approx(0.5 * C * (1 - math.exp(-0.2)), rel=1e-9)


# --- the frequency input ---------------------------------------------------------------------------

def test_the_frequency_input_is_not_saturated_at_the_end_of_the_band():
    h = settled(Harness(fcr_d_up_capacity_w=C), 49.0, 30.0)
    assert h["frequency_filtered_hz"] == pytest.approx(49.0, abs=1e-6)
    h.test_frequency(49.7, 1.0)  # the filter comes back from 49.0 Hz: 1.25 s before it passes 49.5 Hz
    assert h["service_p_w"] == pytest.approx(C)
    h.test_frequency(49.7, 0.5)
    assert h["service_p_w"] < 0.99 * C


def test_the_applied_test_frequency_replaces_the_measurement_and_is_flagged():
    h = Harness(fcr_d_up_capacity_w=C)
    h.scan(10)
    assert not h["test_frequency_in_use"]
    settled(h, 49.7)
    assert h["test_frequency_in_use"]
    assert h["frequency_source"] == FrequencySource.TEST
    assert h["frequency_input_hz"] == pytest.approx(49.7)
    assert h["frequency_measured_hz"] == pytest.approx(50.0)  # the meter still logged beside it
    assert h["service_p_w"] == pytest.approx(0.5 * C, rel=1e-6)


def test_test_mode_ends_when_the_applied_frequency_is_not_refreshed():
    h = settled(Harness(fcr_d_up_capacity_w=C, test_timeout_s=5.0), 49.7, 2.0)
    h.scan(int(5.0 / 0.1) + 2)  # the test client fell silent
    assert not h["test_frequency_active"]
    assert not h["test_frequency_in_use"]
    h.run_s(15.0)
    assert h["service_p_w"] == 0.0  # back on the meter's 50 Hz


def test_a_test_client_that_falls_silent_leaves_no_capacity_sold(caplog: pytest.LogCaptureFixture):
    h = settled(Harness(fcr_n_capacity_w=20_000.0, fcr_d_up_capacity_w=C, test_timeout_s=5.0), 49.7, 2.0)
    assert h["fcr_n_capacity_w"] == 20_000.0
    h.scan(int(5.0 / 0.1) + 2)  # the test tool was killed: nobody restores what it sold for its test
    assert h["fcr_n_capacity_w"] == 0.0
    assert h["fcr_d_up_capacity_w"] == 0.0
    assert "fcr_n_capacity_w 20000 W -> 0 W" in caplog.text
    h.run_s(15.0, grid_frequency_hz=49.7)
    assert h["service_p_w"] == 0.0  # nothing sold: a real 49.7 Hz gets no response


def test_the_meter_frequency_drives_the_services_outside_tests():
    h = Harness(fcr_d_up_capacity_w=C).run_s(15.0, grid_frequency_hz=49.7)
    assert h["service_p_w"] == pytest.approx(0.5 * C, rel=1e-6)
    assert h["frequency_source"] == FrequencySource.METER


def test_a_bad_meter_frequency_withdraws_the_services_and_says_so():
    h = Harness(fcr_d_up_capacity_w=C).run_s(15.0, grid_frequency_hz=49.7)
    h.image["grid_frequency_hz"].set_quality(Quality.BAD)
    h.run_s(1.0)
    assert h["service_p_w"] == 0.0
    assert not h["frequency_ok"]
    assert h["fcr_d_up_maintained_w"] == 0.0
    assert h["service_reason"] == "frequency invalid"


def test_an_outage_reading_of_0_hz_is_invalid_not_a_huge_deviation():
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0, grid_frequency_hz=0.0)
    assert h["service_p_w"] == 0.0
    assert not h["frequency_ok"]


def test_the_inverter_frequency_stands_in_when_the_meter_fails():
    h = Harness(fcr_d_up_capacity_w=C, frequency_inputs=("grid_frequency_hz", "inverter_frequency_hz"))
    h.image["grid_frequency_hz"].set_quality(Quality.BAD)
    h.run_s(15.0, inverter_frequency_hz=49.7)
    assert h["frequency_source"] == FrequencySource.INVERTER
    assert h["service_p_w"] == pytest.approx(0.5 * C, rel=1e-6)


# --- capacity, headroom and availability -----------------------------------------------------------

def test_nothing_sold_gives_no_power_and_reserves_no_headroom():
    h = Harness().run_s(3.0, grid_frequency_hz=49.5)
    assert h["service_p_w"] == 0.0
    assert (h["service_reserve_up_w"], h["service_reserve_down_w"]) == (0.0, 0.0)


def test_a_capacity_command_sells_a_product_from_the_next_scan():
    h = Harness().run_s(2.0)
    h.scan(fcr_d_up_capacity_w=C)
    assert h["service_reserve_up_w"] == pytest.approx(C)
    settled(h, 49.5)
    assert h["service_p_w"] == pytest.approx(C)


def test_the_headroom_of_all_products_is_reserved_for_site_control():
    h = Harness(fcr_n_capacity_w=10_000.0, fcr_d_up_capacity_w=10_000.0, ffr_capacity_w=5_000.0).scan()
    assert h["service_reserve_up_w"] == pytest.approx(13_400.0 + 10_000.0 + 5_000.0)
    assert h["service_reserve_down_w"] == pytest.approx(13_400.0 + 2_000.0 + 1_250.0)


def test_the_maintained_capacity_is_the_sold_one_when_the_headroom_is_there():
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0)
    assert h["fcr_d_up_maintained_w"] == pytest.approx(C)


def test_products_are_reduced_and_reported_when_the_discharge_headroom_shrinks():
    h = Harness(fcr_d_up_capacity_w=C)
    settled(h, 49.5)
    h.run_s(2.0, limit_discharge_w=15_000.0, applied_test_frequency_hz=49.5, test_frequency_active=True)
    assert h["fcr_d_up_maintained_w"] == pytest.approx(15_000.0)
    assert h["service_p_w"] == pytest.approx(15_000.0)
    assert h["service_reason"] == "discharge headroom 75 %"


def test_nothing_is_maintained_while_the_site_is_not_running():
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0, site_state=int(SiteState.IDLE))
    assert h["fcr_d_up_maintained_w"] == 0.0
    assert h["service_reason"] == "site not running"


def test_a_sold_product_keeps_the_site_awake():
    h = Harness(fcr_d_up_capacity_w=C).scan(sleep_request=True)
    assert h["sleep_request"] is False


def test_with_nothing_sold_the_site_may_sleep():
    h = Harness().scan(sleep_request=True)
    assert h["sleep_request"] is True


def test_the_baseline_may_not_discharge_the_energy_reserved_for_fcr_d_up():
    # floor = 5 % + 5 % margin; 20 kW x 20 min = 6.67 kWh = 8.3 % of 80 kWh -> the baseline stops at 18.3 %
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0, soc_pct=18.0, baseline_p_w=5000.0)
    assert h["service_soc_floor_pct"] == pytest.approx(10.0 + 100 * C / 3 / 80_000)
    assert h["baseline_guard_w"] == pytest.approx(-5000.0)
    assert h["baseline_effective_w"] == pytest.approx(0.0)
    assert h["service_p_w"] == pytest.approx(-5000.0 + h["nem_p_w"])  # NEM recharges here too


def test_the_baseline_is_free_above_the_reserved_energy():
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0, soc_pct=40.0, baseline_p_w=5000.0)
    assert h["baseline_guard_w"] == 0.0
    assert h["baseline_effective_w"] == pytest.approx(5000.0)


def test_the_baseline_may_charge_into_the_reserve_it_may_not_discharge():
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0, soc_pct=12.0, baseline_p_w=-3000.0)
    assert h["baseline_guard_w"] == 0.0


def test_endurance_is_published_in_minutes_of_full_activation():
    # SOC 50 %: 40 % of 80 kWh above the 10 % floor = 32 kWh; at 20 kW that is 96 minutes
    h = Harness(fcr_d_up_capacity_w=C).run_s(2.0)
    assert h["endurance_up_min"] == pytest.approx(96.0)


def test_at_a_10_ms_scan_the_response_is_the_same_first_order_curve():
    h = Harness(period_s=0.01, fcr_d_up_capacity_w=C)
    h.test_frequency(49.9, 15.0)
    h.test_frequency(49.7, 1.0)
    assert h["service_p_w"] == pytest.approx(0.5 * C * (1 - math.exp(-1.0)), rel=1e-6)


def test_fcr_d_provision_ended_during_a_disturbance_continues_until_the_frequency_is_back():
    """TR 3.7: FCR-D scheduled to end while the frequency is outside 49.9..50.1 Hz continues
    until it is back (today's bug: 7.5 kW dropped to 0 in a scan at 49.6 Hz)."""
    h = Harness(fcr_d_up_capacity_w=10_000.0, filter_tau_s=0.0)
    h.scan(20, grid_frequency_hz=50.0)
    h.scan(20, grid_frequency_hz=49.6)
    assert h["fcr_d_up_p_w"] == pytest.approx(7500.0)
    h.scan(600, grid_frequency_hz=49.6, fcr_d_up_capacity_w=0.0)  # the schedule ends the provision: 60 s on
    assert h["fcr_d_up_p_w"] == pytest.approx(7500.0)
    h.scan(20, grid_frequency_hz=50.0, fcr_d_up_capacity_w=0.0)
    assert h["fcr_d_up_p_w"] == 0.0 and h["service_reserve_up_w"] == 0.0


def test_after_15_minutes_of_disturbance_an_ended_fcr_d_provision_ramps_down_over_5_minutes():
    h = Harness(fcr_d_up_capacity_w=10_000.0, filter_tau_s=0.0)
    h.scan(20, grid_frequency_hz=50.0)
    h.scan(20, grid_frequency_hz=49.6)
    h.scan(8990, grid_frequency_hz=49.6, fcr_d_up_capacity_w=0.0)  # 899 s since the end was asked
    assert h["fcr_d_up_p_w"] == pytest.approx(7500.0)
    h.scan(1500, grid_frequency_hz=49.6, fcr_d_up_capacity_w=0.0)  # half-way down the 5 min
    assert h["fcr_d_up_p_w"] == pytest.approx(3750.0, rel=0.05)
    h.scan(1600, grid_frequency_hz=49.6, fcr_d_up_capacity_w=0.0)
    assert h["fcr_d_up_p_w"] == 0.0


def test_a_capacity_cut_in_the_normal_band_applies_at_once():
    h = Harness(fcr_d_up_capacity_w=10_000.0, filter_tau_s=0.0)
    h.scan(20, grid_frequency_hz=49.95)
    h.scan(1, grid_frequency_hz=49.95, fcr_d_up_capacity_w=0.0)
    assert h["service_reserve_up_w"] == 0.0


def test_a_meter_frozen_on_one_value_is_stuck_and_the_inverter_frequency_stands_in():
    h = Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0, frequency_stuck_s=10.0,
                frequency_inputs=("grid_frequency_hz", "inverter_frequency_hz"))
    for k in range(50):  # a live grid: the frequency moves by some mHz
        h.scan(1, grid_frequency_hz=49.7 + 0.001 * (k % 3), inverter_frequency_hz=49.7)
    assert h["frequency_source"] == FrequencySource.METER
    h.run_s(10.5, grid_frequency_hz=49.8123, inverter_frequency_hz=49.7)  # the meter freezes
    assert h["frequency_source"] == FrequencySource.INVERTER
    assert h["service_p_w"] == pytest.approx(0.5 * C, rel=1e-6)
    h.scan(1, grid_frequency_hz=49.8124, inverter_frequency_hz=49.7)  # it moves again
    assert h["frequency_source"] == FrequencySource.METER


def test_a_stuck_frequency_with_no_other_input_withdraws_the_services_and_says_so():
    h = Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0, frequency_stuck_s=10.0)
    h.run_s(12.0, grid_frequency_hz=49.8)
    assert h["frequency_ok"] is False and h["service_p_w"] == 0.0
    assert h["service_reason"] == "frequency stuck"


def test_a_constant_frequency_is_not_stuck_unless_the_site_asks_for_the_check():
    h = Harness(fcr_d_up_capacity_w=C, filter_tau_s=0.0)
    h.run_s(60.0, grid_frequency_hz=49.8)
    assert h["frequency_ok"] is True
