"""Sine tests: the unit's frequency response, its stability margin and its performance.

Gain and phase of power against frequency at each test period come from least-squares fits
of a sine at the test frequency (`a sin wt + b cos wt + c`) to the measured power change and
to the applied frequency over whole periods. The unit's normalised transfer function is

    F(jw) = -(P(jw) / f(jw)) * band / C * F_FME(jw)      (F = F_FME for an ideal droop)

F_FME = 1 / (T_FME s + 1), T_FME = 1 s, is the measurement equipment the requirements assume
(TR 3.2, 4.4, 5): the test frequency is applied in software, after the real meter, so the
meter's own delay is missing from the measured response and the evaluation puts it back. It
is not a filter to add in the unit (T_FME = 0 when the test signal goes through the real meter).

The grid model of the Nordic FCR technical requirements (TR 3.2, equation 11):

    G(s) = (dP_FCR / df_FCR) * (f0 / S_n) / (2 H s + K_f f0),   H = E_k / S_n

with the parameters of TR v1.1 Table 7: *stability* S_n = 23 000 MW, E_k = 120 000 MWs,
*performance* S_n = 42 000 MW, E_k = 190 000 MWs, for each product (FCR-N 600 MW over 0.1 Hz,
FCR-D 1450 MW over 0.4 Hz); K_f = 0.01, f0 = 50 Hz.

- Requirement 8, stability: the Nyquist curve F G stays outside the circle of radius 0.43
  around -1, |1 + F G| >= 0.43 at every test period; with the 95 % acceptance margin a result
  down to 0.95 x 0.43 = 0.4085 is accepted.
- Requirement 9, frequency-domain performance (TR v1.1 section 3.3: "FCR-N and FCR-D shall also
  fulfil" it; Table 7 has an FCR-D performance column): the closed loop from a disturbance to the
  frequency stays below the inverse of the disturbance profile D(s) = 1 / (70 s + 1):
  |G(jw) / (1 + F(jw) G(jw))| <= 1 / |D(jw)|, accepted with the 95 % margin as
  0.95 |G / (1 + F G)| <= 1 / |D| (the same form as an open FCR evaluation script,
  "Generate plots proving stability of the FCR system given sine test results").
  Reported as the ratio |D G / (1 + F G)| against 1 / 0.95.
- Requirement 10, dynamic linearity (TR v1.1 section 3.4.1): the sine fitted by least squares
  (its constant term the power at the centre frequency, so that the sine is centred on zero),
  compared with the measured power period by period: the root mean square of the measured minus
  the fitted over the standard deviation of the fitted, below 1. Judged on each stationary period
  of each test period; the largest is reported.
"""

from __future__ import annotations

import cmath
import math

import attrs
import numpy as np

STABILITY_RADIUS = 0.43  # requirement 8
ACCEPTANCE = 0.95  # the 95 % acceptance margin of the requirements
ACCEPTED_RADIUS = STABILITY_RADIUS * ACCEPTANCE  # 0.4085
PERFORMANCE_LIMIT = 1.0 / ACCEPTANCE  # requirement 9: |D G / (1 + F G)| <= 1, accepted to 1/0.95
DISTURBANCE_TAU_S = 70.0  # D(s) = 1 / (70 s + 1)
T_FME_S = 1.0  # measurement equipment of the requirements
F0_HZ = 50.0


@attrs.frozen
class GridModel:
    dp_mw: float  # FCR volume
    df_hz: float  # its one-sided frequency band
    s_n_mw: float  # system size for the model
    e_k_mws: float  # kinetic energy
    k_f: float = 0.01  # load frequency dependence

    def g(self, w_rad_s: float) -> complex:
        h = self.e_k_mws / self.s_n_mw
        s = 1j * w_rad_s
        return (self.dp_mw / self.df_hz) * (F0_HZ / self.s_n_mw) / (2.0 * h * s + self.k_f * F0_HZ)


STABILITY_FCR_N = GridModel(600.0, 0.1, 23_000.0, 120_000.0)
STABILITY_FCR_D = GridModel(1450.0, 0.4, 23_000.0, 120_000.0)
PERFORMANCE_FCR_N = GridModel(600.0, 0.1, 42_000.0, 190_000.0)
PERFORMANCE_FCR_D = GridModel(1450.0, 0.4, 42_000.0, 190_000.0)  # TR v1.1 Table 7, "FCR-D performance"
LINEARITY_LIMIT = 1.0  # requirement 10: RMS(measured - fitted) / std(fitted) < 1 (TR v1.1 section 3.4.1)


def stability_model(product: str) -> GridModel:
    return STABILITY_FCR_N if product == "fcr-n" else STABILITY_FCR_D


