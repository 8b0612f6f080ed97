"""Prequalification test sequences as tables: the applied test frequency against time.

Each table row is a segment: from `start_s`, move from the present frequency to `target_hz`
at `rate_hz_per_s` (None: a step), then hold until the next row. Sine segments oscillate
around a centre. FCR-D down mirrors FCR-D up around 50 Hz (f -> 100 - f). The figures come
from the reference (`../shared/reference/grid_services.md`, TP and TR: the Nordic TSOs' "Technical
Requirements for Frequency Containment Reserve Provision in the Nordic Synchronous Area" v1.1 and
"Test Program for Prequalification of FCR", both 2025-03-28), each cited by table; the FFR sequence
is ours and says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from programs.grid.products import FCR_D_DOWN, FCR_D_UP, FCR_N, ProductSpec

PRODUCTS = ("fcr-n", "fcr-d-up", "fcr-d-down", "ffr")
TESTS = ("ramp", "sine", "linearity", "ler", "step", "ffr", "combined", "endurance")
SPECS = {"fcr-n": FCR_N, "fcr-d-up": FCR_D_UP, "fcr-d-down": FCR_D_DOWN}
APPLICABLE = {  # product -> the tests that apply to it
    "fcr-n": ("step", "sine", "ler", "endurance"),
    "fcr-d-up": ("ramp", "sine", "linearity", "ler", "combined", "endurance"),
    "fcr-d-down": ("ramp", "sine", "linearity", "ler", "combined", "endurance"),
    "ffr": ("ffr",),
}
# The energy tests are alternatives: "ler" for a limited energy reservoir (NEM and AEM), "endurance"
# for a unit that is not one (it holds at least NOT_LER_MIN minutes of full activation each way it serves).
NOT_LER_MIN = 120.0
SINE_PERIODS_S = {"fcr-n": (10, 15, 25, 40, 50, 60, 70, 90, 150, 300),
                  "fcr-d-up": (10, 15, 25, 40, 50, 60, 70), "fcr-d-down": (10, 15, 25, 40, 50, 60, 70)}
# Stationary periods judged and the recommended total played, per period (TR v1.1 Table 6; TP Table 4
# for FCR-N, Table 7 for FCR-D up; FCR-D's 90, 150 and 300 s only with mode shifting, which we do not use)
SINE_STATIONARY = {10: (5, 20), 15: (5, 15), 25: (5, 10), 40: (5, 7), 50: (5, 7), 60: (5, 7), 70: (5, 7),
                   90: (5, 7), 150: (3, 4), 300: (2, 3)}
SINE_AMPLITUDE_HZ = 0.1
SINE_CENTRE_HZ = {"fcr-n": 50.0, "fcr-d-up": 49.7, "fcr-d-down": 50.3}


@attrs.frozen
class Segment:
    start_s: float
    target_hz: float
    rate_hz_per_s: float | None = None  # None: step
    label: str = ""  # what is judged on this segment (evaluate.py reads it)
    sine_period_s: float = 0.0  # > 0: a sine of SINE_AMPLITUDE_HZ around target_hz
    sine_amplitude_hz: float = 0.0
    hold_until: str = ""  # held past its table duration until this objective is met (see HeldPlay)
    nem: str = ""  # the state NEM is to show in this step ("on", "off", "off/on"; "": not judged)
    aem: str = ""  # the state AEM is to show ("on", "off")


@attrs.frozen
class Sequence:
    product: str
    test: str
    segments: tuple[Segment, ...]
    duration_s: float
    until: str = ""  # the runner may stop the last segment early when this condition holds (ler: "ler_off")
    notes: str = ""
    max_s: float = 0.0  # > 0: the longest the runner plays a sequence whose steps are held (HeldPlay)

    def frequency(self, t_s: float) -> float:
        """The applied test frequency at sequence time `t_s`."""
        segs = self.segments
        f = segs[0].target_hz
        for i, seg in enumerate(segs):
            if i + 1 < len(segs) and segs[i + 1].start_s <= t_s:
                f = _value(seg, f, segs[i + 1].start_s)  # where this segment leaves the next one
                continue
            return _value(seg, f, max(t_s, seg.start_s))
        return f

    @property
    def held(self) -> bool:
        """Its steps are minimum durations, each held until its objective is met (HeldPlay)."""
        return any(seg.hold_until for seg in self.segments)

    def end_of(self, index: int) -> float:
        return self.segments[index + 1].start_s if index + 1 < len(self.segments) else self.duration_s

    def mirrored(self, product: str) -> Sequence:
        """The same sequence mirrored around 50 Hz (FCR-D down from FCR-D up)."""
        segs = tuple(attrs.evolve(s, target_hz=round(100.0 - s.target_hz, 6)) for s in self.segments)
        return attrs.evolve(self, product=product, segments=segs)


def _value(seg: Segment, start_hz: float, t_s: float) -> float:
    """A segment's frequency at `t_s`, having started from `start_hz`."""
    if seg.sine_period_s > 0:
        return seg.target_hz + seg.sine_amplitude_hz * math.sin(2 * math.pi * (t_s - seg.start_s) / seg.sine_period_s)
    if seg.rate_hz_per_s is None:
        return seg.target_hz
    moved = seg.rate_hz_per_s * (t_s - seg.start_s)
    if abs(seg.target_hz - start_hz) <= moved:
        return seg.target_hz
    return start_hz + math.copysign(moved, seg.target_hz - start_hz)


