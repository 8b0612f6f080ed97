"""Judge a recorded test against every requirement of the reference that applies to it.

Each requirement becomes a `Check`: the measured figure, the limit(s), pass or fail and the
margin. Powers are judged as the *activated power* `a = s * (P - baseline) / C` (s = -1 for the
downward products, so that a full activation is +1 for every product) against the static
characteristic of the product's droop block at the applied test frequency.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import attrs
import numpy as np

from ems.prequal.recording import Recording
from ems.prequal.sequences import (
    AEM_HOLD_S,
    FCR_N_LER_STEPS,
    NEM_FULL,
    NEM_FULL_S,
    NOT_LER_MIN,
    SINE_STATIONARY,
    Sequence,
    spec_of,
)
from ems.prequal.stability import (
    ACCEPTED_RADIUS,
    LINEARITY_LIMIT,
    PERFORMANCE_LIMIT,
    STABILITY_RADIUS,
    T_FME_S,
    SinePoint,
    sine_point,
)
from programs.grid.products import FCR_N, ffr_full_activation_s

STEADY_S = 60.0  # steady state: the mean of the last 60 s of a hold
SHORT_STEADY_S = 10.0  # ... or of its last 10 s when the hold is shorter than 2 minutes
STEADY_RANGE = (0.95, 1.20)  # -5 % .. +20 % of the theoretical change
HOLD_TOLERANCE = 0.005  # 0.5 % of C: "does not drop below its 7.5 s value", against measurement noise
FULL = 0.95  # FFR fully activated: C within the +-5 % power accuracy of the reference


@attrs.frozen
class Check:
    """One requirement, judged."""

    requirement: str
    measured: float = attrs.field(converter=float)
    unit: str = ""
    lo: float | None = None  # measured >= lo
    hi: float | None = None  # measured <= hi
    note: str = ""

    @property
    def passed(self) -> bool:
        m = self.measured
        if m != m:
            return False
        return bool((self.lo is None or m >= self.lo - 1e-12) and (self.hi is None or m <= self.hi + 1e-12))

    @property
    def limit(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"{_fmt(self.lo)} .. {_fmt(self.hi)}"
        if self.lo is not None:
            return f">= {_fmt(self.lo)}"
        return f"<= {_fmt(self.hi)}" if self.hi is not None else "-"

    @property
    def margin(self) -> str:
        """How far inside the nearest limit, in the measured unit and relative to the limit."""
        gaps = []
        if self.lo is not None:
            gaps.append((self.measured - self.lo, self.lo))
        if self.hi is not None:
            gaps.append((self.hi - self.measured, self.hi))
        if not gaps:
            return "-"
        gap, ref = min(gaps, key=lambda g: g[0])
        rel = f" ({gap / abs(ref) * 100:+.0f} % of the limit)" if ref else ""
        return f"{_fmt(gap)} {self.unit}".rstrip() + rel

    def as_dict(self) -> dict[str, object]:
        return {"requirement": self.requirement, "measured": self.measured, "unit": self.unit, "lo": self.lo,
                "hi": self.hi, "limit": self.limit, "margin": self.margin, "passed": self.passed, "note": self.note}


def _fmt(x: float) -> str:
    if x != x:
        return "nan"
    if x == 0 or 0.01 <= abs(x) < 1e5:
        return f"{x:.3f}".rstrip("0").rstrip(".") if abs(x) < 100 else f"{x:.1f}"
    return f"{x:.3g}"


@attrs.define
class Context:
    """A recording prepared for judging."""

    rec: Recording
    seq: Sequence
    sign: float
    a: np.ndarray  # activated power in C
    theory: Callable[[np.ndarray], np.ndarray]  # static activated power at a frequency


def context(rec: Recording, seq: Sequence) -> Context:
    spec = spec_of(rec.product)
    c = rec.capacity_w
    sign = -1.0 if rec.product == "fcr-d-down" else 1.0
    a = sign * rec.delta_p / c
    if spec is not None:
        droops = [spec.droop(c)] + ([FCR_N.droop(c)] if rec.test == "combined" else [])  # 1b: both at C
        theory = np.vectorize(lambda f: sign * sum(d.power_w(float(f)) for d in droops) / c)
    else:
        theory = np.vectorize(lambda f: 0.0)
    return Context(rec, seq, sign, a, theory)


def evaluate(rec: Recording, seq: Sequence) -> list[Check]:
    """Every check that applies to this test."""
    ctx = context(rec, seq)
    judge = {"ramp": _ramp, "linearity": _linearity, "step": _step, "sine": _sine, "ler": _ler, "ffr": _ffr,
             "combined": _combined, "endurance": _endurance}
    checks = judge[rec.test](ctx)
    checks += _logging(rec)
    return checks


# --- helpers -------------------------------------------------------------------------------------

def _mean(ctx: Context, t0: float, t1: float) -> float:
    mask = ctx.rec.window(t0, t1)
    return float(ctx.a[mask].mean()) if mask.any() else math.nan


def _steady(ctx: Context, index: int) -> tuple[float, float]:
    """(measured, theoretical) steady activated power at the end of segment `index`."""
    seg = ctx.seq.segments[index]
    end = ctx.seq.end_of(index)
    span = STEADY_S if end - seg.start_s >= 2 * STEADY_S else SHORT_STEADY_S
    return _mean(ctx, end - span, end), float(ctx.theory(np.array([seg.target_hz]))[0])


def _integral(ctx: Context, values: np.ndarray, t0: float, t1: float) -> float:
    mask = ctx.rec.window(t0, t1 + 1e-6)
    return float(np.trapezoid(values[mask], ctx.rec.t[mask]))


def _change_check(ctx: Context, index: int, previous: int, what: str) -> Check:
    ss, th = _steady(ctx, index)
    ss0, th0 = _steady(ctx, previous)
    ratio = (ss - ss0) / (th - th0)
    f0, f1 = ctx.seq.segments[previous].target_hz, ctx.seq.segments[index].target_hz
    return Check(f"{what}: steady-state change {f0:.2f} -> {f1:.2f} Hz, share of theory", ratio, "",
                 *STEADY_RANGE, note=f"measured {(ss - ss0) * 100:+.1f} % of C, theory {(th - th0) * 100:+.1f} %")


# --- FCR-D ramp ------------------------------------------------------------------------------------

def _ramp(ctx: Context) -> list[Check]:
    seq, rec = ctx.seq, ctx.rec
    segs = seq.segments
    checks: list[Check] = []
    checks.append(_deactivation(ctx))
    # steady state after the ramps to 49.5 and back to 49.9 Hz
    steady = [i for i, s in enumerate(segs) if s.label in ("steady", "endurance")]  # ramp 3 held 900 s: endurance
    checks.append(_change_check(ctx, steady[0], steady[0] - 1, "ramp to full activation"))
    checks.append(_change_check(ctx, steady[1], steady[0], "ramp back"))
    # activation on the fast ramp to 49.0 Hz
    act_i = next(i for i, s in enumerate(segs) if s.label == "activation")
    t_a = segs[act_i].start_s
    a0 = rec.at("p_w", t_a) - rec.at("baseline_w", t_a)
    a0 = ctx.sign * a0 / rec.capacity_w
    before, after = ctx.theory(np.array([segs[act_i - 1].target_hz, segs[act_i].target_hz]))
    d_th = float(after - before)
    a75 = float(np.interp(t_a + 7.5, rec.t, ctx.a)) - a0
    checks.append(Check("activation: power at 7.5 s, share of the theoretical change", a75 / d_th, "", lo=0.86))
    energy = _integral(ctx, ctx.a - a0, t_a, t_a + 7.5)
    checks.append(Check("activation: energy over 0..7.5 s", energy / d_th, "s x change", lo=3.2))
    t_back = seq.end_of(act_i)
    mask = rec.window(t_a + 7.5, t_back)
    drop = max(a75 - float((ctx.a[mask] - a0).min()), 0.0) / d_th
    checks.append(Check("activation: largest drop below the 7.5 s value until the frequency returns", drop * 100.0,
                        "% of the change", hi=HOLD_TOLERANCE * 100.0,
                        note="the power may not drop; 0.5 % of C allowed for measurement noise"))
    ss = _mean(ctx, t_back - 30.0, t_back)
    checks.append(Check("activation: steady state at the end of the hold, share of theory", (ss - a0) / d_th, "",
                        *STEADY_RANGE))
    return checks


NADIR_AFTER_S = 4.4  # the nadir of the deactivation test: 4.4 s after ramp 1 starts (TR, requirement 4)
DEACTIVATION_WINDOW_S = 40.0
DEACTIVATION_LIMIT_S = 2.5  # x the full steady-state change


def _deactivation(ctx: Context) -> Check:
    """Requirement 4: after the nadir, the energy of dP above min(|dP_nadir|, 0.5 dP_ss) over 40 s
    is at most 2.5 s x dP_ss (dP_ss: the full steady-state change of the ramp's target).

    Only where dP exceeds the reference level counts: the signed integral of the requirement can
    only be smaller, so this reading is the stricter one.
    """
    rec, segs = ctx.rec, ctx.seq.segments
    first = next(i for i, s in enumerate(segs) if s.label == "deactivation")
    t_start = segs[first].start_s
    t_n = t_start + NADIR_AFTER_S
    a0 = float(np.interp(t_start, rec.t, ctx.a))
    dp = ctx.a - a0
    dp_nadir = float(np.interp(t_n, rec.t, dp))
    before, target = ctx.theory(np.array([segs[first - 1].target_hz, segs[first].target_hz]))
    dp_ss = abs(float(target - before))
    ref = min(abs(dp_nadir), 0.5 * dp_ss)
    excess = _integral(ctx, np.maximum(dp - ref, 0.0), t_n, t_n + DEACTIVATION_WINDOW_S)
    return Check("requirement 4, deactivation: energy above min(|dP_nadir|, 0.5 dP_ss) over 40 s after the nadir",
                 excess / dp_ss, "s x dP_ss", hi=DEACTIVATION_LIMIT_S,
                 note=f"nadir {NADIR_AFTER_S:g} s after ramp 1, dP_nadir {dp_nadir:.3f} C, dP_ss {dp_ss:.3f} C")


# --- linearity -------------------------------------------------------------------------------------

def envelope(product: str, f_hz: float) -> tuple[float, float]:
    """The linearity envelope of FCR-D (activated power in C): lower through 0 at 49.88 Hz and 0.95
    at 49.50 Hz, upper through 0.10 at 49.90 Hz and 1.10 at 49.50 Hz (mirrored for down)."""
    f = 100.0 - f_hz if product == "fcr-d-down" else f_hz
    lower = 0.95 * min(max((49.88 - f) / 0.38, 0.0), 1.0)
    upper = 0.10 + min(max((49.9 - f) / 0.4, 0.0), 1.0)
    return lower, upper


def _linearity(ctx: Context) -> list[Check]:
    rec, checks = ctx.rec, []
    n = max(1, int(round(10.0 / rec.period_s)))
    ma = np.convolve(ctx.a, np.ones(n) / n, mode="full")[: len(ctx.a)]
    for i, seg in enumerate(ctx.seq.segments):
        mask = rec.window(seg.start_s + 60.0, ctx.seq.end_of(i) + 1e-6)
        lo, hi = envelope(rec.product, seg.target_hz)
        values = ma[mask]
        checks.append(Check(f"linearity at {seg.target_hz:.2f} Hz: lowest 10 s mean (60..120 s)", float(values.min()),
                            "C", lo=lo))
        checks.append(Check(f"linearity at {seg.target_hz:.2f} Hz: highest 10 s mean (60..120 s)",
                            float(values.max()), "C", hi=hi))
    return checks


# --- FCR-N step ------------------------------------------------------------------------------------

def _step(ctx: Context) -> list[Check]:
    """Requirement 1 of the FCR-N step test (TR v1.1 section 3.1.1, eq. 1-2, Table 3): each step's
    response from the mean of the two 50.0 Hz steady states around it, dP_ss,1 = P_ss,1 -
    (P_ss,0 + P_ss,3)/2 at 49.9 Hz and dP_ss,2 = P_ss,2 - (P_ss,0 + P_ss,3)/2 at 50.1 Hz, within
    -5 % .. +20 % of the theoretical response to 0.1 Hz (the pre-step only handles backlash)."""
    targets = [round(seg.target_hz, 3) for seg in ctx.seq.segments]
    i1 = targets.index(49.9)
    i0, i2, i3 = i1 - 1, i1 + 1, i1 + 2
    (p0, t0), (p3, t3) = _steady(ctx, i0), _steady(ctx, i3)
    base, base_th = (p0 + p3) / 2.0, (t0 + t3) / 2.0
    checks = []
    for index, n, way in ((i1, 1, "upwards"), (i2, 2, "downwards")):
        p, th = _steady(ctx, index)
        checks.append(Check(f"requirement 1 {way} (TR v1.1 eq. {n}): dP_ss,{n} = P_ss,{n} - (P_ss,0 + P_ss,3)/2 at "
                            f"{ctx.seq.segments[index].target_hz:.2f} Hz, share of theory", (p - base) / (th - base_th),
                            "", *STEADY_RANGE, note=f"measured {(p - base) * 100:+.1f} % of C, theory "
                                                    f"{(th - base_th) * 100:+.1f} %; P_ss,0 {p0 * 100:+.1f} %, "
                                                    f"P_ss,3 {p3 * 100:+.1f} %"))
    return checks


# --- sine ------------------------------------------------------------------------------------------

def sine_points(ctx: Context) -> list[SinePoint]:
    rec, seq = ctx.rec, ctx.seq
    spec = spec_of(rec.product)
    assert spec is not None
    t_fme = float(rec.meta.get("t_fme_s", T_FME_S))
    points = []
    for i, seg in enumerate(seq.segments):
        if seg.sine_period_s <= 0:
            continue
        period = seg.sine_period_s
        end = seq.end_of(i)
        stationary = SINE_STATIONARY[int(period)][0]  # the last periods played (TR v1.1 Table 6)
        mask = rec.window(end - stationary * period, end)
        t = rec.t[mask]
        points.append(sine_point(t, rec["applied_hz"][mask], rec.delta_p[mask], period, spec.band_hz,
                                 rec.capacity_w, rec.product, t_fme))
    return points


def _sine(ctx: Context) -> list[Check]:
    checks = []
    for point in sine_points(ctx):
        at = f"at {point.period_s:.0f} s"
        checks.append(Check(f"requirement 8, stability: |1 + F G| {at} (F with F_FME: gain {point.gain:.3f}, "
                            f"phase {point.phase_deg:.1f} deg)", point.margin, "", lo=ACCEPTED_RADIUS,
                            note=f"required {STABILITY_RADIUS}, accepted {ACCEPTED_RADIUS:.4f} with the 95 % margin; "
                                 f"T_FME {point.t_fme_s:g} s"))
        if point.g_performance is not None:
            checks.append(Check(f"requirement 9, performance: |D G / (1 + F G)| {at}", point.performance, "",
                                hi=PERFORMANCE_LIMIT, note="required <= 1, accepted 1/0.95 with the 95 % margin "
                                                           "(K_margin); D = 1/(70 s + 1), G of TR v1.1 Table 7's "
                                                           "performance column"))
        checks.append(Check(f"requirement 10, dynamic linearity: RMS(measured - fitted) / std(fitted) {at}, largest "
                            "over the stationary periods", point.linearity_ratio, "", hi=LINEARITY_LIMIT,
                            note=f"TR v1.1 section 3.4.1: below 1; {len(point.linearity)} periods"))
    return checks


# --- LER -------------------------------------------------------------------------------------------

def _energy_min(ctx: Context) -> np.ndarray:
    """Minutes of full activation left in the product's direction, from the recorded SOC."""
    rec, meta = ctx.rec, ctx.rec.meta
    cap, c = meta["battery_capacity_wh"], rec.capacity_w
    if rec.product == "fcr-d-down":
        left = (meta["soc_ceiling_pct"] - rec["soc_pct"]) / 100.0 * cap
    else:
        left = (rec["soc_pct"] - meta["soc_floor_pct"]) / 100.0 * cap
    return left / c * 60.0


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if len(idx) else None


def _held_for(mask: np.ndarray, seconds: float, period_s: float) -> np.ndarray:
    """Where `mask` has been true for the last `seconds` (every sample of them)."""
    held = mask.copy()
    for k in range(1, int(math.ceil(seconds / period_s)) + 1):
        held[k:] &= mask[:-k]
        held[:k] = False
    return held


def _nem_common(ctx: Context) -> list[Check]:
    """NEM allowed only inside its frequency window; its power is gain x C x NEM_current throughout,
    so it ramps in and out through the 300 s mean and never steps at a window crossing (TR 3.5)."""
    rec = ctx.rec
    spec = spec_of(rec.product)
    assert spec is not None
    f = rec["filtered_hz"]
    window = (f > 49.9) & (f < 50.1)
    outside = _held_for(~window, 1.0 + 1.5 * rec.period_s, rec.period_s)  # NEM_allowed is a 1 s sample
    allowed_out = float(np.abs(rec["nem_allowed"][outside]).max()) if outside.any() else 0.0
    checks = [Check("NEM_allowed outside 49.9 < f < 50.1 Hz for over 1 s (largest)", allowed_out, "", hi=0.0)]
    expected = spec.nem_gain * rec.capacity_w * rec["nem_current"]
    err = float(np.abs(rec["nem_w"] - expected).max()) / rec.capacity_w
    checks.append(Check("NEM power = gain x C x NEM_current (largest error)", err, "C", hi=0.01))
    step = float(np.abs(np.diff(rec["nem_w"])).max()) / rec.capacity_w if len(rec.t) > 1 else 0.0
    checks.append(Check("NEM power step between samples (largest; 300 s mean: gain / 300 per second)", step, "C",
                        hi=spec.nem_gain / 300.0 * 1.05 + 1e-6))
    return checks


def _ler(ctx: Context) -> list[Check]:
    rec, seq = ctx.rec, ctx.seq
    if rec.product == "fcr-n":
        return _ler_fcr_n(ctx)
    spec = spec_of(rec.product)
    assert spec is not None
    e = _energy_min(ctx)
    nem_sign = 1 if rec.product == "fcr-d-down" else -1
    f = rec["filtered_hz"]
    window = (f > 49.9) & (f < 50.1)
    aem = rec["aem"] > 0.5
    nem_on = rec["nem_allowed"] == nem_sign
    checks = _nem_common(ctx)
    # NEM comes on below its threshold while the frequency is in the window, and ramps over 5 minutes
    nem_i = next(i for i, s in enumerate(seq.segments) if s.label == "nem")
    seg = seq.segments[nem_i]
    due = _first(rec.window(seg.start_s, seq.end_of(nem_i)) & window & (e < spec.nem_on_min))
    came = _first(rec.window(seg.start_s, seq.end_of(nem_i)) & nem_on)
    delay = (rec.t[came] - rec.t[due]) if due is not None and came is not None else math.nan
    checks.append(Check(f"NEM on within 1 s of f in window below {spec.nem_on_min:g} min left", float(delay), "s",
                        hi=1.0 + 1.5 * rec.period_s, note=f"{_at(e, due):.2f} min left then"))
    current = abs(rec.at("nem_current", seq.end_of(nem_i) - 1.0))
    on_for = seq.end_of(nem_i) - 1.0 - (rec.t[came] if came is not None else math.nan)
    checks.append(Check(f"NEM_current after {on_for:.0f} s of NEM (300 s mean: ramps, no step)", current, "",
                        lo=on_for / 300.0 - 0.02, hi=on_for / 300.0 + 0.02))
    # AEM: on at its threshold, fades the response out, unavailable meanwhile
    on = _first(aem)
    checks.append(Check(f"AEM on at {spec.aem_on_min:g} min of full activation left", _at(e, on), "min",
                        lo=spec.aem_on_min - 0.25, hi=spec.aem_on_min))
    if on is not None:
        aem_i = next(i for i, s in enumerate(seq.segments) if s.label == "aem")
        elapsed = min(305.0, seq.end_of(aem_i) - 1.0 - rec.t[on])  # 5 min, or what the segment leaves
        fade = max(0.0, 1.0 - (elapsed - 5.0) / 300.0)  # the 300 s mean moves the reference linearly
        checks.append(Check(f"AEM: activated power {elapsed:.0f} s after AEM on (fades out over 5 min)",
                            rec_at(ctx, rec.t[on] + elapsed), "C", hi=fade + 0.02,
                            note=f"a linear fade leaves {fade:.2f} C"))
        endurance = rec["endurance_down_min" if nem_sign > 0 else "endurance_up_min"]
        checks.append(Check("AEM: largest reported endurance while AEM is on (unavailable)",
                            float(endurance[aem].max()), "min", hi=0.0))
        checks.append(Check("AEM: largest maintained capacity while AEM is on", float(rec["maintained_w"][aem].max()),
                            "W", hi=0.0))
    off = _first(~aem & (np.arange(len(aem)) > (on if on is not None else len(aem))))
    checks.append(Check(f"AEM off above {spec.aem_off_min:g} min left", _at(e, off), "min",
                        lo=spec.aem_off_min, hi=spec.aem_off_min + 0.25))
    last_on = np.flatnonzero(nem_on)
    nem_off = int(last_on[-1]) + 1 if len(last_on) and last_on[-1] + 1 < len(e) else None
    checks.append(Check(f"NEM off above {spec.nem_off_min:g} min left", _at(e, nem_off), "min",
                        lo=spec.nem_off_min, hi=spec.nem_off_min + 0.25))
    # endurance: energy left / (baseline + C) outside AEM
    ok = ~aem & (rec["state"] == 1)
    reported = rec["endurance_down_min" if nem_sign > 0 else "endurance_up_min"]
    base = rec["baseline_w"] * (-nem_sign)
    expected_min = np.clip(e * rec.capacity_w / (rec.capacity_w + base), 0, 9999.0)
    checks.append(Check("endurance reported vs energy left / (baseline + C) (largest error)",
                        float(np.abs(reported[ok] - expected_min[ok]).max()), "min", hi=0.5,
                        note="the unit updates it once per second"))
    return checks


def _energy_side(ctx: Context, side: int) -> np.ndarray:
    """Minutes of full activation (of C) left below the top (side +1) or above the bottom (side -1) of
    the service window, from the recorded SOC."""
    rec, meta = ctx.rec, ctx.rec.meta
    cap, c = meta["battery_capacity_wh"], rec.capacity_w
    if side > 0:
        left = (meta["soc_ceiling_pct"] - rec["soc_pct"]) / 100.0 * cap
    else:
        left = (rec["soc_pct"] - meta["soc_floor_pct"]) / 100.0 * cap
    return left / c * 60.0


SETTLE_S = 5.0  # a frequency step's response settles (filter, inverter) within this; not judged meanwhile
MODEL_TOLERANCE = 0.05  # C: the response against the TR's formula, recomputed here
AEM_WINDOW_S = 300  # f_ref: the mean of the last 300 one-second values of f_AEM (TR 3.5)


def aem_model(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """The TR 3.5 response of an LER unit, recomputed from what was recorded (the measured frequency,
    the AEM flag, NEM's power): f_AEM is the band edge while AEM is off and the measured frequency
    saturated to the linear range while it is on; f_ref is its 300 s mean of 1 s samples; the response
    is `C / band x (f_ref - f_sat)` within the product's range, plus NEM. Returns (f_ref, activated
    power in C) per row."""
    rec = ctx.rec
    spec = spec_of(rec.product)
    assert spec is not None
    f = rec["filtered_hz"]
    lo, hi = spec.f_sat_hz
    f_sat = np.clip(f, lo, hi)
    step = max(1, int(round(1.0 / rec.period_s)))
    idx = np.arange(0, len(f), step)
    f_aem = np.where(rec["aem"][idx] > 0.5, f_sat[idx], spec.edge_hz)
    padded = np.concatenate([np.full(AEM_WINDOW_S, spec.edge_hz), f_aem])
    sums = np.cumsum(np.concatenate([[0.0], padded]))
    f_ref_s = (sums[AEM_WINDOW_S + 1:] - sums[1:len(f_aem) + 1]) / AEM_WINDOW_S
    f_ref = f_ref_s[np.minimum(np.arange(len(f)) // step, len(f_ref_s) - 1)]
    p_lo, p_hi = spec.p_range
    a = ctx.sign * np.clip((f_ref - f_sat) / spec.band_hz, p_lo, p_hi) + ctx.sign * rec["nem_w"] / rec.capacity_w
    return f_ref, a


def _settled(ctx: Context) -> np.ndarray:
    """Rows at least SETTLE_S after the start of their segment."""
    mask = np.ones(len(ctx.rec.t), dtype=bool)
    for seg in ctx.seq.segments:
        mask &= ~ctx.rec.window(seg.start_s, seg.start_s + SETTLE_S)
    return mask


def _ler_fcr_n(ctx: Context) -> list[Check]:
    """The FCR-N LER test (TR v1.1 section 3.5.3, Table 12; TP section 8.1, Table 15): each step held at
    least its table duration and showing the table's NEM and AEM states at its end; NEM and AEM switching
    at their thresholds at the top (steps 1-6) and at the bottom (steps 6-11); the response against
    the TR's formula; full activation outside AEM."""
    rec, seq = ctx.rec, ctx.seq
    checks = _nem_common(ctx)
    checks += _fcr_n_steps(ctx)
    aem = rec["aem"] > 0.5
    for side in (+1, -1):
        checks += _fcr_n_side(ctx, side, aem)
    # the response is the TR's formula throughout: full activation but for AEM
    spec = FCR_N
    f_ref, model = aem_model(ctx)
    judged = _settled(ctx)
    err = float(np.abs(ctx.a - model)[judged].max())
    checks.append(Check("response = C / 0.1 Hz x (f_ref - f_sat) + NEM, f_ref recomputed (largest error)", err, "C",
                        hi=MODEL_TOLERANCE, note="f_ref: 300 s mean of the band edge, or of f_sat while AEM is on"))
    less_nem = ctx.a - rec["nem_w"] / rec.capacity_w
    rest = judged & (np.abs(f_ref - spec.edge_hz) < 1e-9) & ~aem
    for hz in (50.09, 50.11, 49.91, 49.89):
        mask = rest.copy()
        for i, s in enumerate(seq.segments):
            if s.target_hz != hz:
                mask &= ~rec.window(s.start_s, seq.end_of(i))
        full = float(ctx.theory(np.array([hz]))[0])
        share = less_nem[mask] / full
        checks.append(Check(f"full activation at {hz:.2f} Hz outside AEM: lowest share of the static "
                            f"{abs(full) * 100:.0f} % (less NEM)", float(share.min()) if mask.any() else math.nan,
                            "", lo=STEADY_RANGE[0], note=f"{mask.sum() * rec.period_s / 60:.0f} min judged"))
        checks.append(Check(f"full activation at {hz:.2f} Hz outside AEM: highest share", float(share.max())
                            if mask.any() else math.nan, "", hi=STEADY_RANGE[1]))
    if aem.any():
        checks.append(Check("AEM: largest maintained capacity while AEM is on", float(rec["maintained_w"][aem].max()),
                            "W", hi=0.0))
    checks += _endurance_reported(ctx, aem)
    return checks


def _end_index(ctx: Context, index: int) -> int:
    """The last row of segment `index`."""
    return max(0, int(np.searchsorted(ctx.rec.t, ctx.seq.end_of(index) - 1e-6)) - 1)


def _run_before(mask: np.ndarray, k: int, period_s: float) -> float:
    """How long `mask` has been true up to and including row k, in s."""
    if not mask[k]:
        return 0.0
    off = np.flatnonzero(~mask[: k + 1])
    return (k - (int(off[-1]) if len(off) else -1)) * period_s


def _fcr_n_steps(ctx: Context) -> list[Check]:
    """Each step of TR v1.1 Table 12: held at least its table duration (TP 8.1: minimum durations), its
    objective met (TP Table 15) and the table's NEM and AEM states at its end. NEM on at the top of the
    battery (over-frequency steps) discharges: NEM_allowed +1; at the bottom it charges: -1."""
    rec, seq = ctx.rec, ctx.seq
    period = rec.period_s
    checks = []
    nem, aem = rec["nem_allowed"], rec["aem"] > 0.5
    full = (nem != 0) & (np.abs(rec["nem_current"]) >= NEM_FULL)
    shortest = math.inf
    top = True  # until step 6 has seen NEM and AEM off: NEM at the top of the battery
    for i, (seg, row) in enumerate(zip(seq.segments, FCR_N_LER_STEPS, strict=True)):
        played = seq.end_of(i) - seg.start_s
        shortest = min(shortest, played / (row[1] * 60.0))
        k = _end_index(ctx, i)
        seen = []
        wrong = 0
        span = rec.window(seg.start_s, seq.end_of(i))
        if seg.nem == "off/on":
            off = span & (nem == 0) & ~aem
            seen.append("NEM and AEM off during it" if off.any() else "never NEM and AEM off")
            wrong += 0 if off.any() else 1
            top = False
        want_nem = seg.nem.split("/")[-1] == "on"
        sign = 1.0 if top else -1.0
        got = nem[k]
        wrong += 0 if (got == sign if want_nem else got == 0) else 1
        wrong += 0 if bool(aem[k]) == (seg.aem == "on") else 1
        seen.append(f"at its end NEM_allowed {got:+.0f}, AEM {'on' if aem[k] else 'off'}")
        checks.append(Check(f"{seg.label or 'step'} ({seg.target_hz:.2f} Hz, {played / 60:.1f} min, table "
                            f"{row[1]:g} min): NEM {seg.nem}, AEM {seg.aem} (TR v1.1 Table 12; mismatches)", wrong, "",
                            hi=0.0, note="; ".join(seen) + (f"; expected NEM_allowed {sign:+.0f}" if want_nem else "")))
        if seg.hold_until in ("nem_full", "off_then_nem_full"):
            checks.append(Check(f"{seg.label}: time NEM has been fully activated at its end (TP Table 15: at least 1 min)",
                                _run_before(full, k, period), "s", lo=NEM_FULL_S - period))
        if seg.hold_until == "aem_5min":
            checks.append(Check(f"{seg.label}: time AEM has been on at its end (TR v1.1 Table 12: held 5 min after AEM activates)",
                                _run_before(aem, k, period), "s", lo=AEM_HOLD_S - period))
        if seg.target_hz in (50.11, 49.89):  # outside the window: NEM_current ramped out through the 300 s mean
            at = seg.start_s + min(305.0, played - 0.5)
            checks.append(Check(f"{seg.label}: |NEM_current| {at - seg.start_s:.0f} s into it (outside the window: "
                                "ramped out)", abs(rec.at("nem_current", at)), "", hi=0.01))
    checks.insert(0, Check("every step held at least its TR v1.1 Table 12 duration (shortest played / table)", shortest,
                           "", lo=1.0 - 1e-6, note="TP 8.1: the durations are minimum durations"))
    return checks


def _fcr_n_side(ctx: Context, side: int, aem: np.ndarray) -> list[Check]:
    """NEM and AEM at one end of the battery (side +1: the top, NEM_allowed +1; -1: the bottom, -1): NEM on
    within a tick of the window below 30 min left, its 300 s ramp, held on in the window until 57.5 min
    left and off above; AEM on at 5 min left, off above 10 (TR v1.1 Tables 10-11), the response faded 5 min
    after AEM on."""
    rec, spec = ctx.rec, FCR_N
    period = rec.period_s
    end = "top" if side > 0 else "bottom"
    e = _energy_side(ctx, side)
    f = rec["filtered_hz"]
    inside = (f > 49.9) & (f < 50.1)
    window = _held_for(inside, 1.0 + 1.5 * period, period)
    nem_on = rec["nem_allowed"] == side
    checks = []
    due = _first(inside & (e < spec.nem_on_min))
    came = _first(nem_on)
    delay = (rec.t[came] - rec.t[due]) if due is not None and came is not None else math.nan
    checks.append(Check(f"{end}: NEM on within 1 s of f in window below {spec.nem_on_min:g} min left", float(delay),
                        "s", lo=0.0, hi=1.0 + 1.5 * period, note=f"{_at(e, due):.2f} min left then"))
    if came is not None:
        i = next(i for i, s in enumerate(ctx.seq.segments) if s.start_s <= rec.t[came] < ctx.seq.end_of(i))
        t_end = min(ctx.seq.end_of(i), rec.t[came] + 300.0) - 1.0
        on_for = t_end - rec.t[came]
        expected = min(on_for / 300.0, 1.0)
        checks.append(Check(f"{end}: |NEM_current| after {on_for:.0f} s of NEM (300 s mean: ramps, no step)",
                            abs(rec.at("nem_current", t_end)), "", lo=expected - 0.02, hi=expected + 0.02))
        held = window & (rec.t > rec.t[came] + 1.0 + 1.5 * period) & (e < spec.nem_off_min - 0.25)
        if side < 0:  # the bottom: from step 6 on (the top's NEM is on there until 57.5 min below the top)
            held &= _energy_side(ctx, +1) > spec.nem_off_min + 0.25
        checks.append(Check(f"{end}: NEM stays on in the window until {spec.nem_off_min:g} min left (lowest "
                            "NEM_allowed x side)", float((side * rec["nem_allowed"][held]).min()) if held.any()
                            else math.nan, "", lo=1.0, note=f"{int(held.sum() * period)} s in the window between"))
    last_on = np.flatnonzero(nem_on)
    nem_off = int(last_on[-1]) + 1 if len(last_on) and last_on[-1] + 1 < len(e) else None
    checks.append(Check(f"{end}: NEM off above {spec.nem_off_min:g} min left", _at(e, nem_off), "min",
                        lo=spec.nem_off_min, hi=spec.nem_off_min + 0.25))
    this_end = aem & (e < spec.aem_off_min + 1.0)
    on = _first(this_end)
    checks.append(Check(f"{end}: AEM on at {spec.aem_on_min:g} min of full activation left", _at(e, on), "min",
                        lo=spec.aem_on_min - 0.25, hi=spec.aem_on_min))
    off = _first(~aem & (np.arange(len(aem)) > (on if on is not None else len(aem))))
    checks.append(Check(f"{end}: AEM off above {spec.aem_off_min:g} min left", _at(e, off), "min",
                        lo=spec.aem_off_min, hi=spec.aem_off_min + 0.25))
    if on is not None:
        column = "endurance_down_min" if side > 0 else "endurance_up_min"  # TR 3.5.3: zero "in the respective direction"
        checks.append(Check(f"{end}: AEM: largest reported endurance {column.split('_')[1]} while AEM is on "
                            "(unavailable)", float(rec[column][this_end].max()), "min", hi=0.0))
        _, model = aem_model(ctx)
        less_nem = ctx.a - rec["nem_w"] / rec.capacity_w
        t5 = rec.t[on] + 305.0
        expected = float(np.interp(t5, rec.t, model - rec["nem_w"] / rec.capacity_w))
        checks.append(Check(f"{end}: AEM: response less NEM 305 s after AEM on (faded out through the 300 s mean)",
                            abs(float(np.interp(t5, rec.t, less_nem))), "C", hi=abs(expected) + 0.02,
                            note=f"the TR's formula leaves {abs(expected):.2f} C"))
    return checks


def _endurance_reported(ctx: Context, aem: np.ndarray) -> list[Check]:
    """Remaining endurance, each way: energy left / (setpoint + C) x 60 (TR 3.5), outside AEM."""
    rec = ctx.rec
    ok = ~aem & (rec["state"] == 1)
    checks = []
    for side, column, drain in ((-1, "endurance_up_min", rec["baseline_w"]), (1, "endurance_down_min",
                                                                             -rec["baseline_w"])):
        e = _energy_side(ctx, side)
        expected = np.clip(e * rec.capacity_w / (rec.capacity_w + drain), 0, 9999.0)
        checks.append(Check(f"endurance {'up' if side < 0 else 'down'} reported vs energy left / (baseline + C) "
                            "(largest error)", float(np.abs(rec[column][ok] - expected[ok]).max()), "min", hi=0.5,
                            note="the unit updates it once per second"))
    return checks


# --- FCR-N + FCR-D (requirement 1b) ---------------------------------------------------------------

def _combined(ctx: Context) -> list[Check]:
    """Rows 0-6 as the FCR-D ramp test (FCR-N's full activation is constant from 49.9 Hz on), then
    requirement 1b (TR v1.1 section 3.1.2, "Combination of FCR-N and FCR-D") for ramps 7 and 8 against
    the steady state after ramp 6 (50.0 Hz), with X = 7, 8 and df_X the frequency change from the end
    of ramp 6 to the end of ramp X:

        up:   -0.05 <= [(P_ss,X - P_ss,6) - |dP_N| - k |dP_D|] / (|dP_N| + k |dP_D|) <= 0.2
        down: -0.2  <= [(P_ss,X - P_ss,6) + |dP_N| + k |dP_D|] / (|dP_N| + k |dP_D|) <= 0.05

    k = |df_X - 0.1| / 0.4; dP_N, dP_D the theoretical steady-state responses of FCR-N (0.1 Hz) and
    FCR-D (0.4 Hz), each C here."""
    checks = _ramp(ctx)
    rec, segs = ctx.rec, ctx.seq.segments
    spec = spec_of(rec.product)
    assert spec is not None
    c = rec.capacity_w
    d_n = abs(FCR_N.droop(c).power_w(FCR_N.edge_hz - FCR_N.band_hz))
    d_d = abs(spec.droop(c).power_w(spec.edge_hz + (spec.band_hz if rec.product == "fcr-d-down" else -spec.band_hz)))
    six = next(i for i, s in enumerate(segs) if s.label == "combined") - 1  # ramp 6: to 50.0 Hz
    ss6, _ = _steady(ctx, six)
    down = rec.product == "fcr-d-down"
    for n, i in enumerate(range(six + 1, len(segs)), start=7):
        ssx, _ = _steady(ctx, i)
        dp_w = ctx.sign * (ssx - ss6) * c  # P_ss,X - P_ss,6 in W
        df = abs(segs[i].target_hz - segs[six].target_hz)
        k = abs(df - 0.1) / 0.4
        expected = d_n + k * d_d
        ratio = (dp_w + expected if down else dp_w - expected) / expected
        lo, hi = (-0.2, 0.05) if down else (-0.05, 0.2)
        checks.append(Check(f"requirement 1b, ramps 6 -> {n} ({segs[six].target_hz:.2f} -> {segs[i].target_hz:.2f} "
                            "Hz, FCR-N + FCR-D): the TR's ratio", ratio, "", lo, hi,
                            note=f"measured {dp_w / c * 100:+.1f} % of C, expected {'-' if down else '+'}"
                                 f"{expected / c * 100:.1f} % (FCR-N full + {k:.3f} x FCR-D)"))
    return checks


# --- endurance of a unit that is not LER ----------------------------------------------------------

ENDURANCE_FROM_S = 30.0  # the hold is judged from 30 s after its step (full activation reached)


def _endurance(ctx: Context) -> list[Check]:
    """The FCR-N step test or the FCR-D fast ramp test with the endurance holds of 15 min (TR v1.1 Tables
    3 and 4), judged as that test, then requirement 12 ("The response must stay activated as long as the
    frequency deviation persists") over each hold, and that the unit is not LER."""
    rec, seq = ctx.rec, ctx.seq
    spec = spec_of(rec.product)
    assert spec is not None
    period = rec.period_s
    checks = _step(ctx) if rec.product == "fcr-n" else _ramp(ctx)
    sides = [s for s, used in ((-1, spec.uses_low), (1, spec.uses_high)) if used]
    held = min(float(_energy_side(ctx, s)[0]) for s in sides)
    ways = "each way" if len(sides) > 1 else "its way"
    checks += [Check(f"not LER: full activation the battery holds at the start ({ways})", held, "min", lo=NOT_LER_MIN),
               Check("not LER: no energy management (largest |NEM power|)",
                     float(np.abs(rec["nem_w"]).max()) / rec.capacity_w, "C", hi=0.0),
               Check("not LER: AEM never on", float(rec["aem"].max()), "", hi=0.0)]
    n = max(1, int(round(10.0 / period)))
    ma = np.convolve(ctx.a, np.ones(n) / n, mode="full")[: len(ctx.a)]
    for i, seg in enumerate(seq.segments):
        if seg.label != "endurance":
            continue
        full = float(ctx.theory(np.array([seg.target_hz]))[0])
        end = seq.end_of(i)
        mask = rec.window(seg.start_s + ENDURANCE_FROM_S, end)
        at = f"at {seg.target_hz:.2f} Hz"
        checks.append(Check(f"endurance {at}: lowest 10 s mean over {(end - seg.start_s) / 60:.0f} min, share of full "
                            "activation (requirement 12)", float((ma[mask] / full).min()), "", lo=STEADY_RANGE[0]))
        checks.append(Check(f"endurance {at}: highest 10 s mean, share of full activation",
                            float((ma[mask] / full).max()), "", hi=STEADY_RANGE[1]))
        delivered = _integral(ctx, ctx.a / full, seg.start_s, end) / 60.0
        checks.append(Check(f"endurance {at}: energy delivered in minutes of full activation", delivered, "min",
                            lo=STEADY_RANGE[0] * (end - seg.start_s) / 60.0))
    return checks


def rec_at(ctx: Context, t_s: float) -> float:
    return float(np.interp(t_s, ctx.rec.t, ctx.a))


def _at(values: np.ndarray, index: int | None) -> float:
    return float(values[index]) if index is not None else math.nan


# --- FFR -------------------------------------------------------------------------------------------

def _ffr(ctx: Context) -> list[Check]:
    rec, seq, meta = ctx.rec, ctx.seq, ctx.rec.meta
    level = meta["ffr_level_hz"]
    limit = ffr_full_activation_s(level)
    support_needed = 30.0 if meta["ffr_support_s"] >= 30.0 else 5.0
    checks: list[Check] = []
    first_t = None
    for n, (i, seg) in enumerate((i, s) for i, s in enumerate(seq.segments) if s.label == "activation"):
        end = seq.end_of(i)
        span = rec.window(seg.start_s, end + 60.0)
        crossed = _first(span & (rec["applied_hz"] <= level))
        full = _first(span & (ctx.a >= FULL) & (rec.t >= (rec.t[crossed] if crossed is not None else math.inf)))
        t_c = rec.t[crossed] if crossed is not None else math.nan
        t_f = rec.t[full] if full is not None else math.nan
        first_t = t_c if first_t is None else first_t
        which = "first" if n == 0 else "again after 16 min"
        checks.append(Check(f"FFR {which}: full activation time at {level:.2f} Hz", t_f - t_c, "s", hi=limit))
        held = _first(span & (rec.t > t_f) & (ctx.a < FULL))
        support = (rec.t[held] if held is not None else math.nan) - t_f
        checks.append(Check(f"FFR {which}: support duration at full power", support, "s", lo=support_needed))
        if n == 0:
            checks += _ffr_deactivation(ctx, held, support_needed, meta)
    not_ready = [i for i, s in enumerate(seq.segments) if s.label == "not_ready"]
    for i in not_ready:
        mask = rec.window(seq.segments[i].start_s, seq.end_of(i) + 5.0)
        checks.append(Check("FFR: largest power on a dip 5 min after an activation (not re-armed yet)",
                            float(ctx.a[mask].max()), "C", hi=0.01))
    armed = _first((rec["ffr_state"] == 1) & (rec.t > (first_t or 0.0) + 1.0))
    ready_after = (rec.t[armed] - first_t) if armed is not None and first_t is not None else math.nan
    checks.append(Check("FFR: armed again after an activation (ready within 15 min, not before)", float(ready_after),
                        "s", lo=900.0 - rec.period_s, hi=900.0 + rec.period_s,
                        note="re-armed 15 min after the activation, to the scan"))
    return checks


def _ffr_deactivation(ctx: Context, held: int | None, support_needed: float, meta: dict) -> list[Check]:
    rec = ctx.rec
    if held is None:
        return [Check("FFR: deactivation", math.nan)]
    t_d = rec.t[held]
    zero = _first(rec.window(t_d, t_d + 60.0) & (ctx.a <= 0.01))
    t_zero = rec.t[zero] if zero is not None else t_d + 30.0
    mask = rec.window(t_d - 1.0, t_zero + 1e-6)
    t, a = rec.t[mask], ctx.a[mask]
    n = max(1, int(round(1.0 / rec.period_s)))
    drops = (a[:-n] - a[n:]) / (t[n:] - t[:-n]) if len(a) > n else np.zeros(1)
    fastest = float(drops.max()) * 100.0
    checks = [Check("FFR: fastest deactivation over 1 s", fastest, "% of C/s",
                    hi=20.0 if support_needed < 30.0 else None,
                    note="limited to 20 %/s for a 5 s support" if support_needed < 30.0 else
                    "no limit with a 30 s support (ours: the configured rate)")]
    charge = _first(rec.window(t_d, t_d + 600.0) & (ctx.a < -0.01))
    if zero is not None and charge is not None:
        checks.append(Check("FFR: buffer at 0 W before recovery (unverified figure)",
                            float(rec.t[charge] - rec.t[zero]), "s", lo=10.0 - rec.period_s,
                            note="about 10 s (to the scan)"))
    lowest = float(ctx.a[rec.window(t_d, t_d + 900.0)].min())
    cap = meta["ffr_recovery_pct"] / 100.0
    checks.append(Check("FFR: recovery power (unverified figure: the configured cap)", -lowest, "C",
                        hi=cap * 1.02))
    return checks


# --- logging ---------------------------------------------------------------------------------------

def _logging(rec: Recording) -> list[Check]:
    """The grid log's file holds the test at the rate the reference asks (10 Hz FCR-D, 5 Hz FCR-N)."""
    sessions = ["_{}_{}_".format(*named) for named in rec.meta.get("log_sessions", [])]  # a sine: one a period
    files = [p for p in rec.meta.get("log_files", []) if p.endswith(".csv") and any(s in p for s in sessions)]
    if not files:
        return []
    need = 5.0 if rec.product == "fcr-n" else 10.0

    checks = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            header = next(f).strip().split(",")
            lines = f.readlines()
        ms = [_ms(line[:19]) for line in lines]
        gap = float(max(b - a for a, b in itertools.pairwise(ms))) if len(ms) > 1 else math.inf
        checks.append(Check(f"grid log: largest interval between rows (>= {need:g} Hz)", gap, "ms",
                            hi=1000.0 / need + 1.0, note=f"{len(ms)} rows, {path.rsplit('/', 1)[-1]}; +1 ms for the "
                            "timestamp resolution"))
        if rec.test == "ler" and rec.product in LOG_TOKENS:
            checks += _ler_log(rec, header, lines, ms)
    return checks


LOG_TOKENS = {"fcr-n": "Fcrn", "fcr-d-up": "FcrdUp", "fcr-d-down": "FcrdDo"}  # TR Table 18's service tokens


def _ler_log(rec: Recording, header: list[str], lines: list[str], ms: list[int]) -> list[Check]:
    """An LER unit's test log adds the remaining endurance and the NEM and AEM signals (TR 6.2.1); the
    file's AEM flag is on for as long as the recording's."""
    tok = LOG_TOKENS[rec.product]
    wanted = [f"ResSize_{tok}", f"NEM_MW_{tok}", f"NEM_{tok}", f"AEM_{tok}"]
    missing = [c for c in wanted if c not in header]
    checks = [Check("grid log: the LER signals in the file (remaining endurance, NEM power, NEM and AEM flags; "
                    "missing)", len(missing), "", hi=0.0, note=", ".join(missing or wanted))]
    if f"AEM_{tok}" in header and len(ms) > 1:
        col = header.index(f"AEM_{tok}")
        on = [line.split(",")[col].strip() == "1" for line in lines]
        file_s = sum((b - a) / 1000.0 for (a, b), flag in zip(itertools.pairwise(ms), on, strict=False) if flag)
        rec_s = float((rec["aem"] > 0.5).sum() * rec.period_s)
        checks.append(Check("grid log: time with AEM on in the file against the recording", abs(file_s - rec_s), "s",
                            hi=1.0, note=f"file {file_s:.1f} s, recorded {rec_s:.1f} s"))
    return checks


def _ms(text: str) -> int:
    """`YYYYMMDDThhmmss.nnn` -> milliseconds (exact integers: no float rounding in the judgement)."""
    from datetime import datetime

    whole = datetime.strptime(text[:15], "%Y%m%dT%H%M%S")
    return (whole.toordinal() * 86400 + whole.hour * 3600 + whole.minute * 60 + whole.second) * 1000 + int(text[16:19])