def performance_model(product: str) -> GridModel:
    """The model of the frequency-domain performance requirement (TR v1.1 section 3.3, Table 7)."""
    return PERFORMANCE_FCR_N if product == "fcr-n" else PERFORMANCE_FCR_D


def f_fme(w_rad_s: float, t_fme_s: float = T_FME_S) -> complex:
    return 1.0 / (1.0 + 1j * w_rad_s * t_fme_s)


def disturbance(w_rad_s: float) -> complex:
    return 1.0 / (1.0 + 1j * w_rad_s * DISTURBANCE_TAU_S)


def fit_sine(t: np.ndarray, x: np.ndarray, period_s: float) -> complex:
    """Phasor X with x(t) ~ c + Re(X e^{jwt}), by least squares."""
    return _fit(t, x, period_s)[0]


def _fit(t: np.ndarray, x: np.ndarray, period_s: float) -> tuple[complex, np.ndarray]:
    """The phasor and the fitted values (sine plus constant) at `t`."""
    w = 2.0 * math.pi / period_s
    basis = np.column_stack([np.sin(w * t), np.cos(w * t), np.ones_like(t)])
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    a, b, _ = coef
    return complex(b, -a), basis @ coef


def linearity_ratios(t: np.ndarray, x: np.ndarray, period_s: float) -> tuple[float, ...]:
    """Requirement 10 for each whole period of `t`: sqrt(sum (x - x_est)^2) / sqrt(sum (x_est - mean x_est)^2),
    x_est the sine fitted over all of `t` (TR v1.1 section 3.4.1)."""
    _, est = _fit(t, x, period_s)
    ratios = []
    start = float(t[0]) if len(t) else 0.0
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    n = int((float(t[-1]) - start + dt + 1e-6) // period_s) if len(t) else 0
    for k in range(n):
        mask = (t >= start + k * period_s - 1e-9) & (t < start + (k + 1) * period_s - 1e-9)
        if mask.sum() < 8:
            continue
        spread = float(np.sqrt(np.sum((est[mask] - est[mask].mean()) ** 2)))
        error = float(np.sqrt(np.sum((x[mask] - est[mask]) ** 2)))
        ratios.append(error / spread if spread > 0 else math.inf)
    return tuple(ratios)


@attrs.frozen
class SinePoint:
    """The unit at one test period."""

    period_s: float
    f_amplitude_hz: float
    p_amplitude_w: float
    f_unit: complex  # the measured response, normalised (1 for an ideal droop)
    g: complex  # stability grid model G(jw)
    t_fme_s: float = T_FME_S
    g_performance: complex | None = None  # performance grid model, None: not judged
    linearity: tuple[float, ...] = ()  # requirement 10's ratio, each stationary period

    @property
    def w(self) -> float:
        return 2.0 * math.pi / self.period_s

    @property
    def f_norm(self) -> complex:
        """F(jw): the unit with the measurement equipment of the requirements."""
        return self.f_unit * f_fme(self.w, self.t_fme_s)

    @property
    def gain(self) -> float:
        return abs(self.f_norm)

    @property
    def phase_deg(self) -> float:
        return math.degrees(cmath.phase(self.f_norm))

    @property
    def open_loop(self) -> complex:
        return self.f_norm * self.g

    @property
    def margin(self) -> float:
        """Distance of F G from -1 (requirement 8)."""
        return abs(1.0 + self.open_loop)

    @property
    def performance(self) -> float:
        """|D G / (1 + F G)| with the performance model (requirement 9; <= 1 required)."""
        if self.g_performance is None:
            return math.nan
        g = self.g_performance
        return abs(disturbance(self.w) * g / (1.0 + self.f_norm * g))

    @property
    def linearity_ratio(self) -> float:
        """Requirement 10: the largest ratio over the stationary periods (< 1 required)."""
        return max(self.linearity) if self.linearity else math.nan


def sine_point(t: np.ndarray, f_hz: np.ndarray, dp_w: np.ndarray, period_s: float, band_hz: float,
               capacity_w: float, product: str, t_fme_s: float = T_FME_S) -> SinePoint:
    """Fit one period's response and place it against the product's grid models."""
    f_ph = fit_sine(t, f_hz, period_s)
    p_ph = fit_sine(t, dp_w, period_s)
    f_unit = -(p_ph / f_ph) * band_hz / capacity_w
    w = 2.0 * math.pi / period_s
    return SinePoint(period_s, abs(f_ph), abs(p_ph), f_unit, stability_model(product).g(w), t_fme_s,
                     performance_model(product).g(w), linearity_ratios(t, dp_w, period_s))