def _table(rows: Iterable[tuple]) -> tuple[Segment, ...]:
    return tuple(Segment(*row) for row in rows)


# FCR-D up fast ramp (TR v1.1 section 3.1.2, Table 4; TP section 4.1, Table 6), rows 0-6: start, target,
# rate, what is judged.
FCR_D_UP_RAMP = Sequence("fcr-d-up", "ramp", _table([
    (0.0, 49.9, None, "settle"),
    (30.0, 49.45, 0.14, "deactivation"),
    (34.9, 49.9, 0.09, "deactivation"),
    (90.0, 49.5, 0.24, "steady"),
    (390.0, 49.9, 0.24, "steady"),
    (690.0, 49.0, 0.24, "activation"),
    (750.0, 50.0, 0.24, ""),
]), 1050.0)

# Linearity (TR v1.1 section 3.4.2, FCR-D up): 120 s per step; the 10 s mean from 60 to 120 s of each is
# judged against the envelope of TR v1.1 Table 9.
FCR_D_UP_LINEARITY = Sequence("fcr-d-up", "linearity", _table(
    (i * 120.0, f, None, "linearity") for i, f in enumerate((49.9, 49.8, 49.7, 49.6, 49.5, 49.91))), 720.0)

# FCR-N step test (TR v1.1 section 3.1.1, Table 3; TP section 3.1, Table 3): minutes 0, 0.5, 1, then
# 5-minute holds.
FCR_N_STEP = Sequence("fcr-n", "step", _table([
    (0.0, 50.0, None, "steady"),
    (30.0, 49.95, None, "steady"),
    (60.0, 50.0, None, "steady"),
    (360.0, 49.9, None, "steady"),
    (660.0, 50.1, None, "steady"),
    (960.0, 50.0, None, "steady"),
]), 1260.0)

LER_EXTENSION_S = 12000.0  # the last step is held until NEM and AEM are off (TP Tables 16/17), at most this longer
_LER_NOTE = ("TR v1.1 Table 13 / TP Tables 16-17: the last step (15 min in the table) is held until NEM and AEM are "
             "both off, as the TP asks (\"The step must be held until NEM and AEM turns off\"): NEM's 0.2 C adds at "
             "most 3 minutes of full activation in 15 minutes, and AEM off needs 10, NEM off 20.")

