"""LFP open-circuit voltage curve."""

from __future__ import annotations

import numpy as np
import pytest

from sim.ocv import LFP_CELL_V, LFP_SOC_PCT, OcvCurve


def test_lfp_ocv_is_strictly_increasing_over_soc() -> None:
    curve = OcvCurve()
    v = curve(np.linspace(-5.0, 105.0, 2201))
    assert np.all(np.diff(v) > 0.0)


def test_lfp_ocv_has_flat_plateau_and_steep_ends() -> None:
    curve = OcvCurve()
    assert curve.voltage(0.0) == pytest.approx(2.50)
    assert curve.voltage(100.0) == pytest.approx(3.45)
    plateau = curve.voltage(90.0) - curve.voltage(20.0)
    assert 0.05 < plateau < 0.12  # ~95 mV over 70 % of the capacity
    assert curve.voltage(101.5) > 3.65  # over-charge reaches the OV threshold


def test_ocv_inverse_returns_the_soc() -> None:
    curve = OcvCurve()
    assert curve.soc(curve.voltage(37.0)) == pytest.approx(37.0)


def test_non_monotonic_ocv_table_is_rejected() -> None:
    volts = list(LFP_CELL_V)
    volts[5], volts[6] = volts[6], volts[5]
    with pytest.raises(ValueError, match="ocv_cell_v"):
        OcvCurve(LFP_SOC_PCT, volts)
