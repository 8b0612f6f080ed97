"""`ems prequal`'s tests on the simulated commercial site: every check passes, with margin, and the
judge catches a unit that is wrong (a sign, a delay)."""

from __future__ import annotations

import functools
from pathlib import Path

import attrs
import numpy as np
import pytest

from ems.prequal.evaluate import Check, evaluate
from ems.prequal.recording import Recording
from ems.prequal.runner import TestRun, simulate_test
from ems.prequal.sequences import Sequence

ROOT = Path(__file__).resolve().parents[2]
COMMERCIAL = str(ROOT / "io_maps" / "sim_commercial.toml")
CAPACITY = {"fcr-n": 20_000.0, "fcr-d-up": 27_000.0, "fcr-d-down": 27_000.0, "ffr": 27_000.0}
PLAN = [("fcr-d-up", "ramp", None), ("fcr-d-up", "linearity", None), ("fcr-d-up", "sine", None),
        ("fcr-d-up", "ler", None), ("fcr-d-down", "ramp", None), ("fcr-d-down", "linearity", None),
        ("fcr-d-down", "sine", None), ("fcr-d-down", "ler", None), ("fcr-n", "step", None),
        ("fcr-n", "sine", None), ("fcr-n", "ler", None), ("ffr", "ffr", 49.7), ("ffr", "ffr", 49.6),
        ("ffr", "ffr", 49.5), ("fcr-d-up", "combined", None), ("fcr-d-down", "combined", None),
        ("fcr-n", "endurance", None), ("fcr-d-up", "endurance", None), ("fcr-d-down", "endurance", None)]
# FCR-N + FCR-D at C each reserve 2.34 C up (the inverter's 30 kW); a unit that is not LER holds 2 h
# of full activation each way FCR-N serves (15 kW: 131 min each way of the 82 kWh battery)
TEST_CAPACITY = {("fcr-d-up", "combined"): 11_000.0, ("fcr-d-down", "combined"): 11_000.0,
                 ("fcr-n", "endurance"): 15_000.0}


@functools.cache
def played(product: str, test: str, level: float | None = None,
           io_map: str = COMMERCIAL) -> tuple[Recording, Sequence, tuple[Check, ...]]:
    capacity = TEST_CAPACITY.get((product, test), CAPACITY[product])
    rec, seq = simulate_test(TestRun(io_map, product, test, capacity, level))
    return rec, seq, tuple(evaluate(rec, seq))


def check(product: str, test: str, starts: str, level: float | None = None) -> Check:
    return next(c for c in played(product, test, level)[2] if c.requirement.startswith(starts))


@pytest.mark.parametrize("product, test, level", PLAN)
def test_every_requirement_passes(product, test, level):
    failed = [c for c in played(product, test, level)[2] if not c.passed]
    assert failed == []


@pytest.mark.parametrize("product", ["fcr-d-up", "fcr-d-down"])
def test_fcr_d_activation_at_7_5_s_is_full_against_the_86_percent_required(product):
    assert check(product, "ramp", "activation: power at 7.5 s").measured >= 0.99


@pytest.mark.parametrize("product", ["fcr-d-up", "fcr-d-down"])
def test_fcr_d_energy_in_7_5_s_is_over_5_s_against_the_3_2_s_required(product):
    assert check(product, "ramp", "activation: energy").measured >= 5.0


@pytest.mark.parametrize("product", ["fcr-d-up", "fcr-d-down"])
def test_fcr_d_deactivation_excess_is_about_half_the_2_5_s_allowed(product):
    assert check(product, "ramp", "requirement 4, deactivation").measured <= 1.3


@pytest.mark.parametrize("product", ["fcr-n", "fcr-d-up", "fcr-d-down"])
def test_the_stability_margin_at_10_s_is_over_twice_the_0_43_required(product):
    assert check(product, "sine", "requirement 8, stability: |1 + F G| at 10 s").measured >= 0.86


REAL_DELAYS = {"inverter_delay_s": 0.3, "inverter_tau_s": 0.3}  # a Modbus-driven PCS: 0.3 s dead time, 0.3 s lag


def stability_at_10_s(io_map: str = COMMERCIAL, **chain: float) -> Check:
    rec, seq = simulate_test(TestRun(io_map, "fcr-d-up", "sine", CAPACITY["fcr-d-up"], **chain))
    return next(c for c in evaluate(rec, seq) if c.requirement.startswith("requirement 8, stability: |1 + F G| at 10 s"))


