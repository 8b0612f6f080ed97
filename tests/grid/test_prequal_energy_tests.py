"""The judges of the combined FCR-N + FCR-D test (requirement 1b) and of the endurance test of a unit
that is not LER, on synthetic responses: the static characteristics of the TR (section 3) played
against the test sequence, which must pass, and units that are wrong in one way, which must fail
just the requirement they break. No simulation: the response is computed from the frequency."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ems.prequal.evaluate import Check, evaluate
from ems.prequal.recording import Recording
from ems.prequal.sequences import sequence
from programs.grid.products import FCR_D_DOWN, FCR_D_UP, FCR_N

C = 10_000.0
PERIOD_S = 0.1
BATTERY_WH = 81_920.0  # the commercial site's; service window 10 .. 90 % SOC
SPECS = {"fcr-n": FCR_N, "fcr-d-up": FCR_D_UP, "fcr-d-down": FCR_D_DOWN}

Response = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (t, f) -> P in W


def fcr_n(f: np.ndarray) -> np.ndarray:
    """FCR-N's static characteristic at C: P = C x (50.0 - f) / 0.1 within +-C."""
    return np.clip(C * (50.0 - f) / 0.1, -C, C)


def fcr_d(product: str, f: np.ndarray) -> np.ndarray:
    """FCR-D up: C x (49.9 - f) / 0.4 below 49.9 Hz, full at 49.5 Hz; down mirrored around 50 Hz."""
    if product == "fcr-d-up":
        return np.clip(C * (49.9 - f) / 0.4, 0.0, C)
    return np.clip(-C * (f - 50.1) / 0.4, -C, 0.0)


def played(product: str, test: str, response: Response, soc_pct: float = 50.0,
           nem_w: float = 0.0) -> tuple[Recording, list[Check]]:
    """A recording of `response` to the test's sequence at 10 rows per second, and its judgement."""
    seq = sequence(product, test)
    t = np.arange(0.0, seq.duration_s + 1e-9, PERIOD_S)
    f = np.array([seq.frequency(x) for x in t])
    p = response(t, f)
    zeros = np.zeros_like(t)
    data = {"applied_hz": f, "measured_hz": f, "filtered_hz": f, "p_w": p, "baseline_w": zeros, "service_w": p,
            "setpoint_w": p, "soc_pct": np.full_like(t, soc_pct), "endurance_up_min": zeros,
            "endurance_down_min": zeros, "nem_allowed": zeros, "nem_current": zeros, "aem": zeros,
            "f_ref_hz": np.full_like(t, SPECS[product].edge_hz), "nem_w": np.full_like(t, nem_w),
            "maintained_w": np.full_like(t, C), "ffr_state": zeros, "ffr_w": zeros, "state": np.ones_like(t),
            "test": np.ones_like(t)}
    rec = Recording(product, test, C, PERIOD_S, "synthetic", t, data,
                    {"battery_capacity_wh": BATTERY_WH, "soc_floor_pct": 10.0, "soc_ceiling_pct": 90.0})
    return rec, evaluate(rec, seq)


def failed(checks: list[Check]) -> list[str]:
    return [c.requirement for c in checks if not c.passed]


def measured(checks: list[Check], starts: str) -> float:
    return next(c.measured for c in checks if c.requirement.startswith(starts))


# --- requirement 1b: FCR-N and FCR-D sold at once --------------------------------------------------

@pytest.mark.parametrize("product", ["fcr-d-up", "fcr-d-down"])
def test_a_unit_delivering_the_sum_of_fcr_n_and_fcr_d_passes_requirement_1b(product):
    _, checks = played(product, "combined", lambda t, f: fcr_n(f) + fcr_d(product, f))
    assert failed(checks) == []
    # TR v1.1 requirement 1b: the ratio is 0 when the change from P_ss,6 is the sum expected
    assert measured(checks, "requirement 1b, ramps 6 -> 7") == pytest.approx(0.0, abs=1e-3)
    assert measured(checks, "requirement 1b, ramps 6 -> 8") == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("product, ramp, hz, expected", [
    ("fcr-d-up", 7, 49.7, "+150.0 %"), ("fcr-d-up", 8, 49.89, "+102.5 %"),
    ("fcr-d-down", 7, 50.3, "-150.0 %"), ("fcr-d-down", 8, 50.11, "-102.5 %")])
def test_requirement_1b_expects_fcr_n_full_plus_the_fcr_d_share_of_the_change_from_ramp_6(product, ramp, hz, expected):
    """Ramp 7: df = 0.3 Hz, FCR-N full + (0.3 - 0.1) / 0.4 = 0.5 of FCR-D; ramp 8: df = 0.11 Hz, FCR-N full
    + 0.025 of FCR-D (TR v1.1 section 3.1.2, requirement 1b)."""
    _, checks = played(product, "combined", lambda t, f: fcr_n(f) + fcr_d(product, f))
    note = next(c.note for c in checks if c.requirement.startswith(f"requirement 1b, ramps 6 -> {ramp} (50.00 -> {hz:.2f}"))
    assert f"expected {expected}" in note


