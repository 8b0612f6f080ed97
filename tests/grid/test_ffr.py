"""FFR: activation at the level, support, limited deactivation, buffer, limited recovery, re-arming
15 minutes after an activation and not before."""

from __future__ import annotations

import itertools

import pytest
from grid_kit import Harness

from programs.grid.ffr import Ffr, FfrParams, FfrState

C = 10_000.0
DT = 0.1


def step(ffr: Ffr, f_hz: float, seconds: float, may_trigger: bool = True) -> list[float]:
    return [ffr.step(f_hz, DT, may_trigger) for _ in range(int(round(seconds / DT)))]


def activated(params: FfrParams | None = None) -> Ffr:
    ffr = Ffr(params or FfrParams(), C)
    step(ffr, 49.4, 0.1)
    return ffr


@pytest.mark.parametrize("level", [49.7, 49.6, 49.5])
def test_ffr_activates_fully_in_the_scan_the_frequency_reaches_its_level(level):
    ffr = Ffr(FfrParams(activation_hz=level), C)
    assert step(ffr, level + 0.01, 1.0)[-1] == 0.0
    assert step(ffr, level, 0.1) == [C]


def test_ffr_holds_full_power_for_its_support_time_even_when_the_frequency_recovers():
    ffr = activated(FfrParams(support_s=30.0))
    powers = step(ffr, 50.0, 29.8)
    assert min(powers) == C


def test_ffr_deactivates_no_faster_than_20_percent_per_second():
    ffr = activated(FfrParams(support_s=5.0, deactivation_pct_per_s=20.0))
    powers = step(ffr, 50.0, 12.0)
    drops = [a - b for a, b in itertools.pairwise(powers)]
    assert max(drops) == pytest.approx(0.2 * C * DT)
    assert powers[-1] == 0.0


def test_a_5_s_support_needs_the_limited_deactivation():
    with pytest.raises(ValueError, match="deactivation_pct_per_s <= 20"):
        FfrParams(support_s=5.0, deactivation_pct_per_s=50.0)


def test_ffr_waits_its_buffer_at_zero_before_recovering():
    ffr = activated(FfrParams(support_s=5.0, buffer_s=10.0))
    step(ffr, 50.0, 4.9 + 5.0)  # support, then 5 s of deactivation
    assert ffr.state is FfrState.BUFFER
    powers = step(ffr, 50.0, 9.9)
    assert max(abs(p) for p in powers) == 0.0
    assert step(ffr, 50.0, 0.2)[-1] < 0.0


def test_ffr_recovers_at_most_its_recovery_power_and_only_above_49_9_hz():
    ffr = activated(FfrParams(support_s=5.0, recovery_pct=25.0))
    step(ffr, 50.0, 25.0)
    assert ffr.state is FfrState.RECOVERY
    assert step(ffr, 49.85, 1.0) == [0.0] * 10  # still low: no recharging yet
    powers = step(ffr, 50.0, 5.0)
    assert min(powers) == pytest.approx(-0.25 * C)


def test_ffr_recovers_the_energy_it_delivered_then_waits():
    ffr = activated(FfrParams(support_s=5.0))
    step(ffr, 50.0, 300.0)
    assert ffr.state is FfrState.WAITING
    assert ffr.recovered_wh == pytest.approx(ffr.delivered_wh, rel=0.01)


def test_ffr_does_not_re_arm_before_15_minutes():
    ffr = activated()
    step(ffr, 50.0, 600.0)
    assert step(ffr, 49.4, 1.0) == [0.0] * 10  # a second dip 10 min after: no activation
    step(ffr, 50.0, 298.0)  # 899 s after the activation
    assert not ffr.ready


def test_ffr_is_ready_again_15_minutes_after_an_activation():
    ffr = activated()
    step(ffr, 50.0, 900.0)
    assert ffr.ready
    assert step(ffr, 49.4, 0.1) == [C]
    assert ffr.activations == 2


def test_the_program_triggers_ffr_on_the_unfiltered_frequency():
    h = Harness(ffr_capacity_w=C)  # the FCR filter is 1 s; FFR must not wait for it
    h.test_frequency(50.0, 5.0)
    h.test_frequency(49.45)
    assert h["ffr_p_w"] == C
    assert h["service_p_w"] == C


def test_the_program_does_not_trigger_ffr_while_the_site_is_not_running():
    h = Harness(ffr_capacity_w=C)
    h.scan(10, site_state=2)
    h.test_frequency(49.45, 1.0)
    assert h["ffr_p_w"] == 0.0
    assert h["ffr_ready"]


def test_the_program_reports_ffr_unavailable_until_re_armed():
    h = Harness(ffr_capacity_w=C).test_frequency(50.0, 2.0)
    assert h["ffr_maintained_w"] == pytest.approx(C)
    h.test_frequency(49.45, 1.0)
    h.test_frequency(50.0, 60.0)
    assert h["ffr_maintained_w"] == 0.0
    assert not h["ffr_ready"]


def test_a_single_glitch_sample_of_the_meter_activates_nothing():
    """A 100 ms meter reading of 45.5 Hz between two of 50.0 Hz: no FFR, no FCR-D pulse."""
    h = Harness(ffr_capacity_w=C, fcr_d_up_capacity_w=5000.0)
    h.scan(50, grid_frequency_hz=50.0)
    outputs = []
    for f in (45.5, 50.0, 50.0, 50.0):
        h.scan(1, grid_frequency_hz=f)
        outputs.append(h["service_p_w"])
    assert h["ffr_state"] == FfrState.ARMED
    assert max(abs(p) for p in outputs) < 100.0


def test_a_real_fall_through_the_level_activates_ffr_in_the_scan_it_gets_there():
    h = Harness(ffr_capacity_w=C)
    h.scan(50, grid_frequency_hz=50.0)
    f = 50.0
    while f > 49.5 + 1e-9:  # 1 Hz/s, as steep as the Nordic system falls
        f = round(f - 0.1, 3)
        h.scan(1, grid_frequency_hz=f)
    assert h["ffr_p_w"] == C


def test_a_step_faster_than_physics_is_believed_once_the_next_sample_confirms_it():
    h = Harness(ffr_capacity_w=C)
    h.scan(50, grid_frequency_hz=50.0)
    h.scan(1, grid_frequency_hz=49.0)
    assert h["ffr_p_w"] == 0.0  # held back one sample
    h.scan(1, grid_frequency_hz=49.0)
    assert h["ffr_p_w"] == C


def test_a_capacity_change_after_an_activation_neither_fires_ffr_again_nor_drops_its_recovery():
    h = Harness(ffr_capacity_w=C)
    h.scan(50, grid_frequency_hz=50.0)
    h.scan(2, grid_frequency_hz=49.4)  # the activation
    h.scan(1400, grid_frequency_hz=50.0)  # 140 s on: recovering the energy delivered
    ffr = h.program.ffr
    assert ffr.state is FfrState.RECOVERY
    h.scan(20, grid_frequency_hz=49.45, ffr_capacity_w=8000.0)  # a new capacity while the frequency is low again
    assert (ffr.activations, h["ffr_state"]) == (1, FfrState.RECOVERY)  # no second full FFR
    h.scan(3000, grid_frequency_hz=50.0, ffr_capacity_w=8000.0)
    assert ffr.recovered_wh >= ffr.delivered_wh > 0.0  # the first activation's energy came back
    assert ffr.state in (FfrState.WAITING, FfrState.ARMED)