def test_fcr_d_keeps_its_stability_margin_with_a_real_inverters_delays():
    assert stability_at_10_s(**REAL_DELAYS).measured >= 0.5


def test_a_1_s_frequency_filter_with_a_real_inverters_delays_fails_fcr_d_stability(tmp_path):
    text = Path(COMMERCIAL).read_text().replace("[programs.params.log]", "filter_tau_s = 1.0\n[programs.params.log]")
    slow = tmp_path / "filter_1s.toml"
    slow.write_text(text)
    check = stability_at_10_s(str(slow), **REAL_DELAYS)
    assert not check.passed
    assert check.measured < 0.3


@pytest.mark.parametrize("level, limit", [(49.7, 1.3), (49.6, 1.0), (49.5, 0.7)])
def test_ffr_is_fully_active_in_under_half_its_time_at_every_level(level, limit):
    assert check("ffr", "ffr", "FFR first: full activation time", level).measured <= limit / 2


def test_the_ler_test_sees_nem_allowed_inside_its_window_only_and_never_stepping():
    rec = played("fcr-d-up", "ler")[0]
    out = (rec["filtered_hz"] <= 49.9) | (rec["filtered_hz"] >= 50.1)
    outside = out.copy()  # out for over 1 s (11 samples): NEM_allowed is a 1 s sample
    for k in range(1, 12):
        outside[k:] &= out[:-k]
    outside[:11] = False
    assert np.abs(rec["nem_allowed"][outside]).max() == 0
    assert np.abs(np.diff(rec["nem_w"])).max() <= 0.2 * CAPACITY["fcr-d-up"] / 300.0 * 1.05  # ramps, no step
    assert rec["nem_w"].min() < -0.15 * CAPACITY["fcr-d-up"]


def test_a_unit_responding_with_the_wrong_sign_fails_the_ramp_test():
    rec, seq, _ = played("fcr-d-up", "ramp")
    flipped = attrs.evolve(rec, data={**rec.data, "p_w": -rec["p_w"]})
    failed = [c.requirement for c in evaluate(flipped, seq) if not c.passed]
    assert any(r.startswith("activation: power at 7.5 s") for r in failed)


def test_a_unit_with_3_s_of_dead_time_fails_the_deactivation_requirement_only():
    rec, seq = simulate_test(TestRun(COMMERCIAL, "fcr-d-up", "ramp", CAPACITY["fcr-d-up"], inverter_delay_s=3.0))
    failed = [c for c in evaluate(rec, seq) if not c.passed]
    assert [c.requirement.split(":")[0] for c in failed] == ["requirement 4, deactivation"]
    assert failed[0].measured > 2.5  # it still pushes for 3 s after the frequency turned back


# --- the FCR-N LER test (TR Table 12) -------------------------------------------------------------

def fcr_n_ler(changed: dict[str, np.ndarray] | None = None) -> list[Check]:
    """The FCR-N LER test's checks, of the simulated unit or of it with some columns changed."""
    rec, seq, checks = played("fcr-n", "ler")
    if not changed:
        return list(checks)
    return evaluate(attrs.evolve(rec, data={**rec.data, **changed}), seq)


def failed_of(checks: list[Check]) -> list[str]:
    return [c.requirement for c in checks if not c.passed]


def test_the_fcr_n_ler_test_sees_every_step_of_tr_table_12_in_its_nem_and_aem_state():
    checks = fcr_n_ler()
    steps = [c for c in checks if "(TR v1.1 Table 12; mismatches)" in c.requirement]
    assert len(steps) == 12 and all(c.measured == 0 for c in steps)
    assert next(c for c in checks if c.requirement.startswith("every step held at least")).measured >= 1.0