@pytest.mark.parametrize("product, lo, hi", [("fcr-d-up", -0.05, 0.2), ("fcr-d-down", -0.2, 0.05)])
def test_requirement_1b_limits_are_the_trs_up_and_their_mirror_down(product, lo, hi):
    _, checks = played(product, "combined", lambda t, f: fcr_n(f) + fcr_d(product, f))
    limits = {(c.lo, c.hi) for c in checks if c.requirement.startswith("requirement 1b")}
    assert limits == {(lo, hi)}


@pytest.mark.parametrize("product", ["fcr-d-up", "fcr-d-down"])
def test_a_unit_giving_the_larger_of_the_two_instead_of_their_sum_fails_requirement_1b_at_ramp_7(product):
    """At 49.89 Hz (ramp 8) FCR-N alone is within 3 % of the sum: ramp 7 is where the sum shows."""
    def larger(t: np.ndarray, f: np.ndarray) -> np.ndarray:
        n, d = fcr_n(f), fcr_d(product, f)
        return np.where(np.abs(n) > np.abs(d), n, d)

    _, checks = played(product, "combined", larger)
    assert any(r.startswith("requirement 1b, ramps 6 -> 7") for r in failed(checks))
    # 1 C where 1.5 C are due: (1 - 1.5) / 1.5 up; mirrored down
    sign = 1.0 if product == "fcr-d-up" else -1.0
    assert measured(checks, "requirement 1b, ramps 6 -> 7") == pytest.approx(sign * -1.0 / 3.0, abs=1e-3)


@pytest.mark.parametrize("product", ["fcr-d-up", "fcr-d-down"])
def test_a_unit_that_drops_fcr_n_while_fcr_d_is_sold_fails_only_requirement_1b(product):
    """The FCR-D ramp checks judge changes from 49.9 Hz down, where FCR-N is constant: they pass; ramps 7-8,
    judged from 50.0 Hz after ramp 6, catch the missing FCR-N."""
    _, checks = played(product, "combined", lambda t, f: fcr_d(product, f))
    assert len(failed(checks)) == 2 and all(r.startswith("requirement 1b") for r in failed(checks))
    # ramp 8: 0.025 C where 1.025 C are due
    sign = 1.0 if product == "fcr-d-up" else -1.0
    assert measured(checks, "requirement 1b, ramps 6 -> 8") == pytest.approx(sign * (0.025 - 1.025) / 1.025, abs=1e-3)


def test_a_unit_with_fcr_n_the_wrong_way_round_fails_requirement_1b():
    _, checks = played("fcr-d-up", "combined", lambda t, f: -fcr_n(f) + fcr_d("fcr-d-up", f))
    assert [r[:33] for r in failed(checks)] == ["requirement 1b, ramps 6 -> 7 (50.", "requirement 1b, ramps 6 -> 8 (50."]


# --- endurance of a unit that is not LER -----------------------------------------------------------

SERVED = {"fcr-n": (49.9, 50.1), "fcr-d-up": (49.5,), "fcr-d-down": (50.5,)}


def static(product: str) -> Response:
    return (lambda t, f: fcr_n(f)) if product == "fcr-n" else (lambda t, f: fcr_d(product, f))


@pytest.mark.parametrize("product", ["fcr-n", "fcr-d-up", "fcr-d-down"])
def test_a_unit_holding_full_activation_for_15_min_each_way_passes_the_endurance_test(product):
    _, checks = played(product, "endurance", static(product))
    assert failed(checks) == []
    for hz in SERVED[product]:  # FCR-D's hold starts with the 1.7 s ramp at 0.24 Hz/s: 0.8 s of it short
        assert measured(checks, f"endurance at {hz:.2f} Hz: energy delivered") == pytest.approx(15.0, abs=0.015)
    # the commercial battery at 50 % SOC holds 40 % x 81.92 kWh = 196.6 min of 10 kW each way
    assert measured(checks, "not LER: full activation the battery holds") == pytest.approx(196.6, abs=0.1)


@pytest.mark.parametrize("product", ["fcr-n", "fcr-d-up", "fcr-d-down"])
def test_a_unit_whose_response_runs_out_after_10_min_fails_the_endurance_test(product):
    def running_out(t: np.ndarray, f: np.ndarray) -> np.ndarray:
        seq = sequence(product, "endurance")
        left = np.ones_like(t)
        for i, s in enumerate(seq.segments):
            if s.label == "endurance":
                inside = (t >= s.start_s) & (t < seq.end_of(i))
                left[inside] = np.clip(1.0 - (t[inside] - s.start_s - 600.0) / 60.0, 0.0, 1.0)
        return static(product)(t, f) * left

    _, checks = played(product, "endurance", running_out)
    for hz in SERVED[product]:
        assert (f"endurance at {hz:.2f} Hz: lowest 10 s mean over 15 min, share of full activation (requirement 12)"
                in failed(checks))
        assert measured(checks, f"endurance at {hz:.2f} Hz: energy delivered") == pytest.approx(10.5, abs=0.05)


