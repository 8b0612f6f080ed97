"""Sine tests: the unit's frequency response and the Nyquist stability margin.

Gain and phase of power against frequency at each test period come from least-squares fits
of a sine at the test frequency (`a sin wt + b cos wt + c`) to the measured power change and
to the applied frequency over whole periods. The unit's normalised transfer function is

    F(jw) = -(P(jw) / f(jw)) * band / C       (F = 1 for an ideal, instantaneous droop)

and the open loop with the grid model of the Nordic FCR technical requirements (section 3.2,
equation 11; parameters of its table for stability):

    G(s) = (dP_FCR / df_FCR) * (f0 / S_n) / (2 H s + K_f f0),   H = E_k / S_n

FCR-N: dP = 600 MW over 0.1 Hz, S_n = 42 000 MW, E_k = 190 000 MWs; FCR-D: dP = 1450 MW over
0.4 Hz, S_n = 23 000 MW, E_k = 120 000 MWs; K_f = 0.01, f0 = 50 Hz. The requirement: the
Nyquist curve F G stays outside the circle of radius 0.43 around -1, i.e. |1 + F G| >= 0.43 at
every test period. The applied test frequency enters before the unit's frequency filter, so the
measured F already contains the measurement's time constant (no separate F_FME factor).
"""

from __future__ import annotations

import cmath
import math

import attrs
import numpy as np

STABILITY_RADIUS = 0.43
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


GRID_FCR_N = GridModel(600.0, 0.1, 42_000.0, 190_000.0)
GRID_FCR_D = GridModel(1450.0, 0.4, 23_000.0, 120_000.0)


def grid_model(product: str) -> GridModel:
    return GRID_FCR_N if product == "fcr-n" else GRID_FCR_D


def fit_sine(t: np.ndarray, x: np.ndarray, period_s: float) -> complex:
    """Phasor X with x(t) ~ c + Re(X e^{jwt}), by least squares."""
    w = 2.0 * math.pi / period_s
    basis = np.column_stack([np.sin(w * t), np.cos(w * t), np.ones_like(t)])
    (a, b, _), *_ = np.linalg.lstsq(basis, x, rcond=None)
    return complex(b, -a)


@attrs.frozen
class SinePoint:
    """The unit at one test period."""

    period_s: float
    f_amplitude_hz: float
    p_amplitude_w: float
    f_norm: complex  # F(jw), normalised
    g: complex  # grid model G(jw)

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
        """Distance of F G from -1."""
        return abs(1.0 + self.open_loop)


def sine_point(t: np.ndarray, f_hz: np.ndarray, dp_w: np.ndarray, period_s: float, band_hz: float,
               capacity_w: float, model: GridModel) -> SinePoint:
    """Fit one period's response and place it against the grid model."""
    f_ph = fit_sine(t, f_hz, period_s)
    p_ph = fit_sine(t, dp_w, period_s)
    f_norm = -(p_ph / f_ph) * band_hz / capacity_w
    return SinePoint(period_s, abs(f_ph), abs(p_ph), f_norm, model.g(2.0 * math.pi / period_s))