def test_the_fcr_n_ler_test_holds_steps_1_4_6_9_and_11_past_the_table_until_their_objectives():
    """The commercial battery at 20 kW holds 197 min of full activation between the ends of its service
    window, where TR v1.1 Table 12's example takes 60 min for step 6: the table's durations are minimums
    (TP 8.1) and the runner holds each step until its objective is met."""
    _, seq, _ = played("fcr-n", "ler")
    length = {s.label: (seq.end_of(i) - s.start_s) / 60.0 for i, s in enumerate(seq.segments)}
    assert length["step 2"] == pytest.approx(6.0) and length["step 3"] == pytest.approx(2.5)
    assert length["step 4"] > 7.5  # AEM on at 5 min left, then held 5 min
    assert length["step 6"] > 150.0  # from AEM on at the top to NEM fully on at the bottom
    assert length["step 9"] > 10.0
    assert length["step 11"] > 30.0  # NEM's 0.34 C recharges to 57.5 min above the bottom
    assert seq.duration_s > 173.5 * 60.0


def test_the_fcr_n_ler_test_starts_close_to_the_nem_threshold_and_sees_it_at_the_top_and_the_bottom():
    rec, seq, checks = played("fcr-n", "ler")
    by = {c.requirement.split(" (")[0]: c for c in checks}
    room = (rec.meta["soc_ceiling_pct"] - rec["soc_pct"][0]) / 100.0 * rec.meta["battery_capacity_wh"] / 20_000 * 60
    assert room == pytest.approx(32.0, abs=0.1)  # 2 min of full activation below NEM's 30 min
    for end in ("top", "bottom"):
        assert by[f"{end}: NEM on within 1 s of f in window below 30 min left"].passed
        assert 4.75 <= by[f"{end}: AEM on at 5 min of full activation left"].measured <= 5.0
        assert by[f"{end}: NEM stays on in the window until 57.5 min left"].measured == 1
    came = rec.t[np.flatnonzero(rec["nem_allowed"] == 1)[0]]
    assert seq.frequency(came) == 50.09  # step 1
    came_low = rec.t[np.flatnonzero(rec["nem_allowed"] == -1)[0]]
    assert seq.frequency(came_low) == 49.91  # step 6


def test_an_fcr_n_unit_whose_nem_forgets_its_hysteresis_fails_the_ler_test():
    """NEM off at 30 min left (its on threshold) instead of 57.5 min."""
    rec = played("fcr-n", "ler")[0]
    room = (rec.meta["soc_ceiling_pct"] - rec["soc_pct"]) / 100.0 * rec.meta["battery_capacity_wh"] / 20_000 * 60
    allowed = np.where(room > 30.0, 0.0, rec["nem_allowed"])
    failed = failed_of(fcr_n_ler({"nem_allowed": allowed}))
    assert "top: NEM stays on in the window until 57.5 min left (lowest NEM_allowed x side)" in failed


def test_an_fcr_n_unit_that_cuts_its_response_at_aem_on_instead_of_fading_it_fails_the_ler_test():
    rec = played("fcr-n", "ler")[0]
    aem = rec["aem"] > 0.5
    cut = np.where(aem, rec["nem_w"], rec["p_w"])  # only NEM left while AEM is on
    failed = failed_of(fcr_n_ler({"p_w": cut}))
    assert any(r.startswith("response = C / 0.1 Hz x (f_ref - f_sat) + NEM") for r in failed)


def test_an_fcr_n_unit_at_80_percent_of_full_activation_fails_the_ler_test():
    rec = played("fcr-n", "ler")[0]
    weak = 0.8 * (rec["p_w"] - rec["nem_w"]) + rec["nem_w"]
    failed = failed_of(fcr_n_ler({"p_w": weak}))
    for hz in ("50.09", "50.11", "49.91", "49.89"):
        assert any(r.startswith(f"full activation at {hz} Hz outside AEM: lowest") for r in failed)


def test_an_fcr_n_unit_that_keeps_nem_on_at_50_11_hz_fails_the_ler_test():
    """NEM_allowed left at +1 from NEM on through step 2 (50.11 Hz), where TR v1.1 Table 12 has it off."""
    rec, seq, _ = played("fcr-n", "ler")
    on = np.flatnonzero(rec["nem_allowed"] == 1)[0]
    stuck = rec["nem_allowed"].copy()
    stuck[on:] = np.where(rec.t[on:] < seq.segments[3].start_s, 1.0, stuck[on:])
    failed = failed_of(fcr_n_ler({"nem_allowed": stuck}))
    assert "NEM_allowed outside 49.9 < f < 50.1 Hz for over 1 s (largest)" in failed
    assert any(r.startswith("step 2 (50.11 Hz") for r in failed)