def test_a_unit_at_80_percent_of_its_characteristic_fails_the_endurance_test():
    _, checks = played("fcr-d-up", "endurance", lambda t, f: 0.8 * fcr_d("fcr-d-up", f))
    assert measured(checks, "endurance at 49.50 Hz: lowest") == pytest.approx(0.8)
    assert {r.split(":")[0] for r in failed(checks) if r.startswith("endurance")} == {"endurance at 49.50 Hz"}
    assert len([r for r in failed(checks) if r.startswith("endurance")]) == 2  # the lowest mean and the energy


@pytest.mark.parametrize("product", ["fcr-n", "fcr-d-up", "fcr-d-down"])
def test_the_endurance_test_is_judged_as_the_step_or_ramp_test_it_extends(product):
    """TR v1.1 Tables 3 and 4: the endurance holds are part of the FCR-N step test and the FCR-D fast ramp."""
    _, checks = played(product, "endurance", static(product))
    first = "requirement 1 upwards" if product == "fcr-n" else "requirement 4, deactivation"
    assert any(c.requirement.startswith(first) for c in checks)


def test_the_fcr_n_step_response_counts_from_the_mean_of_the_50_hz_states_around_it():
    """TR v1.1 eq. 1-2: dP_ss,1 = P_ss,1 - (P_ss,0 + P_ss,3)/2. A unit whose 50 Hz point has moved
    +0.2 C by the last step (backlash, a drifting baseline) delivers 1.0 - 0.1 = 0.9 of the theory
    upwards (under the 0.95 allowed) and 1.1 downwards."""
    last = sequence("fcr-n", "step").segments[-1].start_s  # the step back to 50.0 Hz (P_ss,3)
    _, checks = played("fcr-n", "step", lambda t, f: fcr_n(f) + np.where(t >= last, 0.2 * C, 0.0))
    assert measured(checks, "requirement 1 upwards") == pytest.approx(0.9, abs=0.005)
    assert measured(checks, "requirement 1 downwards") == pytest.approx(1.1, abs=0.005)
    assert [r.split(" (")[0] for r in failed(checks)] == ["requirement 1 upwards"]


def test_a_unit_with_energy_management_is_ler_and_fails_the_not_ler_endurance_test():
    _, checks = played("fcr-n", "endurance", static("fcr-n"), nem_w=0.34 * C)
    assert failed(checks) == ["not LER: no energy management (largest |NEM power|)"]


def test_a_battery_holding_less_than_2_h_of_full_activation_is_ler():
    # 22 % SOC: 12 % x 81.92 kWh = 9.8 kWh above the floor, 59 min of 10 kW
    _, checks = played("fcr-d-up", "endurance", static("fcr-d-up"), soc_pct=22.0)
    assert failed(checks) == ["not LER: full activation the battery holds at the start (its way)"]
    assert measured(checks, "not LER") == pytest.approx(59.0, abs=0.1)


# --- what an LER unit's test log holds ---------------------------------------------------------------

def test_the_ler_tests_log_must_hold_the_remaining_endurance_and_the_nem_and_aem_signals():
    from ems.prequal.evaluate import _ler_log

    rec, _ = played("fcr-n", "endurance", static("fcr-n"))
    n = 1200  # the first 120 s, 10 rows a second, with 30 s of AEM
    rec.t = rec.t[:n]
    rec.data = {k: v[:n] for k, v in rec.data.items()}
    rec.data["aem"] = ((rec.t >= 60.0) & (rec.t < 90.0)).astype(float)
    header = ["DateTime", "InsAcPow", "ResSize_Fcrn", "NEM_MW_Fcrn", "NEM_Fcrn", "AEM_Fcrn"]
    ms = [int(round(t * 1000)) for t in rec.t]
    stamps = [f"20260101T0000{m // 60000:02d}{m // 1000 % 60:02d}.{m % 1000:03d}" for m in ms]
    lines = [f"{s},0,0,0,0,{int(a)}\n" for s, a in zip(stamps, rec.data["aem"], strict=True)]
    good = _ler_log(rec, header, lines, ms)
    assert [c.passed for c in good] == [True, True]
    assert good[1].measured == pytest.approx(0.0, abs=0.11)
    without_aem = _ler_log(rec, header[:-1], [line.rsplit(",", 1)[0] + "\n" for line in lines], ms)
    assert not without_aem[0].passed and without_aem[0].measured == 1
    assert without_aem[0].note == "AEM_Fcrn"
    short = _ler_log(rec, header, [line[:-2] + "0\n" for line in lines], ms)  # the file never says AEM
    assert not short[1].passed and short[1].measured == pytest.approx(30.0, abs=0.11)