# LER energy management, FCR-D up (TR v1.1 Table 13, TP Table 16): 0.5, 10, 2.5, 15, 15 minutes at
# 49.91 / 49.5 Hz, the last held until NEM and AEM are off.
FCR_D_UP_LER = Sequence("fcr-d-up", "ler", _table([
    (0.0, 49.91, None, "idle"),
    (30.0, 49.5, None, "deplete"),
    (630.0, 49.91, None, "nem"),
    (780.0, 49.5, None, "aem"),
    (1680.0, 49.91, None, "recover"),
    (2580.0, 49.91, None, "recover_extension"),
]), 2580.0 + LER_EXTENSION_S, until="ler_off", notes=_LER_NOTE)

# FCR-N LER test (TR v1.1 section 3.5.3, Table 12; TP section 8.1, Table 15): 2 min at 50.0 Hz, then
# steps 1-11. The durations are minimums (TP 8.1: "The durations given in the table are minimum
# durations ... they must be adjusted to meet the objectives stated in the table"), so the steps with
# an objective are held until it is met (HeldPlay): step 1 until NEM has been fully activated for a
# minute (TP Table 15), steps 4 and 9 until AEM has been on for 5 minutes, step 6 until NEM and AEM
# have turned off and NEM has then been fully activated again for a minute (low SOC), step 11 until
# NEM and AEM are both off. 50.09 and 49.91 Hz are inside NEM's window 49.9 < f < 50.1 Hz, 50.11 and
# 49.89 Hz outside it. The expected NEM and AEM states are the table's.
# (start min, duration min, Hz, hold until, NEM, AEM, label)
FCR_N_LER_STEPS = (
    (0.0, 2.0, 50.0, "", "off", "off", "rest"),
    (2.0, 28.0, 50.09, "nem_full", "on", "off", "step 1"),
    (30.0, 6.0, 50.11, "", "off", "off", "step 2"),
    (36.0, 2.5, 50.09, "", "on", "off", "step 3"),
    (38.5, 7.5, 50.11, "aem_5min", "off", "on", "step 4"),
    (46.0, 10.0, 50.09, "", "on", "on", "step 5"),
    (56.0, 60.0, 49.91, "off_then_nem_full", "off/on", "off", "step 6"),
    (116.0, 5.0, 49.89, "", "off", "off", "step 7"),
    (121.0, 2.5, 49.91, "", "on", "off", "step 8"),
    (123.5, 10.0, 49.89, "aem_5min", "off", "on", "step 9"),
    (133.5, 10.0, 49.91, "", "on", "on", "step 10"),
    (143.5, 30.0, 50.0, "ler_off", "off", "off", "step 11"),
)
# The start: "initial SOC at the beginning of the test is allowed to be close to the threshold for NEM
# activation" (TR v1.1 3.5.3): 2 minutes of full activation below NEM's 30 min below the top.
FCR_N_LER_START_FROM_TOP_MIN = 32.0
_FCR_N_LER_NOTE = ("TR v1.1 Table 12 / TP Table 15: 2 min at 50.0 Hz; steps 1-11 of 28, 6, 2.5, 7.5, 10 min at "
                   "50.09 / 50.11 / 50.09 / 50.11 / 50.09 Hz, 60, 5, 2.5, 10, 10 min at 49.91 / 49.89 / 49.91 / 49.89 / "
                   "49.91 Hz, 30 min at 50.0 Hz; the durations are minimums, steps 1, 4, 6, 9 and 11 held until their "
                   "objective is met. Start 32 min of full activation below the top (NEM on at 30: \"close to the "
                   "threshold for NEM activation\").")


def _fcr_n_ler() -> Sequence:
    segs = tuple(Segment(start * 60.0, hz, None, label, hold_until=hold, nem=nem, aem=aem)
                 for start, _, hz, hold, nem, aem, label in FCR_N_LER_STEPS)
    last = FCR_N_LER_STEPS[-1]
    end = (last[0] + last[1]) * 60.0
    return Sequence("fcr-n", "ler", segs, end, notes=_FCR_N_LER_NOTE,
                    max_s=end + 3 * LER_EXTENSION_S)


