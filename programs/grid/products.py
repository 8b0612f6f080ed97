"""The Nordic FCR products as data: the figures of the reference (TR sections 3 and 3.5).

One `ProductSpec` per product holds its static characteristic (zero and full activation),
its power and energy reservation per unit of sold capacity C, its LER thresholds in minutes
of full activation and its NEM power. Everything else reads these records, so a figure lives
in one place only (and `tests/grid/test_products.py` checks them against the reference).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from blocks import Droop

F_NOMINAL_HZ = 50.0
NORMAL_BAND_HZ = (49.9, 50.1)  # the frequency's normal band (TR): outside it, a disturbance
NEM_WINDOW_HZ = NORMAL_BAND_HZ  # NEM only while 49.9 < f < 50.1 Hz


class Product(enum.IntEnum):
    """Products in register-map order (append only)."""

    FCR_N = 0
    FCR_D_UP = 1
    FCR_D_DOWN = 2
    FFR = 3


@attrs.frozen
class ProductSpec:
    """One FCR product. Power signs: + = injection = discharge."""

    product: Product
    key: str  # tag prefix: fcr_n, fcr_d_up, fcr_d_down
    label: str  # the TSO's name: FCR-N, FCR-D-UP, FCR-D-DOWN
    droop: Callable[[float], Droop]  # the block with the exact characteristic, from C
    edge_hz: float  # where the response is zero (and AEM's reference rests)
    band_hz: float  # frequency change from zero to full activation
    f_sat_hz: tuple[float, float]  # the linear range; AEM saturates the frequency to it
    p_range: tuple[float, float]  # output range in units of C
    power_up: float  # power reservation in C (discharge side)
    power_down: float  # power reservation in C (charge side)
    energy_up_h: float  # energy reservation in hours of C (discharge side)
    energy_down_h: float
    aem_on_min: float  # LER thresholds in minutes of full activation left
    aem_off_min: float
    nem_on_min: float
    nem_off_min: float
    nem_gain: float  # NEM power in C at NEM_current = 1
    uses_low: bool  # energy management watches the bottom of the battery
    uses_high: bool  # ... and the top

    @property
    def gain_w_per_hz_per_w(self) -> float:
        """Power per Hz per W of capacity (C / band)."""
        return 1.0 / self.band_hz


FCR_N = ProductSpec(
    Product.FCR_N, "fcr_n", "FCR-N", Droop.fcr_n, 50.0, 0.1, (49.9, 50.1), (-1.0, 1.0),
    power_up=1.34, power_down=1.34, energy_up_h=1.0, energy_down_h=1.0,
    aem_on_min=5.0, aem_off_min=10.0, nem_on_min=30.0, nem_off_min=57.5, nem_gain=0.34,
    uses_low=True, uses_high=True)
FCR_D_UP = ProductSpec(
    Product.FCR_D_UP, "fcr_d_up", "FCR-D-UP", Droop.fcr_d_up, 49.9, 0.4, (49.5, 49.9), (0.0, 1.0),
    power_up=1.0, power_down=0.20, energy_up_h=1.0 / 3.0, energy_down_h=0.0,
    aem_on_min=5.0, aem_off_min=10.0, nem_on_min=20.0, nem_off_min=20.0, nem_gain=0.20,
    uses_low=True, uses_high=False)
FCR_D_DOWN = ProductSpec(
    Product.FCR_D_DOWN, "fcr_d_down", "FCR-D-DOWN", Droop.fcr_d_down, 50.1, 0.4, (50.1, 50.5), (-1.0, 0.0),
    power_up=0.20, power_down=1.0, energy_up_h=0.0, energy_down_h=1.0 / 3.0,
    aem_on_min=5.0, aem_off_min=10.0, nem_on_min=20.0, nem_off_min=20.0, nem_gain=0.20,
    uses_low=False, uses_high=True)

FCR_PRODUCTS: tuple[ProductSpec, ...] = (FCR_N, FCR_D_UP, FCR_D_DOWN)

# FFR (Fingrid / SvK / Energinet pages): activation level -> longest full activation time.
FFR_LEVELS_HZ: dict[float, float] = {49.7: 1.3, 49.6: 1.0, 49.5: 0.7}
FFR_LABEL = "FFR"


def ffr_full_activation_s(level_hz: float) -> float:
    """The full activation time allowed at an FFR activation level (the nearest listed level)."""
    level = min(FFR_LEVELS_HZ, key=lambda k: abs(k - level_hz))
    return FFR_LEVELS_HZ[level]