FCR_N_LER = _fcr_n_ler()

NEM_FULL = 0.99  # NEM_current at which NEM counts as fully activated (the 300 s mean has reached it)
NEM_FULL_S = 60.0  # TP Table 15: "fully activated for at least one minute"
AEM_HOLD_S = 300.0  # TR Table 12: "Hold 5 min after AEM activates"


class HeldPlay:
    """Plays a sequence whose steps are minimum durations, each held until its objective is met (TR v1.1
    Table 12, TP 8.1), from what the unit shows after each scan (`observe`). A step whose objective is not
    met LER_EXTENSION_S after its table end moves on (the evaluation then finds the state wrong).

    Objectives: `nem_full` NEM fully activated for NEM_FULL_S; `aem_5min` AEM on for AEM_HOLD_S;
    `off_then_nem_full` NEM and AEM off, then NEM fully activated for NEM_FULL_S; `ler_off` NEM and AEM
    both off (the last step: `done_at` is then set)."""

    def __init__(self, seq: Sequence):
        self.seq = seq
        self.nominal = [s.start_s for s in seq.segments]
        self.starts = list(self.nominal)
        self.i = 0
        self.delay = 0.0
        self.met_at: float | None = None
        self.full_since: float | None = None
        self.aem_since: float | None = None
        self.off_at: float | None = None
        self.done_at: float | None = None
        self._played: Sequence | None = None

    def observe(self, t: float, nem_allowed: float, nem_current: float, aem: bool) -> None:
        full = nem_allowed != 0 and abs(nem_current) >= NEM_FULL
        self.full_since = (t if self.full_since is None else self.full_since) if full else None
        self.aem_since = (t if self.aem_since is None else self.aem_since) if aem else None
        if self.off_at is None and not aem and nem_allowed == 0:
            self.off_at = t
        if self.met_at is None and self._met(self.seq.segments[self.i].hold_until, t, nem_allowed, aem):
            self.met_at = t
        last = self.i == len(self.starts) - 1
        if (last and self.done_at is None and t >= self.end_of_step(self.i)
                and self._met(self.seq.segments[self.i].hold_until, t, nem_allowed, aem)):  # met now, not once
            self.done_at = t

    def _met(self, objective: str, t: float, nem_allowed: float, aem: bool) -> bool:
        if objective == "nem_full":
            return self.full_since is not None and t - self.full_since >= NEM_FULL_S
        if objective == "aem_5min":
            return self.aem_since is not None and t - self.aem_since >= AEM_HOLD_S
        if objective == "off_then_nem_full":
            return (self.off_at is not None and self.full_since is not None and self.full_since > self.off_at
                    and t - self.full_since >= NEM_FULL_S)
        if objective == "ler_off":
            return not aem and nem_allowed == 0
        return True

    def end_of_step(self, index: int) -> float:
        """Where step `index` may end at the earliest: its start plus its table duration."""
        nominal_end = self.nominal[index + 1] if index + 1 < len(self.nominal) else self.seq.duration_s
        return self.starts[index] + nominal_end - self.nominal[index]

    def frequency(self, t: float) -> float:
        """The frequency to apply at sequence time `t`, moving on to the next step when it is due."""
        while self.i + 1 < len(self.starts):
            due = self.end_of_step(self.i)
            if t < due - 1e-9:
                break
            hold = self.seq.segments[self.i].hold_until
            if hold and self.met_at is None and t < due + LER_EXTENSION_S:
                break
            on_time = not hold or (self.met_at is not None and self.met_at <= due)
            start = due if on_time else t
            self.i += 1
            self.delay = start - self.nominal[self.i]
            for k in range(self.i, len(self.starts)):
                self.starts[k] = self.nominal[k] + self.delay
            self.met_at = None
            self.off_at = None
            self._played = None
        if self._played is None:
            self._played = self.played()
        if self.i + 1 < len(self.starts) and t >= self.starts[self.i + 1] - 1e-9:  # held: the step's last value
            return self._played.frequency(self.starts[self.i + 1] - 1e-6)
        return self._played.frequency(t)

    def played(self, end_s: float | None = None) -> Sequence:
        """The sequence as played: each step at the time it started."""
        segs = tuple(attrs.evolve(s, start_s=round(start, 6)) for s, start in zip(self.seq.segments, self.starts,
                                                                                  strict=True))
        duration = end_s if end_s is not None else self.end_of_step(len(self.starts) - 1)
        return attrs.evolve(self.seq, segments=segs, duration_s=max(duration, segs[-1].start_s))


# Combined FCR-N + FCR-D (TR v1.1 section 3.1.2, Table 4; TP section 4.1, Table 6): FCR-D up with
# FCR-N sold at once, both at capacity C: the fast ramp (rows 0-6, judged as for FCR-D alone: FCR-N
# is fully activated and constant from 49.9 Hz down), then ramp 7 at 0.24 Hz/s to 49.7 Hz (FCR-N
# full, FCR-D half: 1.5 C), held 300 s, and ramp 8 at 0.24 Hz/s to 49.89 Hz (FCR-N full, FCR-D
# 2.5 %: 1.025 C), held 300 s; down: 50.3 and 50.11 Hz. Requirement 1b judges ramps 7 and 8 against
# the steady state after ramp 6 (50.0 Hz). The table's printed ramp ends (1050.8 s, 1350.4 s) do not
# fit its 0.24 Hz/s (1.25 s and 0.79 s); the ramps are played by rate and target.
COMBINED_NOTE = ("Requirement 1b (TR v1.1 section 3.1.2, Table 4; TP Table 6): FCR-N and FCR-D sold at once, each at C. "
                 "Rows 0-6 are the fast ramp; ramp 7 to 49.7 Hz (down 50.3) and ramp 8 to 49.89 Hz (down 50.11), "
                 "0.24 Hz/s, 300 s holds, judged against the steady state after ramp 6.")
FCR_D_UP_COMBINED = Sequence("fcr-d-up", "combined", FCR_D_UP_RAMP.segments + _table([
    (1050.0, 49.7, 0.24, "combined"),
    (1350.0, 49.89, 0.24, "combined"),
]), 1650.0, notes=COMBINED_NOTE)

# Endurance of a unit that is not LER (TR v1.1 3.5: at least 2 h of full activation), built into the
# normal tests as the TR and the TP do: the FCR-N step test with steps 1 and 2 (49.9 and 50.1 Hz) held
# 15 min each, started at 6 and 21 min, the test ending at 41 min (TR v1.1 Table 3, TP Table 3, the
# "Start time endurance test for non-LER" column); the FCR-D fast ramp test with the level after ramp 3
# (49.5 / 50.5 Hz) held 900 s instead of 300 s, the later ramps 600 s later (TR v1.1 Table 4 note, TP
# Table 6: "The waiting time between ramp 3 and ramp 4 should be increased to 900 seconds when the
# endurance is tested"). The TR asks for it once, at the most challenging operating point, and for one
# product only when a unit prequalifies for several (TR v1.1 Table 2 notes); `ems prequal` runs it for
# each product, which is allowed and shows each.
ENDURANCE_MIN = 15.0
ENDURANCE_NOTE = ("For a unit that is not LER (at least 2 h of full activation each way it serves; NEM and AEM off): "
                  "FCR-N: the step test with steps 1 and 2 held 15 min each (TR v1.1 Table 3, TP Table 3: 49.9 Hz from "
                  "6 min, 50.1 Hz from 21 min, end 41 min); FCR-D: the fast ramp test with ramp 3 held 900 s (TR v1.1 "
                  "Table 4 note, TP Table 6). Judged as that test, and for a response that holds over the 15 min.")


def endurance_sequence(product: str) -> Sequence:
    if product == "fcr-n":
        starts = (0.0, 0.5, 1.0, 6.0, 21.0, 36.0)  # TR v1.1 Table 3, the endurance column (min)
        segs = tuple(attrs.evolve(seg, start_s=start * 60.0, label="endurance" if seg.target_hz in (49.9, 50.1)
                                  else seg.label) for seg, start in zip(FCR_N_STEP.segments, starts, strict=True))
        return Sequence(product, "endurance", segs, 41 * 60.0, notes=ENDURANCE_NOTE)
    longer = ENDURANCE_MIN * 60.0 - 300.0  # ramp 3's hold: 900 s instead of 300 s
    segs = tuple(attrs.evolve(seg, start_s=seg.start_s + (longer if i > 3 else 0.0),
                              label="endurance" if i == 3 else seg.label)
                 for i, seg in enumerate(FCR_D_UP_RAMP.segments))
    up = Sequence("fcr-d-up", "endurance", segs, FCR_D_UP_RAMP.duration_s + longer, notes=ENDURANCE_NOTE)
    return up.mirrored(product) if product == "fcr-d-down" else up


# Energy left at the start of the LER test, in minutes of full activation: NEM comes on during the
# 10-minute depletion, AEM during the 15-minute one (5 minutes before its end or earlier).
LER_START_MIN = {"fcr-d-up": 24.0, "fcr-d-down": 23.0}  # charging stores less than C (losses); FCR-N: above


def ffr_sequence(level_hz: float) -> Sequence:
    """FFR (ours, from the FFR pages): a 10 s dip below the activation level (the support outlasts it),
    a second dip 5 minutes later that must find the reserve not yet ready, and a third 16 minutes
    after the first, when it must be ready again."""
    low = round(level_hz - 0.1, 3)
    return Sequence("ffr", "ffr", _table([
        (0.0, 50.0, None, "idle"),
        (30.0, low, None, "activation"),
        (40.0, 50.0, None, "recovery"),
        (330.0, low, None, "not_ready"),
        (340.0, 50.0, None, "recovery"),
        (990.0, low, None, "activation"),
        (1000.0, 50.0, None, "recovery"),
    ]), 1290.0)


def sine_sequence(product: str) -> Sequence:
    """Sine tests: for each period, 20 s at the centre frequency, then the recommended total number of
    periods of TR v1.1 Table 6, the last of them the stationary ones judged (`SINE_STATIONARY`)."""
    centre = SINE_CENTRE_HZ[product]
    segs: list[Segment] = []
    t = 0.0
    for period in SINE_PERIODS_S[product]:
        segs.append(Segment(t, centre, None, "centre"))
        t += 20.0
        segs.append(Segment(t, centre, None, f"sine:{period}", float(period), SINE_AMPLITUDE_HZ))
        t += period * SINE_STATIONARY[period][1]
    segs.append(Segment(t, centre, None, "centre"))
    return Sequence(product, "sine", tuple(segs), t + 20.0)


def sequence(product: str, test: str, ffr_level_hz: float = 49.5) -> Sequence:
    """The sequence of one test of one product; ValueError when the test does not apply."""
    if test not in APPLICABLE.get(product, ()):
        raise ValueError(f"test {test!r} does not apply to {product}; it takes: {', '.join(APPLICABLE[product])}")
    if test == "ffr":
        return ffr_sequence(ffr_level_hz)
    if test == "sine":
        return sine_sequence(product)
    if test == "step":
        return FCR_N_STEP
    if test == "endurance":
        return endurance_sequence(product)
    if test == "combined":
        return FCR_D_UP_COMBINED.mirrored(product) if product == "fcr-d-down" else FCR_D_UP_COMBINED
    if test == "ler":
        return FCR_N_LER if product == "fcr-n" else FCR_D_UP_LER.mirrored(product) if product == "fcr-d-down" \
            else FCR_D_UP_LER
    base = {"ramp": FCR_D_UP_RAMP, "linearity": FCR_D_UP_LINEARITY}[test]
    return base.mirrored(product) if product == "fcr-d-down" else base


def spec_of(product: str) -> ProductSpec | None:
    return SPECS.get(product)
